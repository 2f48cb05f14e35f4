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

# Values only (same schema as scripts/configs/*.yaml). A generative recommender: OneRec (encoder over balanced
# RQ-KMeans semantic ids, sparse-MoE decoder) scored by constrained beam search. Item tokenizer fit (~25 s) +
# training budget (7 min) + beam-search evaluation of valid and test (~2 min each under load) stay under 15 minutes
# on a 2-core CPU. `--set model.type=sasrec` is not enough to switch back (the model keys differ): use
# `genrec train --config scripts/configs/sasrec-beauty.yaml` for SASRec.
QUICKSTART_CONFIG: dict = {
    "model": {
        "type": "onerec",
        "d_model": 64,
        "d_kv": 16,
        "d_ff": 256,
        "num_layers": 2,
        "num_heads": 4,
        "dropout_rate": 0.1,
        "ffn_type": "moe",
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 128,
        "max_history_items": 20,
        "session_length": 5,
        "num_beams": 20,
        "item_tokenizer_method": "rq-kmeans",
        "item_tokenizer_config": {"num_levels": 3, "codebook_size": 256, "balanced": True, "num_iters": 20,
                                  "num_threads": 1},
    },
    "data": {"dataset": "amazon-beauty"},
    "training": {
        "seed": 42,
        "learning_rate": 0.002,
        "lr_scheduler_type": "constant",
        "warmup_steps": 100,
        "per_device_train_batch_size": 64,
        "per_device_eval_batch_size": 256,
        "train_sampling_strategy": "group_by_length",
        "num_train_epochs": 2,  # the 420 s budget ends ~1.2-1.7 epochs on a 2-core CPU; keeps the bar honest
        "eval_strategy": "no",
        "eval_ks": [5, 10, 20],
        "early_stopping_patience": None,
        "max_train_seconds": 420,
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
    print(
        "fitting the item tokenizer first: the first run embeds the catalog's item texts with the offline "
        "MiniLM encoder (2-4 min on 2 CPU cores, cached for later runs)",
        flush=True,
    )
    metrics = run_training(run, output, overwrite=args.overwrite)
    print()
    print(format_metrics_table(metrics))
    print(
        f"\ntrained {metrics['train/epochs']:.1f} epochs in {metrics['train/seconds']:.0f}s "
        f"(stopped by {metrics['train/stopped_by']}) on {metrics['machine/cpu']}"
    )
    print(f"checkpoint: {output / 'checkpoint'}  metrics: {output / 'metrics.json'}")
    auto_class = "AutoModelForSeq2SeqLM" if run.model_type in ("p5", "onerec") else "AutoModel"
    print(
        "next: genrec evaluate --checkpoint "
        f"{output} --split test   |   python -c \"from transformers import {auto_class}; import genrec.models; "
        f"m = {auto_class}.from_pretrained('{output / 'checkpoint'}'); print(m.recommend([['1', '2']], k=5))\""
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="Train + evaluate a recommender on the bundled Amazon Beauty data (< 15 min on CPU).",
        description="End-to-end demo: a generative recommender (OneRec, semantic ids + sparse-MoE decoder) on Amazon "
        "Beauty, leave-one-out full ranking by constrained beam search.",
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
