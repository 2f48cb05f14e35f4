#!/usr/bin/env python
"""Zero-shot check: a RecGPT checkpoint trained on one domain, given another domain's catalog from item texts.

The model's catalog is replaced by the target dataset's items (``set_catalog`` with their MiniLM
vectors; collaborative dimensions, if the model has them, are zero for new items), then ranked on the target's
leave-one-out test split (full ranking), beside last-item text-kNN on the same users. A ``text_logits`` model is
scored two ways on the target's VALIDATION split (codes + text, text only: ``set_catalog(..., use_codes=)``)
and the better one is reported on test. Prints a table and a JSON
line, writes ``benchmarks/results/zero_shot_recgpt_item.json``.

    python benchmarks/zero_shot_item.py --checkpoint runs/bq/recgpt-item-beauty --dataset ../shared/data/yelp
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_RESULT = Path(__file__).resolve().parent / "results" / "zero_shot_recgpt_item.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="A RecGPT run folder or its checkpoint/ folder.")
    parser.add_argument("--dataset", required=True, help="Target dataset (name or folder) with item texts.")
    parser.add_argument("--result", default=str(DEFAULT_RESULT))
    args = parser.parse_args(argv)

    from transformers import AutoModel

    from genrec.data import leave_one_out, load_dataset
    from genrec.models import TextKNNModel
    from genrec.tokenization.embeddings import embed_catalog
    from genrec.training.pipeline import resolve_checkpoint
    from genrec.training.trainer import RankingSet, full_ranking_metrics
    from genrec.utils.io import atomic_write_json, check_output_file

    check_output_file(args.result)
    start = time.time()
    checkpoint = resolve_checkpoint(args.checkpoint)
    data = load_dataset(args.dataset)
    split = leave_one_out(data, drop_short_users=True)
    vectors = embed_catalog(data.catalog)
    model = AutoModel.from_pretrained(checkpoint).eval()
    model.set_catalog(data.catalog.item_ids, item_text_embeddings=vectors)  # codes from the model's fsq tokenizer
    # which score to use on the new domain is chosen on ITS validation split; test is reported for that choice
    variants = {"codes + text": True}
    if model.config.text_logits:
        variants["text only (no codes)"] = False
    knn = TextKNNModel.from_catalog(data.catalog, embeddings=vectors)
    rows, valid = {}, {}

    def measure(ranker, split_part):
        ranking = RankingSet.from_split(split_part, ranker.item_index, max_length=50)
        values = full_ranking_metrics(ranker, ranking, ks=(10,), batch_size=512)
        return {key: round(values[key], 4) for key in ("recall@10", "ndcg@10")}

    for name, use_codes in variants.items():
        model.use_codes = use_codes
        valid[name] = measure(model, split.valid)
    chosen = max(valid, key=lambda name: valid[name]["ndcg@10"])
    model.use_codes = variants[chosen]
    rows["recgpt (zero-shot)"] = {**measure(model, split.test), "scoring": chosen,
                                  "valid_ndcg@10": {name: values["ndcg@10"] for name, values in valid.items()}}
    rows["last-item text-kNN"] = {**measure(knn, split.test), "valid_ndcg@10": measure(knn, split.valid)["ndcg@10"]}
    result = {"benchmark": "zero_shot", "checkpoint": str(checkpoint), "dataset": args.dataset,
              "num_users": len(split.test), "num_items": data.num_items, "rows": rows,
              "chance_recall@10": round(10 / data.num_items, 5), "seconds": round(time.time() - start, 1),
              "loadavg": os.getloadavg()}
    print(f"{'model':<22} {'R@10':>8} {'N@10':>8}  (test; RecGPT's scoring chosen on validation)")
    for name, values in rows.items():
        print(f"{name:<22} {values['recall@10']:>8.4f} {values['ndcg@10']:>8.4f}  {values.get('scoring', '')}")
    atomic_write_json(args.result, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
