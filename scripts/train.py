#!/usr/bin/env python
"""Train and evaluate a genrec model from a YAML config: the same code path as ``genrec train``.

Single process:
    python scripts/train.py --config scripts/configs/sasrec-beauty.yaml --output runs/sasrec-beauty

Several processes (the Trainer picks up the distributed environment; DDP over gloo on CPU); the launch
configs in scripts/accelerate/ (README "Launch configs") cover one/two CPU processes, one GPU, DDP and FSDP:
    accelerate launch --config_file scripts/accelerate/cpu-2-gloo.yaml scripts/train.py --config CONFIG
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py --config scripts/configs/sasrec-beauty-smoke.yaml
    torchrun --nproc_per_node 2 scripts/train.py --config scripts/configs/sasrec-beauty-smoke.yaml

Note: ``accelerate launch --cpu --num_processes 2`` starts ONE process (accelerate only forks CPU
workers for multi-CPU/MPI setups), so use ``--multi_gpu`` (falls back to gloo on CPU) or torchrun.

Only process 0 writes the run folder (config.yaml, resolved_config.json, checkpoint/, metrics.json,
log_history.json, train.log); every process trains in lockstep and evaluates the full ranking itself.
"""

from __future__ import annotations

import argparse
import os
import sys

# Keep OpenMP threads from busy-waiting on a shared CPU; must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from genrec.cli.train import add_run_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from genrec.cli.train import run_from_args

    args = parse_args(argv)
    from genrec.cli import hide_wandb_offline_banner
    from genrec.utils.errors import run_command

    def body() -> int:
        hide_wandb_offline_banner()
        return run_from_args(args)

    return run_command("scripts/train.py", body)


if __name__ == "__main__":
    sys.exit(main())
