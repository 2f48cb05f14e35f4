#!/usr/bin/env python
"""Any model + last-item text-kNN, side by side: how much does mixing in the text prior lift each model?

For every checkpoint, the full-ranking scores of the model and of last-item text-kNN (MiniLM cosine to the last
history item; 0 for that item itself) are z-normalised per user and mixed, ``z(model) + w * z(kNN)``. The weight is
chosen per model on the VALIDATION split from ``--weights`` (0 = the model alone) and the test split is reported for
w = 0 and for the chosen weight, beside text-kNN alone. One pass over the users scores every weight. A RecGPT
checkpoint is scored without its own ``text_prior_weight`` (set to 0 here), so every model gets the same mixture.

    python benchmarks/prior_mixture.py --checkpoints runs/bq/sasrec-beauty runs/bq/recgpt-item-beauty

Prints a table and a JSON line, writes ``benchmarks/results/prior_mixture.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_RESULT = Path(__file__).resolve().parent / "results" / "prior_mixture.json"


def zscore(scores):
    """Per-row standardisation of ``(batch, num_items)`` scores (finite entries; -inf stays -inf)."""
    import torch

    finite = torch.isfinite(scores)
    values = torch.where(finite, scores, torch.zeros_like(scores))
    count = finite.sum(1, keepdim=True).clamp(min=1)
    mean = values.sum(1, keepdim=True) / count
    var = (torch.where(finite, scores - mean, torch.zeros_like(scores)) ** 2).sum(1, keepdim=True) / count
    return (scores - mean) / var.sqrt().clamp(min=1e-8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="Run folders or checkpoint folders.")
    parser.add_argument("--dataset", default="amazon-beauty", help="The dataset the checkpoints were trained on.")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 0.1, 0.25, 0.5, 1, 2, 4],
                        help="kNN weights tried on the validation split (0 = the model alone).")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--result", default=str(DEFAULT_RESULT))
    args = parser.parse_args(argv)
    if any(not 0 <= w < float("inf") for w in args.weights) or 0 not in args.weights:
        parser.error(f"--weights ({args.weights}) must be finite numbers >= 0 and include 0")

    import torch

    from genrec.data import leave_one_out, load_dataset
    from genrec.models import TextKNNModel
    from genrec.tokenization.embeddings import embed_catalog
    from genrec.training.pipeline import load_checkpoint
    from genrec.training.trainer import RankingSet, ranking_metrics_by_scoring
    from genrec.utils.io import atomic_write_json, check_output_file

    check_output_file(args.result)
    start = time.time()
    data = load_dataset(args.dataset)
    split = leave_one_out(data, drop_short_users=True)
    knn = TextKNNModel.from_catalog(data.catalog, embeddings=embed_catalog(data.catalog), exclude_query_items=False)
    weights = sorted(set(args.weights))
    rows, knn_row = {}, None
    for checkpoint in args.checkpoints:
        model, path = load_checkpoint(checkpoint)
        if hasattr(model.config, "text_prior_weight"):
            model.config.text_prior_weight = 0.0
        knn.set_catalog(list(model.item_ids))  # the model's row order
        max_length = getattr(model.config, "max_position_embeddings", None) or model.config.max_history_items

        def score_batch(input_ids, model=model):
            base = zscore(model.score(input_ids).float())
            prior = knn.score(input_ids)
            prior = prior.scatter(1, (input_ids[:, -1] - 1)[:, None], 0.0)  # no prior for the last item itself
            prior = zscore(prior)
            out = {weight: base + weight * prior if weight else base for weight in weights}
            out["knn"] = prior
            return out

        results = {}
        for name, part in (("valid", split.valid), ("test", split.test)):
            ranking = RankingSet.from_split(part, model.item_index, max_length=max_length)
            with torch.no_grad():
                results[name] = ranking_metrics_by_scoring(model, ranking, score_batch, ks=(5, 10),
                                                           batch_size=args.batch_size, description=name)
        chosen = max(weights, key=lambda w: (results["valid"][w]["ndcg@10"], -w))
        label = f"{model.config.model_type} ({Path(path).parent.name if Path(path).name == 'checkpoint' else path.name})"
        rows[label] = {
            "checkpoint": str(path), "chosen_weight": chosen,
            "valid_ndcg@10_by_weight": {str(w): round(results["valid"][w]["ndcg@10"], 4) for w in weights},
            "alone": {k: round(results["test"][0.0][k], 4) for k in ("recall@5", "recall@10", "ndcg@5", "ndcg@10")},
            "with_prior": {k: round(results["test"][chosen][k], 4) for k in ("recall@5", "recall@10", "ndcg@5",
                                                                               "ndcg@10")},
        }
        knn_row = {k: round(results["test"]["knn"][k], 4) for k in ("recall@5", "recall@10", "ndcg@5", "ndcg@10")}
    result = {"benchmark": "prior_mixture", "dataset": args.dataset, "weights": weights, "rows": rows,
              "last-item text-kNN": knn_row, "num_users": len(split.test), "seconds": round(time.time() - start, 1),
              "loadavg": os.getloadavg()}
    print(f"{'model':<40} {'R@10':>7} {'N@10':>7}  {'+kNN R@10':>9} {'+kNN N@10':>9}  weight (chosen on validation)")
    for label, row in rows.items():
        print(f"{label:<40} {row['alone']['recall@10']:>7.4f} {row['alone']['ndcg@10']:>7.4f}  "
              f"{row['with_prior']['recall@10']:>9.4f} {row['with_prior']['ndcg@10']:>9.4f}  {row['chosen_weight']:g}")
    print(f"{'last-item text-kNN':<40} {knn_row['recall@10']:>7.4f} {knn_row['ndcg@10']:>7.4f}")
    atomic_write_json(args.result, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
