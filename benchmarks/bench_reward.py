#!/usr/bin/env python
"""The alignment reward model on Amazon Beauty: leave-one-out validation AUC against a popularity baseline.

Each user's validation item (never trained on) is scored against 100 items the user never interacted with; AUC per
user (ties count 1/2), averaged over users. The popularity baseline scores the same negatives by training counts.

    python benchmarks/bench_reward.py [--epochs 10] [--seeds 0,1] [--threads 1]

Prints a table and a final JSON line; writes benchmarks/results/bench_reward.json (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results" / "bench_reward.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--num-negatives", type=int, default=4)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from genrec.alignment.reward import RewardModelConfig, train_reward_model
    from genrec.data import leave_one_out, load_dataset
    from genrec.training.pipeline import machine_info
    from genrec.utils.io import atomic_write_json

    split = leave_one_out(load_dataset(args.dataset))
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        config = RewardModelConfig(hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=2,
                                   max_history_items=50)
        start = time.time()
        _, metrics = train_reward_model(split, config=config, epochs=args.epochs, batch_size=256,
                                        learning_rate=args.learning_rate, num_negatives=args.num_negatives,
                                        num_eval_negatives=100, seed=seed)
        rows.append({"seed": seed, "valid/auc": metrics["valid/auc"],
                     "valid/auc_popularity": metrics["valid/auc_popularity"],
                     "train_seconds": metrics["train_seconds"], "epochs": metrics.get("train/epochs"),
                     "wall_seconds": round(time.time() - start, 1)})
    print("| model | seed | valid AUC | train s |\n| --- | --- | --- | --- |")
    print(f"| popularity (training counts) | - | {rows[0]['valid/auc_popularity']:.4f} | - |")
    for row in rows:
        print(f"| reward model (h={args.hidden_size}, {args.num_layers} layers, {args.epochs} epochs) | {row['seed']} "
              f"| {row['valid/auc']:.4f} | {row['train_seconds']:.0f} |")
    result = {"dataset": args.dataset, "settings": vars(args), "runs": rows, **machine_info(),
              "command": " ".join(["python benchmarks/bench_reward.py", *(argv if argv is not None else sys.argv[1:])])}
    atomic_write_json(RESULTS, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
