"""``genrec plot``: PNG dashboards of a run folder (training curve, expert load).

    genrec plot runs/onerec-beauty            # writes runs/onerec-beauty/plots/*.png
    genrec plot runs/onerec-beauty --output figures/onerec
"""

from __future__ import annotations

import argparse

__all__ = ["register", "plot_from_args"]


def plot_from_args(args: argparse.Namespace) -> int:
    """Write the PNGs and print their paths, one a line."""
    from genrec.training.plots import plot_run

    for path in plot_run(args.run, args.output):
        print(path)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="Write PNGs of a run's training curve and expert load.",
        description="Read a `genrec train` run folder (log_history.json, metrics.json) and write "
        "training_curve.png (loss vs step; validation metric vs step and vs minutes) and, for MoE models, "
        "expert_load.png (layer x expert heat map) into RUN/plots/.",
    )
    parser.add_argument("run", help="A run folder written by `genrec train`.")
    parser.add_argument("--output", default=None, help="Folder for the PNGs (default: RUN/plots).")
    parser.set_defaults(func=plot_from_args)
