"""``genrec recommend``: the next items for one history (or a file of them) from any genrec checkpoint.

    genrec recommend --checkpoint runs/sasrec-beauty --history 12 40 7 -k 5
    genrec recommend --checkpoint runs/sasrec-beauty --input histories.txt --json

Prints rank, item id, title (when the catalog has text) and score: exactly ``model.recommend(histories, k,
exclude_history=not --include-history)`` of the loaded model (:mod:`genrec.models.recommender`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from genrec.cli import add_checkpoint_argument, existing_checkpoint, positive_int

# See genrec/cli/train.py: keep OpenMP threads from busy-waiting on a shared CPU (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["read_histories", "recommend_from_args", "register"]


def read_histories(path: str | os.PathLike) -> list[list[str]]:
    """One history per line (item ids separated by spaces or commas, oldest first).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a blank line, a file that is not UTF-8, or no history at all (the file and line are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--input {str(path)!r} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"--input {str(path)!r} is not UTF-8 text ({error})") from None
    histories = []
    for number, line in enumerate(lines, 1):
        items = line.replace(",", " ").split()
        if not items:
            raise ValueError(f"--input {str(path)!r} line {number} is empty; give one history (item ids) per line")
        histories.append(items)
    if not histories:
        raise ValueError(f"--input {str(path)!r} holds no history; give one history (item ids) per line")
    return histories


def _titles(model, folder: Path, checkpoint: Path, dataset: str | None) -> dict[str, str]:
    """Item id -> title: the model's own titles (BIGRec), else the catalog of ``--dataset`` or of the run folder's
    config.yaml; empty when there is none (the title column is then left out)."""
    titles = getattr(model, "item_titles", None)
    if titles:
        return dict(zip(model.item_ids, titles))
    from genrec.cli.evaluate import _dataset_from_run_folder, run_folder_load_options

    run = checkpoint if _dataset_from_run_folder(checkpoint) else folder.parent
    # the run's table columns (titles come from the whole file: no k-core filter)
    options = {key: value for key, value in run_folder_load_options(run, dataset).items() if key.endswith("_col")}
    if dataset is None:
        dataset = _dataset_from_run_folder(run)
    if dataset is None:
        return {}
    from genrec.data import load_dataset

    catalog = load_dataset(dataset, **options).catalog
    known = set(catalog.item_ids)
    found = {item: catalog.title(item) for item in model.item_ids if item in known}
    return {item: title for item, title in found.items() if title}


def _check_known(histories: list[list[str]], item_index, source: str, catalog: Path) -> None:
    """Raise one ``ValueError`` naming every unknown id and where it was given."""
    for number, history in enumerate(histories, 1):
        unknown = [item for item in dict.fromkeys(history) if item not in item_index]
        if unknown:
            where = source if source == "--history" else f"{source} line {number}"
            raise ValueError(f"{where}: item ids not in the checkpoint's catalog ({len(item_index)} items, "
                             f"{str(catalog)!r}): {', '.join(unknown)}")


def recommend_from_args(args: argparse.Namespace) -> int:
    """Load the checkpoint, recommend, print a table per history (or one JSON object per history with --json)."""
    from genrec.training import load_checkpoint

    checkpoint = existing_checkpoint(args.checkpoint)
    if args.k < 1:
        raise ValueError(f"-k ({args.k}) must be a positive integer")
    histories = [list(args.history)] if args.history else read_histories(args.input)
    model, folder = load_checkpoint(checkpoint)
    _check_known(histories, model.item_index, "--history" if args.history else f"--input {str(args.input)!r}", folder)
    if args.k > model.num_items:
        raise ValueError(f"-k ({args.k}) must be at most the catalog size ({model.num_items} items)")
    titles = _titles(model, folder, checkpoint, args.dataset)
    results = model.recommend(histories, args.k, exclude_history=not args.include_history,
                              batch_size=args.batch_size)
    for number, (history, pairs) in enumerate(zip(histories, results), 1):
        rows = [{"rank": rank, "item_id": item, "score": score, **({"title": titles.get(item, "")} if titles else {})}
                for rank, (item, score) in enumerate(pairs, 1)]
        if args.json:
            print(json.dumps({"history": history, "recommendations": rows}, ensure_ascii=False))
            continue
        if len(histories) > 1:
            print(f"{'' if number == 1 else chr(10)}history {number}: {' '.join(history)}")
        print(_table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no item left to recommend)"
    id_width = max(len("item_id"), *(len(row["item_id"]) for row in rows))
    header = f"{'rank':>4}  {'item_id':<{id_width}}  {'score':>10}" + ("  title" if "title" in rows[0] else "")
    lines = [header]
    for row in rows:
        line = f"{row['rank']:>4}  {row['item_id']:<{id_width}}  {row['score']:>10.4f}"
        if "title" in row:
            line += f"  {row['title']}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "recommend",
        help="Next items for a history from any genrec checkpoint.",
        description="Print rank, item id, title (when the catalog has text) and score of the top-k next items: "
                    "model.recommend(histories, k) of the loaded checkpoint. History items are never recommended "
                    "unless --include-history.",
    )
    add_checkpoint_argument(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--history", nargs="+", metavar="ID", help="One history: catalog item ids, oldest first.")
    source.add_argument("--input", metavar="FILE",
                        help="A text file with one history per line (item ids separated by spaces or commas).")
    parser.add_argument("-k", type=positive_int, default=10, help="Items per history (default 10).")
    parser.add_argument("--json", action="store_true",
                        help="One JSON object per history: {history, recommendations: [{rank, item_id, score, title}]}.")
    parser.add_argument("--include-history", action="store_true",
                        help="Allow items of the history in the recommendations (default: excluded).")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="Histories handled at once (default 32).")
    parser.add_argument("--dataset", default=None,
                        help="Dataset whose catalog gives the titles (default: the run folder's config.yaml dataset).")
    parser.set_defaults(func=recommend_from_args)
