"""Benchmark genrec.data and genrec.evaluation on the bundled Amazon Beauty data (CPU).

Times (best of --repeats): load_dataset("amazon-beauty"), leave_one_out, train_windows(50),
catalog.texts(), data.stats(), and full-ranking evaluate_scores over all 12,101 items for the
22,363 test users (a fixed random score block reused per batch of 1,024, so torch.rand is not
timed), and evaluate_rankings on random top-20 lists.

Usage:
    python benchmarks/bench_data.py                 # ~30 s on 2 busy cores
    python benchmarks/bench_data.py --repeats 1
Writes benchmarks/results/bench_data.json (atomically) and prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from genrec.data import leave_one_out, load_dataset
from genrec.evaluation import MetricAccumulator, evaluate_rankings, evaluate_scores
from genrec.utils.io import atomic_write_json


def best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "bench_data.json"))
    args = parser.parse_args()

    rows = []
    seconds, data = best_of(args.repeats, lambda: load_dataset("amazon-beauty"))
    rows.append(("load_dataset('amazon-beauty')", seconds, f"{data.num_users} users, {data.num_items} items, {data.num_interactions} interactions"))
    seconds, split = best_of(args.repeats, lambda: leave_one_out(data))
    rows.append(("leave_one_out", seconds, f"{len(split.valid)} valid / {len(split.test)} test rows"))
    seconds, windows = best_of(args.repeats, lambda: split.train_windows(max_history=50))
    rows.append(("train_windows(max_history=50)", seconds, f"{len(windows)} windows"))
    seconds, texts = best_of(args.repeats, lambda: data.catalog.texts())
    rows.append(("catalog.texts()", seconds, f"{len(texts)} texts"))
    seconds, stats = best_of(args.repeats, data.stats)
    rows.append(("data.stats()", seconds, f"consecutive_id_rate {stats['consecutive_id_rate']:.4f}"))

    test = split.test.to_dict()
    targets = torch.tensor([data.item_index[t] for t in test["target"]])
    generator = torch.Generator().manual_seed(0)

    # One random score block reused for every batch, so the timing is the metric, not torch.rand.
    block = torch.rand(args.batch_size, data.num_items, generator=generator)  # (batch, num_items)

    def run_scores():
        accumulator = MetricAccumulator()
        for start in range(0, len(targets), args.batch_size):
            batch = targets[start:start + args.batch_size]
            accumulator.update(evaluate_scores(block[: len(batch)], batch, reduce=False))
        return accumulator.compute(prefix="test")

    seconds, metrics = best_of(args.repeats, run_scores)
    rows.append(("evaluate_scores (22,363 x 12,101)", seconds, f"recall@10 {metrics['test/recall@10']:.5f} (chance {10 / data.num_items:.5f})"))
    ranked = torch.randint(-1, data.num_items, (len(targets), 20), generator=generator)
    seconds, ranking_metrics = best_of(args.repeats, lambda: evaluate_rankings(ranked, targets, num_items=data.num_items))
    rows.append(("evaluate_rankings (22,363 x 20)", seconds, f"invalid_rate {ranking_metrics['invalid_rate']:.5f}"))

    print(f"{'step':<42} {'seconds':>8}  notes")
    for name, seconds, note in rows:
        print(f"{name:<42} {seconds:>8.3f}  {note}")
    result = {
        "benchmark": "bench_data",
        "dataset": "amazon-beauty",
        "repeats": args.repeats,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "seconds": {name: round(seconds, 4) for name, seconds, _ in rows},
        "stats": stats,
    }
    atomic_write_json(args.output, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
