#!/usr/bin/env python
"""Benchmark: train SASRec (cross-entropy over all items) on Amazon Beauty and evaluate it.

Leave-one-out, full ranking over all 12,101 items (no sampled negatives), the S3-Rec/P5/TIGER split.
Prints a table (R@5/10, N@5/10, MRR@10, train time, machine) and a final JSON line, and writes
``benchmarks/results/bench_sasrec.json`` atomically. The run folder (checkpoint, metrics, log) goes to
``--output`` (default: a temporary folder that is deleted afterwards).

    python benchmarks/bench_sasrec.py                                  # scripts/configs/sasrec-beauty.yaml
    python benchmarks/bench_sasrec.py --set training.max_train_seconds=300 --output runs/bench-sasrec

Reference numbers (PAPERS.md): SASRec with CE on Beauty, public reruns R@10 0.081-0.090; the
original BCE SASRec R@10 0.0605, N@10 0.0318 (as reported in the TIGER paper's table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Keep OpenMP threads from busy-waiting on a shared CPU; must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "scripts" / "configs" / "sasrec-beauty.yaml"
DEFAULT_RESULT = REPO / "benchmarks" / "results" / "bench_sasrec.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="Run config YAML.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value override.")
    parser.add_argument("--output", default=None, help="Keep the run folder here (parent must exist).")
    parser.add_argument("--result", default=str(DEFAULT_RESULT), help="Where to write the JSON result.")
    parser.add_argument("--note", default="", help="Free text stored with the result (e.g. 'CPU shared with 3 jobs').")
    args = parser.parse_args(argv)

    from genrec.training import evaluate_checkpoint, load_run_config, prepare_output, run_training
    from genrec.utils.io import atomic_write_json, check_output_file

    check_output_file(args.result)
    run = load_run_config(args.config, args.overrides)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-sasrec-") as scratch:
        output = Path(args.output) if args.output else Path(scratch) / "run"
        prepare_output(output)
        metrics = run_training(run, output)
        # The same checkpoint under the other ranking protocol (history items removed or not).
        other = not run.training.exclude_history_items
        alternative = evaluate_checkpoint(output, run.data.dataset, splits=("test",), ks=(5, 10, 20),
                                          exclude_history=other, max_users=run.data.max_users)
    total_seconds = time.time() - start

    label = "exclude_history" if other else "full_catalog"
    result = {
        "benchmark": "sasrec",
        "config": str(Path(args.config).resolve().relative_to(REPO)) if Path(args.config).resolve().is_relative_to(REPO)
        else args.config,
        "overrides": args.overrides,
        "note": args.note,
        "load_average_1m": os.getloadavg()[0],
        "total_seconds": round(total_seconds, 1),
        **metrics,
        **{f"test_{label}/{key.split('/', 1)[1]}": value for key, value in alternative.items() if key.startswith("test/")},
    }
    rows = [("test", "test"), ("valid", "valid"), (f"test_{label}", f"test ({label.replace('_', ' ')})")]
    header = f"{'split':<28} {'R@5':>8} {'R@10':>8} {'N@5':>8} {'N@10':>8} {'MRR@10':>8}"
    print(header)
    print("-" * len(header))
    for prefix, name in rows:
        cells = [result.get(f"{prefix}/{key}") for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@10")]
        print(f"{name:<28} " + " ".join(f"{cell:>8.4f}" if cell is not None else f"{'-':>8}" for cell in cells))
    print(
        f"train {result['train/seconds']:.0f}s, {result['train/epochs']:.1f} epochs (best epoch "
        f"{result['train/best_epoch'] or 0:.1f}, stopped by {result['train/stopped_by']}); total {total_seconds:.0f}s; "
        f"{result['machine/cpu']} x{result['machine/cpu_count']}, torch threads {result['machine/torch_threads']}, "
        f"load avg {result['load_average_1m']:.1f}"
    )
    atomic_write_json(args.result, result)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
