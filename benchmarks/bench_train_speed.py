#!/usr/bin/env python
"""Benchmark: training throughput of genrec presets on the real data (examples and next-item targets per second).

For each preset it builds the model and its training data exactly as ``genrec train`` does (same
``build_model``, same dataset and collator), then times ``--steps`` optimizer steps (AdamW, forward + backward +
step, after ``--warmup`` untimed steps) on consecutive shuffled batches. It reports:

* ``rows/s``: training rows per second (a row is one user sequence for the decoder-only models, where every
  position predicts its next item, and one (history window, target) pair for the encoder-decoders);
* ``targets/s``: supervised next-item predictions per second (the real learning signal: a row of a
  decoder-only model holds one target per real position);
* ``epoch_s``: the estimated seconds of one pass over the training rows.

Models run one after another (never two at once), all in this process with the same thread count, so the
ratios between rows are the comparison; absolute numbers depend on the machine's load (recorded).

    python benchmarks/bench_train_speed.py --configs scripts/configs/recgpt-beauty.yaml \\
        scripts/configs/recgpt-item-beauty.yaml --steps 20

Prints a table and a final JSON line, writes ``benchmarks/results/bench_train_speed.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULT = REPO / "benchmarks" / "results" / "bench_train_speed.json"


def measure(config_path: str, overrides: list[str], *, steps: int, warmup: int, seed: int) -> dict:
    """Time ``steps`` optimizer steps of one preset; returns its throughput row."""
    import torch
    from torch.utils.data import DataLoader

    from genrec.training import load_run_config
    from genrec.training.pipeline import build_model, load_split, training_data

    run = load_run_config(config_path, overrides)
    torch.manual_seed(seed)
    data, train_sequences, _, _ = load_split(run.data.dataset, run.data.max_users)
    model = build_model(run.model_type, run.model_kwargs, data.item_ids, catalog=data.catalog,
                        train_sequences=train_sequences)
    seq2seq = run.model_type in ("p5", "onerec")
    max_length = getattr(model.config, "max_position_embeddings", None) or model.config.max_history_items
    dataset, collator = training_data(model, train_sequences, data.item_index, max_length=max_length, seed=seed)
    batch_size = run.training.per_device_train_batch_size
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collator,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.training.learning_rate)
    model.train()
    batches = iter(loader)
    rows = targets = 0
    elapsed = 0.0
    for step in range(warmup + steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            elapsed += time.perf_counter() - start
            labels = batch["labels"]
            rows += labels.shape[0]
            # decoder-only rows (NextItemDataset): one target per labelled position; encoder-decoder rows: one
            # target item (OneRec session rows count as one: their extra items are conditioned on the first)
            targets += labels.shape[0] if seq2seq else int((labels > 0).sum())
    rows_per_s = rows / elapsed
    return {
        "config": str(config_path),
        "model": run.model_type,
        "overrides": overrides,
        "batch_size": batch_size,
        "train_rows": len(dataset),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows_per_s, 2),
        "targets_per_s": round(targets / elapsed, 2),
        "epoch_s": round(len(dataset) / rows_per_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", required=True, help="Run config YAMLs, measured in this order.")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value applied to every config.")
    parser.add_argument("--steps", type=int, default=20, help="Timed optimizer steps per preset.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", default=str(DEFAULT_RESULT), help="Where to write the JSON result.")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        print("bench_train_speed: --steps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2

    import torch

    from genrec.training.pipeline import machine_info
    from genrec.utils.io import atomic_write_json, check_output_file

    check_output_file(args.result)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = [measure(path, args.overrides, steps=args.steps, warmup=args.warmup, seed=args.seed)
            for path in args.configs]
    result = {"benchmark": "train_speed", "rows": rows, "threads": torch.get_num_threads(),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), **machine_info()}
    header = f"{'config':<45} {'model':<7} {'batch':>5} {'rows/s':>9} {'targets/s':>10} {'epoch_s':>8} {'params':>10}"
    print(header)
    for row in rows:
        print(f"{Path(row['config']).name:<45} {row['model']:<7} {row['batch_size']:>5} {row['rows_per_s']:>9.1f} "
              f"{row['targets_per_s']:>10.1f} {row['epoch_s']:>8.1f} {row['parameters']:>10,}")
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    atomic_write_json(args.result, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
