"""``load_dataset``: bundled dataset names, folder auto-detection and format dispatch.

Bundled datasets live in ``genrec/data/bundled/<name>/`` (package data, located relative to this
file). Any other folder is read by the files it contains:

=====================================  ==============  =========================================
files present                          format          notes
=====================================  ==============  =========================================
``sequential_data.txt[.gz]``           ``sequential``  S3-Rec/P5; + ``item_meta.jsonl[.gz]``
``ratings.dat``                        ``movielens``   + ``movies.dat`` (titles, genres)
``interactions.{csv,tsv,parquet}``     ``table``       or the only ``*.csv/*.tsv/*.parquet``
=====================================  ==============  =========================================

A path to a single file works too (the format follows from its name). ``format=`` forces a format.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from transformers.utils import logging

from genrec.data.catalog import ItemCatalog
from genrec.data.interactions import InteractionData, drop_duplicate_events
from genrec.data.readers import (
    read_item_meta,
    read_movielens_movies,
    read_movielens_ratings,
    read_sequence_file,
    read_table,
)

logger = logging.get_logger(__name__)

__all__ = ["load_dataset", "bundled_datasets", "resolve_dataset_path", "detect_format", "FORMATS"]

BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"
FORMATS = ("sequential", "table", "movielens")
_FORMAT_ALIASES = {"s3rec": "sequential", "p5": "sequential", "csv": "table", "tsv": "table",
                   "parquet": "table", "ml": "movielens"}
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz")


def bundled_datasets() -> list[str]:
    """Names of the datasets shipped inside the package (e.g. ``["amazon-beauty"]``)."""
    if not BUNDLED_ROOT.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_ROOT.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_dataset_path(name_or_path: str | os.PathLike) -> tuple[str, Path]:
    """Map a bundled name or a path to ``(dataset name, path)``.

    Raises:
        FileNotFoundError: neither a bundled name nor an existing path.
    """
    text = str(name_or_path)
    if os.sep not in text and text in bundled_datasets():
        return text, BUNDLED_ROOT / text
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            return path.resolve().name, path
        # Standard file names (sequential_data.txt, ratings.dat, interactions.csv) take the folder's
        # name; any other file its own stem ("clicks.parquet" -> "clicks").
        lower = path.name.lower()
        standard = lower.startswith(("sequential_data.", "interactions.")) or lower == "ratings.dat"
        return (path.resolve().parent.name if standard else path.name.split(".")[0]), path
    raise FileNotFoundError(
        f"dataset {text!r}: no bundled dataset of that name and no such file or folder; "
        f"bundled datasets: {bundled_datasets()}"
    )


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of a dataset folder or file from the files present.

    Raises:
        ValueError: nothing recognisable (lists what was found and what is supported).
    """
    path = Path(path)
    if path.is_file():
        name = path.name.lower()
        if name.startswith("sequential_data.txt"):
            return "sequential"
        if name.endswith(".dat"):
            return "movielens"
        if name.endswith(_TABLE_SUFFIXES):
            return "table"
        raise ValueError(
            f"cannot tell the format of file {str(path)!r}; supported: sequential_data.txt[.gz], "
            "ratings.dat, *.csv / *.tsv / *.parquet (or pass format=)"
        )
    if _first_existing(path, ("sequential_data.txt", "sequential_data.txt.gz")):
        return "sequential"
    if (path / "ratings.dat").is_file():
        return "movielens"
    if _table_file(path, required=False) is not None:
        return "table"
    found = sorted(p.name for p in path.iterdir())[:20] if path.is_dir() else []
    raise ValueError(
        f"cannot detect the dataset format of folder {str(path)!r} (files: {found}); expected "
        "sequential_data.txt[.gz] (S3-Rec/P5), ratings.dat (MovieLens) or an interactions "
        "table interactions.csv/.tsv/.parquet"
    )


def _table_file(folder: Path, required: bool = True) -> Path | None:
    preferred = _first_existing(folder, tuple(f"interactions{s}" for s in _TABLE_SUFFIXES))
    if preferred is not None:
        return preferred
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_TABLE_SUFFIXES))
    if len(candidates) == 1:
        return candidates[0]
    if required:
        raise ValueError(
            f"folder {str(folder)!r}: expected one interactions table (interactions.csv/.tsv/.parquet "
            f"or a single *.csv/*.tsv/*.parquet), found {[p.name for p in candidates]}"
        )
    return None


def _meta_file(folder: Path) -> Path | None:
    return _first_existing(folder, ("item_meta.jsonl", "item_meta.jsonl.gz"))


def has_item_text(name_or_path: str | os.PathLike) -> bool:
    """Whether a dataset ships item text (an ``item_meta.jsonl[.gz]`` or MovieLens ``movies.dat`` beside its
    interactions), read from the file names alone, without loading it.

    Raises:
        FileNotFoundError: neither a bundled name nor an existing path.
    """
    _, path = resolve_dataset_path(name_or_path)
    folder = path if path.is_dir() else path.parent
    return _meta_file(folder) is not None or (folder / "movies.dat").is_file()


def _catalog_from(
    name: str, sequences: dict[str, list[str]], meta: dict[str, dict[str, Any]] | None
) -> ItemCatalog:
    if meta is not None:
        # Yelp-style metadata (a business `name`, no `title`) has unordered category tags.
        tags = any("name" in record and "title" not in record for record in meta.values())
        return ItemCatalog(
            list(meta), list(meta.values()), name=name, category_separator=", " if tags else " > "
        )
    # No metadata: items in order of first appearance when walking the users' sequences.
    first_seen = dict.fromkeys(itertools.chain.from_iterable(sequences.values()))  # ordered, in C
    return ItemCatalog(list(first_seen), None, name=name)


def _check_known(sequences: dict[str, list[str]], meta: dict[str, dict] | None, source: Path) -> None:
    if meta is None:
        return
    for user, items in sequences.items():
        for item in items:
            if item not in meta:
                raise ValueError(
                    f"{source}: unknown item id {item!r} (user {user!r}) is not in the item "
                    f"metadata ({len(meta)} items)"
                )


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - the natural public name
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    min_rating: float | None = None,
    sep: str | None = None,
    keep_duplicates: bool = False,
) -> InteractionData:
    """Load a bundled dataset or a folder/file of interactions.

    Args:
        name_or_path: a bundled name (``"amazon-beauty"``, see ``bundled_datasets()``) or a path.
        format (str | None): ``"sequential"``, ``"table"`` or ``"movielens"``; None: detect.
        min_user_interactions, min_item_interactions (int, default 0): iterative k-core filter
            applied after reading (0 = off; the bundled S3-Rec files are already 5-core). Items
            removed by the filter are also removed from the catalog.
        user_col, item_col, time_col, rating_col (str | None): table column names (None: detect,
            see ``genrec.data.readers.read_table``).
        min_rating (float | None): tables and MovieLens: drop interactions rated below this.
        sep (str | None): table field separator (default by extension).
        keep_duplicates (bool, default False): keep duplicate events. By default an event repeating the same
            user, item and timestamp (without timestamps: the same item right after itself) is dropped with a
            warning and counted in ``data.duplicates_dropped``; see ``drop_duplicate_events``. Repeat
            consumption (the item again later) is always kept.

    Returns:
        InteractionData: users in file order, sequences oldest first, the catalog.

    Raises:
        FileNotFoundError: unknown name or missing file.
        ValueError: unknown format, malformed input (``file:line``), unknown item ids.
    """
    name, path = resolve_dataset_path(name_or_path)
    if format is not None:
        key = str(format).lower()
        key = _FORMAT_ALIASES.get(key, key)
        if key not in FORMATS:
            raise ValueError(f"`format` ({format!r}) must be one of {list(FORMATS)} (or None to detect)")
        format = key
    else:
        format = detect_format(path)
    folder = path if path.is_dir() else path.parent

    timestamps = None
    meta_path = _meta_file(folder)
    if format == "sequential":
        seq_path = path if path.is_file() else _first_existing(
            folder, ("sequential_data.txt", "sequential_data.txt.gz")
        )
        if seq_path is None:
            raise FileNotFoundError(f"folder {str(folder)!r} has no sequential_data.txt[.gz]")
        meta = read_item_meta(meta_path) if meta_path else None
        sequences = read_sequence_file(seq_path, known_items=None if meta is None else set(meta))
        source = seq_path
    elif format == "table":
        table_path = path if path.is_file() else _table_file(folder)
        sequences, timestamps = read_table(
            table_path, user_col=user_col, item_col=item_col, time_col=time_col,
            rating_col=rating_col, min_rating=min_rating, sep=sep,
        )
        meta = read_item_meta(meta_path) if meta_path else None
        _check_known(sequences, meta, table_path)
        source = table_path
    else:  # movielens
        ratings_path = path if path.is_file() else folder / "ratings.dat"
        sequences, timestamps, _ = read_movielens_ratings(ratings_path, min_rating=min_rating)
        movies_path = folder / "movies.dat"
        meta = read_movielens_movies(movies_path) if movies_path.is_file() else None
        _check_known(sequences, meta, ratings_path)
        source = ratings_path

    catalog = _catalog_from(name, sequences, meta)
    dropped = 0
    if not keep_duplicates:
        total = sum(len(items) for items in sequences.values())
        sequences, timestamps, dropped = drop_duplicate_events(sequences, timestamps)
        if dropped:
            what = "user, item and timestamp" if timestamps is not None else "item right after itself, no timestamps"
            logger.warning(
                f"dataset {name!r}: dropped {dropped} duplicate events ({100 * dropped / total:.1f}% of {total}; "
                f"same {what}) from {source}. Left in, they put each user's test item into its history. "
                "Pass keep_duplicates=True (config: data.keep_duplicates: true) to keep them."
            )
    data = InteractionData(
        name=name, sequences=sequences, catalog=catalog, timestamps=timestamps, source=str(source),
        duplicates_dropped=dropped,
    )
    if min_user_interactions or min_item_interactions:
        data = data.filter_kcore(min_user_interactions, min_item_interactions)
        if data.num_users == 0:
            raise ValueError(
                f"dataset {name!r}: no user is left after the k-core filter (users >= "
                f"{min_user_interactions}, items >= {min_item_interactions}); lower the thresholds"
            )
    logger.info("loaded %r", data)
    return data
