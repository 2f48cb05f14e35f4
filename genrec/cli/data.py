"""``genrec data stats DATASET``: counts and sequence-length statistics of a dataset.

DATASET is a bundled name (``amazon-beauty``) or a folder/file path (S3-Rec sequences, an
interactions table, MovieLens ``ratings.dat``).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

__all__ = ["TABLE_OPTIONS", "add_table_arguments", "register", "run_stats", "table_options"]

# load_dataset options a user's own interactions table may need, as `genrec train`'s `data.` keys name them
TABLE_OPTIONS = ("user_col", "item_col", "time_col", "min_user_interactions", "min_item_interactions")


def add_table_arguments(parser: argparse.ArgumentParser, *, kcore: bool = True) -> None:
    """``--user-col`` / ``--item-col`` / ``--time-col`` (and the k-core ``--min-*-interactions``) of a command that
    reads a dataset: the same as ``data.user_col`` ... in a ``genrec train`` config."""
    group = parser.add_argument_group("your own interactions table (CSV/TSV/Parquet)")
    group.add_argument("--user-col", default=None, help="user id column (default: detect user_id, user, userId, ...)")
    group.add_argument("--item-col", default=None, help="item id column (default: detect item_id, item, itemId, ...)")
    group.add_argument("--time-col", default=None,
                       help="timestamp column, numbers or dates (default: detect timestamp, time, ts, ...; "
                            "none: the file order)")
    if kcore:
        group.add_argument("--min-user-interactions", type=int, default=0,
                           help="k-core: drop users with fewer interactions (leave-one-out needs 3)")
        group.add_argument("--min-item-interactions", type=int, default=0,
                           help="k-core: drop items with fewer interactions")


def table_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`TABLE_OPTIONS` given on the command line (``load_dataset`` keyword arguments).

    Raises:
        ValueError: a negative ``--min-*-interactions``.
    """
    options = {name: getattr(args, name) for name in TABLE_OPTIONS if getattr(args, name, None) not in (None, 0)}
    for name in ("min_user_interactions", "min_item_interactions"):
        if options.get(name, 0) < 0:
            raise ValueError(f"--{name.replace('_', '-')} ({options[name]}) must be >= 0 (0 = no filter)")
    return options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets")
    data_sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    stats = data_sub.add_parser(
        "stats",
        help="users/items/interactions, sequence lengths, density, split sizes, id-leak check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("dataset", metavar="DATASET", help="bundled name (e.g. amazon-beauty) or a path")
    stats.add_argument("--format", default=None, help="force the format: sequential | table | movielens")
    add_table_arguments(stats)
    stats.add_argument("--keep-duplicates", action="store_true",
                       help="keep duplicate events (same user, item, timestamp); dropped and counted by default")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    stats.set_defaults(func=run_stats)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def run_stats(args: argparse.Namespace) -> int:
    from genrec.data import leave_one_out, load_dataset

    start = time.perf_counter()
    data = load_dataset(args.dataset, format=args.format, keep_duplicates=args.keep_duplicates, **table_options(args))
    stats = data.stats()
    stats["density_percent"] = 100.0 * stats["density"]
    stats["consecutive_id_rate_chance"] = 1.0 / max(1, data.num_items)
    short = sum(1 for s in data.sequences.values() if len(s) < 3)
    stats["users_below_3"] = short
    if short == 0:
        stats.update({f"split_{k}": v for k, v in leave_one_out(data).stats().items() if k != "num_users"})
    stats["load_seconds"] = round(time.perf_counter() - start, 3)
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"dataset {data.name} ({data.source})")
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        if key == "name":
            continue
        print(f"  {key:<{width}}  {_format_value(value)}")
    if stats.get("consecutive_id_rate") is not None:
        print(
            "  note: consecutive_id_rate = share of users whose last item id == max(earlier ids) + 1; "
            "far above chance means raw integer ids leak order (the P5 id leak)."
        )
    return 0
