#!/usr/bin/env python
"""Iterative preference alignment (OneRec IPA) from a YAML config: the same code path as ``genrec align``.

Single process:
    python scripts/align.py --config scripts/configs/onerec-beauty-align-smoke.yaml --output runs/align-smoke

Several processes (the DPO trainer runs DDP; generation and evaluation run on every rank, only rank 0 writes):
    accelerate launch --multi_gpu --num_processes 2 scripts/align.py --config ...
    torchrun --nproc_per_node 2 scripts/align.py --config ...

A killed run resumes after its last finished round when started again with the same --output and config.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    from genrec.cli.align import add_align_arguments, align_from_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_align_arguments(parser)
    args = parser.parse_args(argv)
    from genrec.cli import hide_wandb_offline_banner
    from genrec.utils.errors import run_command

    def body() -> int:
        hide_wandb_offline_banner()
        return align_from_args(args)

    return run_command("scripts/align.py", body)


if __name__ == "__main__":
    sys.exit(main())
