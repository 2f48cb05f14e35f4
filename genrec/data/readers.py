"""Readers for the supported raw formats. Each returns plain Python/numpy structures keyed by string ids.

Formats:

* **S3-Rec/P5 sequences** (``sequential_data.txt[.gz]``): one line per user,
  ``user item1 item2 ...``, oldest first, whitespace separated (CRLF tolerated).
* **Item metadata** (``item_meta.jsonl[.gz]``): one JSON object per line with an ``item_id`` and
  any text fields (Amazon: title, brand, categories, price, sales_type, sales_rank; Yelp: name,
  categories — ``name`` is used as the title).
* **Interactions table** (CSV/TSV/Parquet, optionally .gz for CSV/TSV): one row per interaction
  with user, item and (optional) timestamp columns.
* **MovieLens** ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and optional
  ``movies.dat`` (``MovieID::Title::Genres``, latin-1, genres ``|``-separated).

Errors name the file and the 1-based line number (``path:line``) of malformed input.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "open_text",
    "read_sequence_file",
    "read_item_meta",
    "read_table",
    "read_movielens_ratings",
    "read_movielens_movies",
    "table_to_sequences",
]

# Column names tried, in order, when the caller does not name a column.
USER_COLUMNS = ("user_id", "user", "userId", "UserID", "uid", "reviewerID", "visitorid")
ITEM_COLUMNS = ("item_id", "item", "itemId", "movieId", "MovieID", "iid", "asin", "business_id", "itemid")
TIME_COLUMNS = ("timestamp", "time", "ts", "unixReviewTime", "Timestamp", "date", "datetime")
RATING_COLUMNS = ("rating", "Rating", "overall", "stars", "score")
# Cells that spell a missing value (pandas' default NA strings). Read as ids they would become items such as
# "NaN" that collect every missing row, so id columns refuse them (the file and line are named).
MISSING_VALUE_STRINGS = frozenset({
    "", "NaN", "nan", "NAN", "-NaN", "-nan", "null", "NULL", "Null", "NA", "N/A", "n/a", "<NA>", "#NA", "#N/A",
    "#N/A N/A", "None", "none", "-1.#IND", "1.#QNAN", "1.#IND", "-1.#QNAN",
})


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz``.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline=None)
    return open(path, encoding=encoding, newline=None)


@contextlib.contextmanager
def _reading(path: Path, encoding: str = "utf-8", what: str = "file") -> Iterator[None]:
    """Turn a truncated/corrupt compressed file or undecodable bytes into a ValueError naming ``path``."""
    try:
        yield
    except FileNotFoundError:
        raise
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: cannot decode byte {error.start} as {encoding}; expected a {encoding} text {what}"
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path}: truncated or corrupt gzip data ({error}); expected a complete .gz {what}"
        ) from None
    except OSError as error:  # e.g. a read error inside gzip
        raise ValueError(f"{path}: cannot read the {what} ({error})") from None


def _snippet(text: str, limit: int = 60) -> str:
    """``repr`` of a line, shortened so an error message stays one readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _numbered_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    with open_text(path, encoding) as handle, _reading(path, encoding):
        for line_number, line in enumerate(handle, start=1):
            yield line_number, line


def read_sequence_file(
    path: str | os.PathLike, *, known_items: set[str] | None = None
) -> dict[str, list[str]]:
    """Read an S3-Rec/P5 ``sequential_data.txt[.gz]`` file.

    Args:
        path: the file.
        known_items (set[str] | None): if given, every item must be in it.

    Returns:
        dict[str, list[str]]: user id -> item ids in file order (chronological), users in file order.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a line without items, a repeated user, an unknown item, or an id spelling a missing value
            (``NaN``, ``null``, ``NA``, ...) (``path:line``).
    """
    path = Path(path)
    sequences: dict[str, list[str]] = {}
    for line_number, line in _numbered_lines(path):
        parts = line.split()
        if not parts:
            continue  # blank line (e.g. a trailing newline)
        if len(parts) < 2:
            raise ValueError(
                f"{path}:{line_number}: malformed line {_snippet(line.strip())}: expected "
                "'user_id item_id_1 item_id_2 ...' with at least one item"
            )
        user, items = parts[0], parts[1:]
        if not MISSING_VALUE_STRINGS.isdisjoint(parts):
            cell = next(part for part in parts if part in MISSING_VALUE_STRINGS)
            raise ValueError(
                f"{path}:{line_number}: missing value {cell!r} where an id belongs; cells spelling a missing value "
                "(NaN, null, NA, N/A, None, ...) are not read as ids"
            )
        if user in sequences:
            raise ValueError(f"{path}:{line_number}: user {user!r} appears on more than one line")
        if known_items is not None:
            for item in items:
                if item not in known_items:
                    raise ValueError(
                        f"{path}:{line_number}: unknown item id {item!r} (user {user!r}) is not in "
                        f"the item metadata ({len(known_items)} items)"
                    )
        sequences[user] = items
    if not sequences:
        raise ValueError(f"{path}: no user sequences found (empty file)")
    return sequences


def read_item_meta(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read ``item_meta.jsonl[.gz]``: one JSON object per line with an ``item_id``.

    Returns:
        dict[str, dict]: item id (as a string) -> its other fields, in file order.

    Raises:
        FileNotFoundError: missing file.
        ValueError: invalid JSON, a non-object line, a missing/duplicate ``item_id`` (``path:line``).
    """
    path = Path(path)
    records: dict[str, dict[str, Any]] = {}
    for line_number, line in _numbered_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: malformed JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
        if "item_id" not in record or record["item_id"] in (None, ""):
            raise ValueError(f"{path}:{line_number}: missing field 'item_id'")
        item_id = str(record.pop("item_id"))
        if item_id in records:
            raise ValueError(f"{path}:{line_number}: item_id {item_id!r} appears more than once")
        records[item_id] = record
    return records


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str,
                 path: Path, required: bool = True) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: the {what} column {wanted!r} (`{what}_col`) is not a column; columns are "
                             f"{columns}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    if required:
        raise ValueError(
            f"{path}: no {what} column found among {columns}; tried {list(candidates)} — rename it to one of "
            f"those or name it: --{what}-col (genrec data stats / tokenize / evaluate), `data.{what}_col` "
            f"(genrec train), {what}_col= (load_dataset)"
        )
    return None


def _ids_as_strings(values: Any) -> np.ndarray:
    """Object array of string ids; integral floats (from NaN-capable columns) become '12' not '12.0'."""
    import pandas as pd

    series = pd.Series(values)
    if pd.api.types.is_float_dtype(series) and np.all(np.mod(series.dropna(), 1) == 0):
        series = series.astype("Int64")
    return series.astype(str).to_numpy(dtype=object)


def _check_no_missing_strings(column: Any, name: str, where) -> None:
    """Refuse id cells that spell a missing value (``NaN``, ``null``, ``NA``, ...; see ``MISSING_VALUE_STRINGS``).

    Raises:
        ValueError: names the row (``where(row)``), the cell and the column.
    """
    import pandas as pd

    if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return  # numeric ids: NaN cells are already caught as empty values
    missing = column.astype(str).str.strip().isin(MISSING_VALUE_STRINGS).to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(
            f"{where(row)}: missing value {column.iloc[row]!r} in id column {name!r} ({int(missing.sum())} such "
            f"cells); cells spelling a missing value ({', '.join(sorted(MISSING_VALUE_STRINGS - {''})[:6])}, ...) "
            "are not read as ids: drop those rows or give the ids real names"
        )


def read_table(
    path: str | os.PathLike,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    min_rating: float | None = None,
    sep: str | None = None,
) -> tuple[dict[str, list[str]], dict[str, list[int]] | None]:
    """Read an interactions table (CSV/TSV/Parquet) into chronological sequences.

    Column names default to the first present of ``USER_COLUMNS`` / ``ITEM_COLUMNS`` /
    ``TIME_COLUMNS`` / ``RATING_COLUMNS``. Ids are read as strings. Timestamps may be numbers or
    date strings (parsed with ``pandas.to_datetime`` to integer seconds). Without a time column the
    file order is the chronological order.

    Ordering: per user, a stable sort by timestamp — rows with equal timestamps keep their order in
    the file. Users are listed in order of first appearance.

    Args:
        path: ``.csv``, ``.tsv``, ``.txt`` (tab-separated), optionally ``.gz``, or ``.parquet``.
        user_col, item_col, time_col, rating_col (str | None): column names (None: detect).
        min_rating (float | None): drop rows whose rating is below this (needs a rating column).
        sep (str | None): field separator for text tables (default: ``,`` for .csv, tab otherwise).

    Returns:
        tuple: (sequences user -> item ids, timestamps user -> ints or None without a time column).

    Raises:
        FileNotFoundError: missing file.
        ValueError: unknown/missing columns, empty cells or id cells spelling a missing value (``NaN``,
            ``null``, ``NA``, ... — names the line), unparsable rows or times.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"interactions table {str(path)!r} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    is_parquet = suffixes[-1:] == [".parquet"]
    if is_parquet:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
        first_data_line = 0  # report parquet rows 0-based as "row"
    else:
        plain = suffixes[:-1] if suffixes[-1:] == [".gz"] else suffixes  # "x.csv.gz" -> [".csv"]
        base = plain[-1] if plain else ""
        separator = sep if sep is not None else ("," if base == ".csv" else "\t")
        try:
            # Ids must stay strings ("007" is not 7); other columns are parsed by pandas (fast
            # numeric timestamps). Read the header first to know which columns are ids.
            with _reading(path, what="table"):
                header = [str(c) for c in pd.read_csv(path, sep=separator, nrows=0).columns]
            id_columns = {
                _pick_column(header, user_col, USER_COLUMNS, "user", path),
                _pick_column(header, item_col, ITEM_COLUMNS, "item", path),
            }
            with _reading(path, what="table"):
                frame = pd.read_csv(path, sep=separator, dtype={c: str for c in id_columns},
                                    keep_default_na=False, na_values=[""], skip_blank_lines=False)
        except pd.errors.ParserError as error:
            raise ValueError(f"{path}: malformed table: {str(error).strip()}") from None
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: empty file (no header)") from None
        first_data_line = 2  # header is line 1
    columns = [str(c) for c in frame.columns]
    user = _pick_column(columns, user_col, USER_COLUMNS, "user", path)
    item = _pick_column(columns, item_col, ITEM_COLUMNS, "item", path)
    time = _pick_column(columns, time_col, TIME_COLUMNS, "time", path, required=False)
    rating = _pick_column(columns, rating_col, RATING_COLUMNS, "rating", path,
                          required=min_rating is not None)
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has no rows")

    def where(row: int) -> str:
        return f"{path}:{row + first_data_line}" if first_data_line else f"{path} row {row}"

    used = [c for c in (user, item, time, rating if min_rating is not None else None) if c]
    for column in used:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            row = int(np.argmax(missing))
            raise ValueError(f"{where(row)}: empty value in column {column!r}")
    for column in (user, item):
        _check_no_missing_strings(frame[column], column, where)

    keep = np.ones(len(frame), dtype=bool)
    if min_rating is not None:
        ratings = pd.to_numeric(frame[rating], errors="coerce").to_numpy(dtype=float)
        if np.isnan(ratings).any():
            row = int(np.argmax(np.isnan(ratings)))
            raise ValueError(f"{where(row)}: rating {frame[rating].iloc[row]!r} is not a number")
        keep &= ratings >= min_rating

    users = _ids_as_strings(frame[user].to_numpy())
    items = _ids_as_strings(frame[item].to_numpy())
    stamps = None
    if time is not None:
        stamps = _parse_times(frame[time], path, where)
    if not keep.all():
        users, items = users[keep], items[keep]
        stamps = None if stamps is None else stamps[keep]
    return table_to_sequences(users, items, stamps)


def _parse_times(column: Any, path: Path, where) -> np.ndarray:
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any():
        values = numeric.to_numpy()
        if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
            values = values.astype(np.int64)
        return values
    if numeric.notna().any():  # mostly numbers: the first non-number is the bad cell
        row = int(np.argmax(numeric.isna().to_numpy()))
        raise ValueError(f"{where(row)}: timestamp {column.iloc[row]!r} is not a number")
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        row = int(np.argmax(parsed.isna().to_numpy()))
        raise ValueError(
            f"{where(row)}: timestamp {column.iloc[row]!r} is neither a number nor a date/time"
        )
    return (parsed.astype("int64") // 10**9).to_numpy()


def table_to_sequences(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None
) -> tuple[dict[str, list[str]], dict[str, list[int]] | None]:
    """Group interaction rows into per-user chronological sequences (vectorised).

    Args:
        users, items: object arrays of string ids, shape ``(n,)``, in file order.
        timestamps: numeric ``(n,)`` or None (file order is chronological).

    Returns:
        tuple: (user -> item ids, user -> timestamps or None); users by first appearance; within a
        user a stable sort by timestamp (ties keep file order).
    """
    import pandas as pd

    user_codes, user_names = pd.factorize(users, sort=False)  # codes in order of first appearance
    n = len(user_codes)
    keys = [np.arange(n)]  # last tie-breaker: file order (makes the stable order explicit)
    if timestamps is not None:
        keys.append(np.asarray(timestamps))
    keys.append(user_codes)
    order = np.lexsort(keys)  # primary key: user, then time, then file position
    counts = np.bincount(user_codes, minlength=len(user_names))
    bounds = np.cumsum(counts)[:-1]
    item_chunks = np.split(items[order], bounds)
    sequences = {str(u): chunk.tolist() for u, chunk in zip(user_names, item_chunks)}
    stamps_out = None
    if timestamps is not None:
        time_chunks = np.split(np.asarray(timestamps)[order], bounds)
        stamps_out = {str(u): chunk.tolist() for u, chunk in zip(user_names, time_chunks)}
    return sequences, stamps_out


def _scan_double_colon(path: Path, num_fields: int, encoding: str, numeric_fields: tuple[int, ...]) -> None:
    """Slow path: find and report the first malformed ``a::b::c`` line."""
    for line_number, line in _numbered_lines(path, encoding):
        text = line.rstrip("\r\n")
        parts = text.split("::")
        if len(parts) != num_fields or any(not p.strip() for p in parts):
            raise ValueError(
                f"{path}:{line_number}: malformed line {_snippet(text)}: expected {num_fields} fields "
                f"separated by '::'"
            )
        for field_index in numeric_fields:
            try:
                float(parts[field_index])
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: field {field_index + 1} ({parts[field_index]!r}) must be a number"
                ) from None


def read_movielens_ratings(
    path: str | os.PathLike, *, min_rating: float | None = None
) -> tuple[dict[str, list[str]], dict[str, list[int]], np.ndarray]:
    """Read MovieLens ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``).

    Returns:
        tuple: (user -> movie ids sorted by timestamp, stable; user -> timestamps; the movie id of
        every row (object array, file order) for catalog checks).

    Raises:
        FileNotFoundError: missing file.
        ValueError: a malformed line (``path:line``).
    """
    import pandas as pd

    path = Path(path)
    with open_text(path, "latin-1") as handle, _reading(path, "latin-1"):
        text = handle.read()
    # Fast path: C parser on tabs; any irregularity falls back to a line scan that names the line.
    try:
        frame = pd.read_csv(io.StringIO(text.replace("::", "\t")), sep="\t", header=None,
                            names=["user", "item", "rating", "timestamp"], dtype=str,
                            keep_default_na=False, na_values=[""], skip_blank_lines=False)
    except pd.errors.ParserError:
        frame = None
    if frame is not None and len(frame) > 0:
        times = pd.to_numeric(frame["timestamp"], errors="coerce")
        ratings = pd.to_numeric(frame["rating"], errors="coerce")
        if frame.isna().any(axis=None) or times.isna().any() or ratings.isna().any():
            frame = None
    if frame is None:
        _scan_double_colon(path, 4, "latin-1", numeric_fields=(2, 3))
        raise ValueError(f"{path}: malformed ratings file")  # scan found nothing specific
    if len(frame) == 0:
        raise ValueError(f"{path}: no ratings found (empty file)")
    for column in ("user", "item"):
        _check_no_missing_strings(frame[column], column, lambda row: f"{path}:{row + 1}")
    keep = np.ones(len(frame), dtype=bool) if min_rating is None else (ratings.to_numpy() >= min_rating)
    users = frame["user"].str.strip().to_numpy(dtype=object)[keep]
    items = frame["item"].str.strip().to_numpy(dtype=object)[keep]
    sequences, stamps = table_to_sequences(users, items, times.to_numpy()[keep].astype(np.int64))
    return sequences, stamps, frame["item"].str.strip().to_numpy(dtype=object)


def read_movielens_movies(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read MovieLens ``movies.dat`` (``MovieID::Title::Genres``, latin-1).

    Returns:
        dict[str, dict]: movie id -> ``{"title": str, "genres": [str, ...]}`` in file order.

    Raises:
        FileNotFoundError: missing file.
        ValueError: a malformed line or a repeated movie id (``path:line``).
    """
    path = Path(path)
    movies: dict[str, dict[str, Any]] = {}
    for line_number, line in _numbered_lines(path, "latin-1"):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        head, sep_1, rest = text.partition("::")
        title, sep_2, genres = rest.rpartition("::")
        if not sep_1 or not sep_2 or not head.strip():
            raise ValueError(
                f"{path}:{line_number}: malformed line {_snippet(text)}: expected 'MovieID::Title::Genres'"
            )
        movie_id = head.strip()
        if movie_id in movies:
            raise ValueError(f"{path}:{line_number}: movie id {movie_id!r} appears more than once")
        genre_list = [g for g in genres.split("|") if g and g != "(no genres listed)"]
        movies[movie_id] = {"title": title.strip(), "genres": genre_list}
    return movies
