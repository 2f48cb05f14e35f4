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

# Values only (same schema as scripts/configs/*.yaml): scripts/configs/recgpt-item-beauty.yaml (RecGPT on
# text + collaborative fsq codes, one position per history item, sampled item softmax) with a demo budget. Cold
# cache on a 2-core CPU: embedding the 12,101 item texts (once, then cached) + tokenizer fit + 180 s of training +
# validation/test ranking + the popularity row stay under 10 minutes.
QUICKSTART_CONFIG: dict = {
    "model": {
        "type": "recgpt",
        "input_granularity": "item",
        "tie_code_embeddings": True,
        "logit_temperature": 0.07,
        "loss_type": "items",
        "text_logits": True,
        "num_negatives": 1024,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "max_position_embeddings": 50,
        "hidden_dropout_prob": 0.5,
        "attention_dropout": 0.5,
        "code_embedding_type": "table",
        "tokenizer": {"collaborative_dims": 128, "num_chunks": 32, "levels": [4, 4, 4, 4], "epochs": 10, "seed": 0},
    },
    "data": {"dataset": "amazon-beauty"},
    "training": {
        "seed": 42,
        "learning_rate": 0.003,
        "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 128,
        "per_device_eval_batch_size": 512,
        "train_sampling_strategy": "group_by_length",
        "num_train_epochs": 3,
        "eval_strategy": "no",
        "eval_ks": [5, 10, 20],
        "early_stopping_patience": None,
        "max_train_seconds": 180,
        "report_to": "none",
    },
}

# SASRec, the yardstick, on the same split and evaluator; NOT retrained by the quickstart (it needs ~10 minutes
# more). Measured by `python benchmarks/bench_quality.py` (benchmarks/results/bench_quality.json), 2-core CPU.
SASREC_REFERENCE = {"test/recall@10": 0.0842, "test/ndcg@10": 0.0408,
                    "source": "bench_quality.py, 2026-12-07, 661 s, best-validation epoch 10"}


def _popularity_metrics(run) -> dict:
    """Test metrics of the popularity baseline (training counts) on the run's own split: a few seconds."""
    from genrec.models.popularity import PopularityModel
    from genrec.training.pipeline import load_split
    from genrec.training.trainer import RankingSet, full_ranking_metrics

    data, train_sequences, _, test = load_split(run.data.dataset, run.data.max_users, **run.data.load_options())
    model = PopularityModel.from_dataset(data.catalog, train_sequences)
    ranking = RankingSet.from_split(test, data.item_index, max_length=50)
    values = full_ranking_metrics(model, ranking, ks=run.training.eval_ks,
                                  batch_size=run.training.per_device_eval_batch_size,
                                  exclude_history=run.training.exclude_history_items)
    return {f"test/{key}": value for key, value in values.items()}


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
        "MiniLM encoder (4-7 min on 2 CPU cores, cached for later runs)",
        flush=True,
    )
    metrics = run_training(run, output, overwrite=args.overwrite)
    print()
    print(format_metrics_table(metrics))
    popularity = _popularity_metrics(run)
    print(f"\ntest split, beside {run.model_type}:")
    print(f"{'model':<34} {'recall@10':>10} {'ndcg@10':>10}")
    print(f"{run.model_type + ' (this run)':<34} {metrics['test/recall@10']:>10.4f} {metrics['test/ndcg@10']:>10.4f}")
    print(f"{'popularity (this split)':<34} {popularity['test/recall@10']:>10.4f} {popularity['test/ndcg@10']:>10.4f}")
    if SASREC_REFERENCE["test/recall@10"] is not None and run.data.dataset == "amazon-beauty" and not run.data.max_users:
        print(f"{'SASRec (reference, not rerun)':<34} {SASREC_REFERENCE['test/recall@10']:>10.4f} "
              f"{SASREC_REFERENCE['test/ndcg@10']:>10.4f}   <- {SASREC_REFERENCE['source']}")
    print(
        f"\ntrained {metrics['train/epochs']:.1f} epochs in {metrics['train/seconds']:.0f}s "
        f"(stopped by {metrics['train/stopped_by']}) on {metrics['machine/cpu']}"
    )
    print(f"checkpoint: {output / 'checkpoint'}  metrics: {output / 'metrics.json'}")
    from genrec.models.registry import get_model_record

    auto_class = get_model_record(run.model_type).auto_classes[0]
    print(
        "next: genrec evaluate --checkpoint "
        f"{output} --split test   |   python -c \"from transformers import {auto_class}; import genrec; "
        f"m = {auto_class}.from_pretrained('{output / 'checkpoint'}'); print(m.recommend([['1', '2']], k=5))\""
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="Train + evaluate a recommender on the bundled Amazon Beauty data (< 10 min on CPU).",
        description="End-to-end demo: a generative recommender (RecGPT over text + collaborative semantic ids, one "
        "position per history item) on Amazon Beauty, leave-one-out full ranking, beside popularity.",
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
