"""``genrec quickstart``: train and evaluate a recommender on the bundled Amazon Beauty data.

    genrec quickstart                        # runs/quickstart-<timestamp>
    genrec quickstart --output my-run --set training.max_train_seconds=300

The model is a config value (``QUICKSTART_CONFIG["model"]["type"]``), so the quickstart can switch to a
generative model without touching the command.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

# See genrec/cli/train.py: keep OpenMP threads from busy-waiting on a shared CPU (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["register", "quickstart_from_args", "QUICKSTART_CONFIG"]

# Values only (same schema as scripts/configs/*.yaml). SASRec with full cross-entropy; the time budget
# keeps data loading + training + evaluation under 15 minutes on a 2-core CPU.
QUICKSTART_CONFIG: dict = {
    "model": {
        "type": "sasrec",
        "loss_type": "ce",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 50,
        "hidden_dropout_prob": 0.3,
        "attention_dropout": 0.3,
    },
    "data": {"dataset": "amazon-beauty"},
    "training": {
        "seed": 42,
        "learning_rate": 0.003,
        "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 128,
        "per_device_eval_batch_size": 512,
        "num_train_epochs": 30,  # ~20-30 epochs fit the time budget on an idle 2-core CPU; keeps the bar honest
        "eval_ks": [5, 10, 20],
        "metric_for_early_stopping": "ndcg@10",
        "early_stopping_patience": 5,
        "max_train_seconds": 600,
        "report_to": "none",
    },
}


def quickstart_from_args(args: argparse.Namespace) -> int:
    """Build the quickstart config (+ ``--set`` overrides), train, print the metrics table."""
    from genrec.cli.train import format_metrics_table
    from genrec.training import apply_overrides, build_run_config, prepare_output, run_training

    if args.output:
        output = Path(args.output)
    else:
        Path("runs").mkdir(exist_ok=True)
        output = Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    prepare_output(output, overwrite=args.overwrite)
    run = build_run_config(apply_overrides(copy.deepcopy(QUICKSTART_CONFIG), args.overrides))
    print(
        f"genrec quickstart: {run.model_type} on {run.data.dataset}, at most "
        f"{run.training.max_train_seconds or 'unlimited'} s of training; run folder {output}"
    )
    metrics = run_training(run, output, overwrite=args.overwrite)
    print()
    print(format_metrics_table(metrics))
    print(
        f"\ntrained {metrics['train/epochs']:.1f} epochs in {metrics['train/seconds']:.0f}s "
        f"(stopped by {metrics['train/stopped_by']}) on {metrics['machine/cpu']}"
    )
    print(f"checkpoint: {output / 'checkpoint'}  metrics: {output / 'metrics.json'}")
    print(
        "next: genrec evaluate --checkpoint "
        f"{output} --split test   |   python -c \"from transformers import AutoModel; import genrec.models; "
        f"m = AutoModel.from_pretrained('{output / 'checkpoint'}'); print(m.recommend([['1', '2']], k=5))\""
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="Train + evaluate a recommender on the bundled Amazon Beauty data (< 15 min on CPU).",
        description="End-to-end demo: SASRec (cross-entropy) on Amazon Beauty, leave-one-out full ranking.",
    )
    parser.add_argument("--output", default=None, help="Run folder (parent must exist). Default runs/quickstart-<time>.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty --output after success.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="Override a quickstart value, e.g. --set training.max_train_seconds=120.",
    )
    parser.set_defaults(func=quickstart_from_args)
