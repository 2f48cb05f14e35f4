#!/usr/bin/env python
"""Zero-shot check: a RecGPT checkpoint trained on one domain, given another domain's catalog from item texts.

The model's catalog is replaced by the target dataset's items (``set_catalog`` with their MiniLM
vectors; collaborative dimensions, if the model has them, are zero for new items), then ranked on the target's
leave-one-out test split (full ranking), beside last-item text-kNN on the same users. On the target's VALIDATION
split the script chooses the scoring (codes + text, or text only for a ``text_logits`` model: ``set_catalog(...,
use_codes=)``) and the model's ``text_prior_weight`` (last-item text-kNN mixed into its ranking, ``--text-prior-weights``;
0 = the model alone): the pair with the best validation N@10 is reported on test. No target-domain example trains
the network; only these two choices see the target's validation split. Prints a table and a JSON
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
    parser.add_argument("--text-prior-weights", type=float, nargs="+", default=[0, 0.25, 0.5, 1, 2, 4],
                        help="text_prior_weight values tried on the target's VALIDATION split (0: the model alone).")
    args = parser.parse_args(argv)

    from transformers import AutoModel

    from genrec.data import leave_one_out, load_dataset
    from genrec.models import TextKNNModel
    from genrec.tokenization.embeddings import embed_catalog
    from genrec.training.pipeline import resolve_checkpoint
    from genrec.training.trainer import RankingSet, full_ranking_metrics, tune_text_prior
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

    valid_ranking = RankingSet.from_split(split.valid, model.item_index, max_length=50)
    weights = {}
    for name, use_codes in variants.items():  # each scoring with its best text prior weight, on validation
        model.use_codes = use_codes
        weights[name], by_weight = tune_text_prior(model, valid_ranking, args.text_prior_weights, ks=(10,),
                                                   batch_size=512)
        for weight, values in by_weight.items():
            valid[f"{name}, prior {weight:g}"] = (name, weight, round(values["ndcg@10"], 4))
    best = max(valid.values(), key=lambda entry: (entry[2], -entry[1]))
    model.use_codes, model.config.text_prior_weight = variants[best[0]], best[1]
    rows["recgpt (zero-shot)"] = {**measure(model, split.test), "scoring": best[0], "text_prior_weight": best[1],
                                  "valid_ndcg@10": {name: entry[2] for name, entry in valid.items()}}
    rows["last-item text-kNN"] = {**measure(knn, split.test), "valid_ndcg@10": measure(knn, split.valid)["ndcg@10"]}
    result = {"benchmark": "zero_shot", "checkpoint": str(checkpoint), "dataset": args.dataset,
              "num_users": len(split.test), "num_items": data.num_items, "rows": rows,
              "chance_recall@10": round(10 / data.num_items, 5), "seconds": round(time.time() - start, 1),
              "loadavg": os.getloadavg()}
    print(f"{'model':<22} {'R@10':>8} {'N@10':>8}  (test; RecGPT's scoring and prior weight chosen on validation)")
    for name, values in rows.items():
        chosen = f"{values['scoring']}, text prior weight {values['text_prior_weight']:g}" if "scoring" in values else ""
        print(f"{name:<22} {values['recall@10']:>8.4f} {values['ndcg@10']:>8.4f}  {chosen}")
    atomic_write_json(args.result, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
