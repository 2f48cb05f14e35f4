"""``genrec train``: train and evaluate a model from a YAML run config.

    genrec train --config scripts/configs/sasrec-beauty.yaml --output runs/sasrec-beauty
    genrec train --config scripts/configs/sasrec-beauty-smoke.yaml --set training.learning_rate=0.002
    genrec train --config CONFIG --output runs/x --save-steps 200            # checkpoints in runs/x.checkpoints/
    genrec train --config CONFIG --output runs/x --save-steps 200 --resume   # after a kill: continue
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# Busy-waiting OpenMP threads make torch 10-40x slower on a shared CPU (measured here: 40 tiny
# SASRec steps 37 s vs 1.2 s). libgomp reads this once when torch loads, so it is set at import of
# the CLI module, before any torch import; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["register", "add_run_arguments", "run_from_args", "format_metrics_table"]


def add_run_arguments(parser: argparse.ArgumentParser, *, config_required: bool = True) -> None:
    """The options shared by ``genrec train`` and ``scripts/train.py``."""
    parser.add_argument("--config", required=config_required, help="YAML run config (sections model/data/training).")
    parser.add_argument(
        "--output",
        default=None,
        help="Run folder to create (its parent must exist). Default: runs/<config name>-<timestamp>.",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="Override one config value, e.g. --set training.num_train_epochs=5 (repeatable).",
    )
    parser.add_argument(
        "--report-to",
        default=None,
        metavar="BACKEND",
        help="Shortcut for --set training.report_to=BACKEND, e.g. wandb (offline unless WANDB_MODE is set).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace a non-empty --output folder (only after the new run succeeds).",
    )
    parser.add_argument(
        "--save-steps",
        type=int,
        default=None,
        metavar="N",
        help="Shortcut for --set training.save_strategy=steps --set training.save_steps=N: a resumable "
        "checkpoint every N optimizer steps, in OUTPUT.checkpoints/ (removed when the run succeeds).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue an interrupted run from its newest checkpoint in OUTPUT.checkpoints/ (same optimizer, "
        "scheduler, RNG and data order); give the same --config and --set values (another config is refused).",
    )


def default_output(config_path: str | Path) -> Path:
    """``runs/<config stem>-<UTC timestamp>`` under the working directory (``runs/`` is created)."""
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    return runs / f"{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def format_metrics_table(metrics: dict, splits=("valid", "test"), names=("recall", "ndcg", "mrr")) -> str:
    """A plain-text table of ``split/metric@k`` values (rows = splits, columns = metric@k)."""
    columns = sorted(
        {key.split("/", 1)[1] for key in metrics if "/" in key and key.split("/", 1)[0] in splits},
        key=lambda name: (
            names.index(name.split("@")[0]) if name.split("@")[0] in names else 99,
            int(name.split("@")[1]) if name.partition("@")[2].isdigit() else 0,
        ),
    )
    columns = [name for name in columns if "@" in name and name.split("@")[0] in names]
    if not columns:
        return "(no ranking metrics)"
    header = f"{'split':<6} " + " ".join(f"{name:>10}" for name in columns)
    lines = [header, "-" * len(header)]
    for split in splits:
        if any(f"{split}/{name}" in metrics for name in columns):
            cells = [metrics.get(f"{split}/{name}") for name in columns]
            lines.append(f"{split:<6} " + " ".join(f"{cell:>10.4f}" if cell is not None else f"{'-':>10}" for cell in cells))
    return "\n".join(lines)


def run_from_args(args: argparse.Namespace) -> int:
    """Parse the config, run training, print where everything went and the metrics table."""
    from genrec.training import load_run_config, prepare_output, run_training
    from genrec.utils.errors import UserInputError
    from genrec.utils.runtime import is_main_process

    output = Path(args.output) if args.output else default_output(args.config)
    # A run folder's own config.yaml may re-run it in place (it is read first, then rewritten);
    # any other config file inside --output would be deleted with the old folder.
    config = Path(args.config)
    rerun_in_place = config.name == "config.yaml" and config.parent.exists() and output.exists() \
        and os.path.samefile(config.parent, output)
    protect = {} if rerun_in_place else {"the config file": config}
    output = prepare_output(output, overwrite=args.overwrite, protect=protect)  # fail before loading data
    overrides = list(args.overrides)
    if getattr(args, "report_to", None):
        overrides.append(f"training.report_to={args.report_to}")
    if getattr(args, "save_steps", None) is not None:
        if args.save_steps < 1:
            raise UserInputError(f"--save-steps ({args.save_steps}) must be an integer >= 1")
        overrides += ["training.save_strategy=steps", f"training.save_steps={args.save_steps}"]
    run = load_run_config(args.config, overrides)
    metrics = run_training(run, output, overwrite=args.overwrite, resume=getattr(args, "resume", False))
    if is_main_process():
        print(format_metrics_table(metrics))
        resumed = metrics.get("train/resumed_from_step")
        print(f"train time {metrics['train/seconds']:.1f}s, {metrics['train/epochs']:.1f} epochs "
              f"(stopped by {metrics['train/stopped_by']}{f'; resumed at step {resumed}' if resumed else ''}); "
              f"run folder: {output}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train and evaluate a model from a YAML config.",
        description="Train a model (Trainer; leave-one-out full-ranking validation) and write one run folder: "
        "config.yaml, resolved_config.json, checkpoint/, metrics.json, log_history.json, train.log.",
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run_from_args)
