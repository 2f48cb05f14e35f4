"""``genrec evaluate``: leave-one-out full-ranking metrics of a saved model.

    genrec evaluate --checkpoint runs/sasrec-beauty --dataset amazon-beauty --split test
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from genrec.cli import add_checkpoint_argument, existing_checkpoint, positive_int

# See genrec/cli/train.py: keep OpenMP threads from busy-waiting on a shared CPU (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["register", "evaluate_from_args"]

SPLIT_CHOICES = ("valid", "test", "both")


def _run_folder_data(checkpoint: Path) -> dict | None:
    """The ``data`` section a run folder was trained with (its config.yaml), if ``checkpoint`` is a run folder.

    Raises:
        ValueError: config.yaml is not a run config (malformed, empty, or `data.dataset` not a string)
            or names a dataset that does not exist.
    """
    from genrec.data.registry import resolve_dataset_path
    from genrec.training.arguments import read_yaml_config

    config = checkpoint / "config.yaml"
    if not config.is_file():
        return None
    data = read_yaml_config(config).get("data") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{str(config)!r}: section `data` must be a mapping, got {data!r}; pass --dataset")
    data = {"dataset": "amazon-beauty", **data}
    dataset = data["dataset"]
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"{str(config)!r}: `data.dataset` ({dataset!r}) must be a dataset name or path; pass --dataset")
    try:
        resolve_dataset_path(dataset)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{str(config)!r}: {error}; pass --dataset") from None
    return data


def _dataset_from_run_folder(checkpoint: Path) -> str | None:
    """The dataset a run folder was trained on (its config.yaml), if ``checkpoint`` is a run folder."""
    data = _run_folder_data(checkpoint)
    return None if data is None else data["dataset"]


def run_folder_load_options(checkpoint: Path, dataset: str | None) -> dict:
    """``load_dataset`` options (table columns, k-core) of a run folder's ``data`` section, when ``dataset`` is the
    one it was trained on (or None); empty otherwise."""
    from genrec.cli.data import TABLE_OPTIONS

    data = _run_folder_data(checkpoint) or {}
    if not data or (dataset is not None and dataset != data["dataset"]):
        return {}
    return {name: data[name] for name in TABLE_OPTIONS if data.get(name) not in (None, 0)}


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def evaluate_from_args(args: argparse.Namespace) -> int:
    """Evaluate, print a table and one JSON line; optionally write the metrics to ``--output``."""
    from genrec.cli.data import table_options
    from genrec.cli.train import format_metrics_table
    from genrec.training import evaluate_checkpoint
    from genrec.utils.io import atomic_write_json

    checkpoint = existing_checkpoint(args.checkpoint)
    dataset = args.dataset or _dataset_from_run_folder(checkpoint)
    if dataset is None:
        raise ValueError(f"--dataset is required: {args.checkpoint!r} is not a run folder with a config.yaml")
    if args.output:
        output = Path(args.output)
        if not output.absolute().parent.is_dir():
            raise FileNotFoundError(
                f"--output {str(output)!r}: its parent folder {str(output.absolute().parent)!r} does not exist"
            )
        if output.is_dir():
            raise IsADirectoryError(f"--output {str(output)!r} is a folder; pass the path of a JSON file to write")
        if output.exists() and not args.overwrite:
            raise FileExistsError(f"--output {str(output)!r} already exists; pass --overwrite to replace it")
    splits = ("valid", "test") if args.split == "both" else (args.split,)
    metrics = evaluate_checkpoint(
        checkpoint,
        dataset,
        splits=splits,
        ks=tuple(args.ks),
        batch_size=args.batch_size,
        exclude_history=args.exclude_history,
        max_users=args.max_users,
        show_progress=True,
        # as the run was trained, unless asked: a run with data.keep_duplicates is evaluated with them too
        keep_duplicates=args.keep_duplicates or bool((_run_folder_data(checkpoint) or {}).get("keep_duplicates")),
        dataset_source=None if args.dataset else f"{str(checkpoint / 'config.yaml')!r}",
        # the run's table columns and k-core filter (its catalog), unless given here
        load_options={**run_folder_load_options(checkpoint, dataset), **table_options(args)},
        text_prior_weights=args.text_prior_weights,
    )
    metrics["eval/exclude_history_items"] = bool(args.exclude_history)
    metrics["data/name"] = dataset
    print(format_metrics_table(metrics, splits=splits))
    print(json.dumps(metrics, sort_keys=True))
    if args.output:
        atomic_write_json(args.output, metrics)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Leave-one-out full-ranking metrics of a saved model.",
        description="Rank the whole catalog for every user's held-out item (last = test, second-last = valid).",
    )
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--dataset", default=None, help="Dataset name or folder (default: the run folder's config.yaml dataset)."
    )
    parser.add_argument("--split", choices=SPLIT_CHOICES, default="test", help="Which held-out item to rank.")
    parser.add_argument("--ks", type=positive_int, nargs="+", default=[5, 10, 20], help="Cut-offs.")
    parser.add_argument("--batch-size", type=positive_int, default=512, help="Histories scored at once.")
    parser.add_argument(
        "--exclude-history", action="store_true", help="Drop items already in the history before ranking."
    )
    parser.add_argument("--max-users", type=positive_int, default=None, help="Only the first N users (quick checks).")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="Keep duplicate events (same user, item, timestamp); default: as the run folder was "
                             "trained (dropped unless its config has data.keep_duplicates).")
    parser.add_argument("--text-prior-weights", type=non_negative_float, nargs="+", default=None, metavar="W",
                        help="Item-layout RecGPT, or P5 / OneRec with loss_type items: choose text_prior_weight "
                             "(last-item text-kNN mixed into the ranking) among these on the VALIDATION split by ndcg@10, then rank --split with it.")
    parser.add_argument("--output", default=None, help="Also write the metrics to this JSON file (atomically).")
    from genrec.cli.data import add_table_arguments

    add_table_arguments(parser)  # default: as the run folder's config.yaml read its data
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output file.")
    parser.set_defaults(func=evaluate_from_args)
