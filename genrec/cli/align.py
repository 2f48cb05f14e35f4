"""``genrec align``: OneRec-style iterative preference alignment (reward model + DPO rounds) from a YAML config.

    genrec align --config scripts/configs/onerec-beauty-align-smoke.yaml --output runs/onerec-align-smoke
    genrec align --config scripts/configs/recgpt-beauty-align.yaml --set alignment.rounds=3

A rerun with the same ``--output`` and config resumes after the last finished round.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["add_align_arguments", "align_from_args", "format_rounds_table", "register"]


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``genrec align`` and ``scripts/align.py``."""
    parser.add_argument("--config", required=True,
                        help="YAML alignment config (sections base/data/reward/alignment/dpo).")
    parser.add_argument("--output", default=None,
                        help="Run folder (its parent must exist); an earlier run of the same config there is resumed. "
                             "Default: runs/<config name>-<timestamp>.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="Override one config value, e.g. --set alignment.rounds=3 (repeatable).")
    parser.add_argument("--report-to", default=None, metavar="BACKEND",
                        help="Shortcut for --set dpo.report_to=BACKEND, e.g. wandb (offline unless WANDB_MODE is set).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace an --output folder that holds something other than this run.")


def format_rounds_table(metrics: dict) -> str:
    """Rows = rounds; columns = valid R@10 / N@10, mean reward, pairs, seconds."""
    rounds = sorted({int(key.split("/", 1)[0].split("_")[1]) for key in metrics if key.startswith("round_")})
    columns = [("valid/recall@10", "R@10"), ("valid/ndcg@10", "N@10"), ("reward_mean", "reward"),
               ("dpo/rewards/accuracies", "pair acc"), ("pairs", "pairs"), ("seconds/total", "seconds")]
    header = f"{'round':<6}" + "".join(f"{title:>11}" for _, title in columns)
    lines = [header, "-" * len(header)]
    for number in rounds:
        cells = []
        for key, _ in columns:
            value = metrics.get(f"round_{number}/{key}")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append(f"{'-':>11}")
            elif isinstance(value, int) or key == "pairs":
                cells.append(f"{int(value):>11d}")
            elif key.startswith("seconds"):
                cells.append(f"{value:>11.1f}")
            else:
                cells.append(f"{value:>11.4f}")
        lines.append(f"{number:<6}" + "".join(cells))
    return "\n".join(lines)


def align_from_args(args: argparse.Namespace) -> int:
    from genrec.alignment.ipa import ALIGN_CONFIG_FILE, load_align_config, run_alignment
    from genrec.data.registry import resolve_dataset_path
    from genrec.utils.io import check_output_folder, check_output_parent

    if args.output:
        output = Path(args.output)
    else:
        Path("runs").mkdir(exist_ok=True)
        output = Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    check_output_parent(output)
    overrides = list(args.overrides)
    if args.report_to:
        overrides.append(f"dpo.report_to={args.report_to}")
    config = load_align_config(args.config, overrides)
    if args.overwrite:  # --overwrite may delete the folder: never one holding the dataset, config or cwd
        protect = {"the config file": Path(args.config)}
        try:
            protect["the dataset"] = resolve_dataset_path(config.data.dataset)[1]
        except FileNotFoundError:  # reported when the data loads
            pass
        if Path(args.config).name == ALIGN_CONFIG_FILE and Path(args.config).parent.resolve() == output.resolve():
            del protect["the config file"]  # the run folder's own config re-runs it in place
        check_output_folder(output, overwrite=True, protect=protect)
    metrics = run_alignment(config, output, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_rounds_table(metrics))
        auc = metrics.get("reward_model/valid/auc")
        if auc is not None:
            print(f"reward model valid AUC {auc:.4f}")
        print(f"run folder: {output}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "align",
        help="Iterative preference alignment (reward model + DPO rounds) of a generative model.",
        description="OneRec's IPA loop: per round, generate N sessions per user with the model's constrained "
        "decoding, score them with a reward model, train next-token + λ·DPO (TRL's DPOConfig) against the "
        "previous round's model; checkpoint every round, resumable.",
    )
    add_align_arguments(parser)
    parser.set_defaults(func=align_from_args)
