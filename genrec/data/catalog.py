"""The item catalog: every item's id and text fields, and the text rendering used for embeddings.

Item ids are strings exactly as in the source data (Beauty items are ``"1"`` .. ``"12101"``). Row
``i`` of any item matrix (embeddings, codes, scores) is ``catalog.item_ids[i]``.

Text rendering (``ItemCatalog.text``): the default fields are ``title``, ``brand``, ``categories``
and ``genres`` (MovieLens); each non-empty one becomes ``"Label: value"`` and they are joined with
``"; "``, e.g. ``"Title: OPI Nail Lacquer; Brand: OPI; Categories: Beauty > Makeup > Nails"``.
Empty fields are skipped, so an item with an empty title (Beauty has 7) falls back to its other
fields. HTML entities (``&amp;``) left in the published titles are unescaped in ``title()`` and
``text()``; ``fields()`` returns the stored values untouched.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["ItemCatalog", "DEFAULT_TEXT_FIELDS"]

# Fields rendered by ``ItemCatalog.text`` when ``fields`` is None, in this order.
DEFAULT_TEXT_FIELDS: tuple[str, ...] = ("title", "brand", "categories", "genres")

# How list-valued fields are joined by default: Amazon categories are a path (root first), genres a
# set. Yelp categories are an unordered tag list: its catalog is built with category_separator=", ".
_LIST_SEPARATORS = {"categories": " > ", "genres": ", "}


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    if isinstance(value, (list, tuple)) and not any(not _is_missing(v) for v in value):
        return True
    return False


def _render_value(name: str, value: Any, separators: Mapping[str, str] = _LIST_SEPARATORS) -> str:
    if isinstance(value, (list, tuple)):
        parts = [html.unescape(str(v)).strip() for v in value if not _is_missing(v)]
        return separators.get(name, ", ").join(parts)
    if isinstance(value, float) and value.is_integer() and name != "price":
        return str(int(value))
    return html.unescape(str(value)).strip()


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


class ItemCatalog:
    """Items and their text fields, in a fixed row order.

    Args:
        item_ids (Sequence[str]): every item id, row order; must be unique strings.
        records (Sequence[Mapping] | Mapping[str, Mapping] | None): the fields of each item, either
            a list aligned with ``item_ids`` or a dict keyed by item id (missing ids get ``{}``).
            ``None``: no text at all (e.g. Amazon Sports). Yelp's ``name`` is stored as ``title``.
        name (str): the dataset name, used in error messages.
        category_separator (str, default " > "): joins ``categories`` in ``text()``; " > " for a
            root-first path (Amazon), ", " for unordered tags (Yelp; set by the loader).

    Raises:
        ValueError: duplicate or non-string ids, records of the wrong length, or records keyed
            by ids not in ``item_ids``.

    Example:
        >>> catalog = ItemCatalog(["a", "b"], [{"title": "Red lipstick", "brand": "X"}, {}])
        >>> catalog.text("a")
        'Title: Red lipstick; Brand: X'
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        records: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None = None,
        *,
        name: str = "catalog",
        category_separator: str = " > ",
    ) -> None:
        item_ids = list(item_ids)
        for item_id in item_ids:
            if not isinstance(item_id, str):
                raise ValueError(
                    f"`item_ids` must be strings as in the source data; got {item_id!r} "
                    f"({type(item_id).__name__})"
                )
        index = {item_id: row for row, item_id in enumerate(item_ids)}
        if len(index) != len(item_ids):
            seen: set[str] = set()
            duplicate = next(i for i in item_ids if i in seen or seen.add(i))
            raise ValueError(f"`item_ids` must be unique; {duplicate!r} appears more than once")
        if records is None:
            rows: list[dict[str, Any]] = [{} for _ in item_ids]
        elif isinstance(records, Mapping):
            unknown = [key for key in records if key not in index]
            if unknown:
                raise ValueError(
                    f"`records` has {len(unknown)} item id(s) not in `item_ids`, e.g. {unknown[0]!r}"
                )
            rows = [dict(records.get(item_id, {})) for item_id in item_ids]
        else:
            if len(records) != len(item_ids):
                raise ValueError(
                    f"`records` has {len(records)} entries but `item_ids` has {len(item_ids)}; "
                    "they must be aligned (or pass a dict keyed by item id)"
                )
            rows = [dict(record) for record in records]
        for row in rows:
            # Yelp calls the business name `name`; it plays the role of the title.
            if "title" not in row and "name" in row:
                row["title"] = row.pop("name")
            row.pop("item_id", None)
        self.name = name
        self.category_separator = category_separator
        self._separators = {**_LIST_SEPARATORS, "categories": category_separator}
        self._item_ids = item_ids
        self._index = index
        self._records = rows

    # ------------------------------------------------------------------ ids and rows
    @property
    def item_ids(self) -> list[str]:
        """Every item id in row order. Shared, not copied (cheap in loops): do not mutate."""
        return self._item_ids

    @property
    def item_index(self) -> dict[str, int]:
        """Item id -> row. Shared, not copied (cheap in loops): do not mutate."""
        return self._index

    def __len__(self) -> int:
        return len(self._item_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __iter__(self):
        return iter(self._item_ids)

    def __repr__(self) -> str:
        return f"ItemCatalog(name={self.name!r}, num_items={len(self)}, has_text={self.has_text})"

    def index(self, item_id: str) -> int:
        """Row of ``item_id``.

        Raises:
            ValueError: ``item_id`` is not in the catalog.
        """
        try:
            return self._index[item_id]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown item id {item_id!r}: not in the {self.name!r} catalog of {len(self)} items "
                f"(ids are strings as in the source data, e.g. {self._item_ids[0]!r})"
                if self._item_ids
                else f"unknown item id {item_id!r}: the {self.name!r} catalog is empty"
            ) from None

    def indices(self, item_ids: Iterable[str]) -> list[int]:
        """Rows of several item ids (explicit index helper). Raises ValueError on an unknown id."""
        return [self.index(item_id) for item_id in item_ids]

    def item_id(self, row: int) -> str:
        """Item id at ``row`` (explicit index helper)."""
        if not 0 <= int(row) < len(self):
            raise ValueError(f"`row` ({row}) must be in [0, {len(self)})")
        return self._item_ids[int(row)]

    def subset(self, item_ids: Sequence[str]) -> "ItemCatalog":
        """A new catalog with only ``item_ids`` (in that order), keeping their fields."""
        return ItemCatalog(
            list(item_ids), [self._records[self.index(i)] for i in item_ids], name=self.name,
            category_separator=self.category_separator,
        )

    # ------------------------------------------------------------------ fields and text
    def fields(self, item_id: str) -> dict[str, Any]:
        """All stored fields of ``item_id`` (a copy), e.g. ``{"title", "brand", "categories", ...}``."""
        return dict(self._records[self.index(item_id)])

    @property
    def field_names(self) -> list[str]:
        """Every field name present on at least one item, in first-seen order."""
        names: dict[str, None] = {}
        for record in self._records:
            for key in record:
                names.setdefault(key, None)
        return list(names)

    def title(self, item_id: str) -> str:
        """The item's title (HTML entities unescaped); ``""`` when missing."""
        value = self._records[self.index(item_id)].get("title")
        return "" if _is_missing(value) else _render_value("title", value)

    def categories(self, item_id: str) -> list[str]:
        """The item's category path, root first; ``[]`` when missing."""
        value = self._records[self.index(item_id)].get("categories")
        if _is_missing(value):
            return []
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value if not _is_missing(v)]

    def text(self, item_id: str, fields: Sequence[str] | None = None) -> str:
        """Render the item's text for a sentence encoder.

        Args:
            item_id (str): the item.
            fields (Sequence[str] | None): field names to render, in order; default
                ``DEFAULT_TEXT_FIELDS`` (title, brand, categories, genres). Missing or empty
                fields are skipped (so an empty title falls back to the other fields).

        Returns:
            str: e.g. ``"Title: ...; Brand: ...; Categories: Beauty > Makeup > Nails"``; ``""``
            when every requested field is empty.
        """
        record = self._records[self.index(item_id)]
        names = DEFAULT_TEXT_FIELDS if fields is None else tuple(fields)
        parts = []
        for name in names:
            value = record.get(name)
            if _is_missing(value):
                continue
            rendered = _render_value(name, value, self._separators)
            if rendered:
                parts.append(f"{_label(name)}: {rendered}")
        return "; ".join(parts)

    def texts(self, fields: Sequence[str] | None = None, *, allow_empty: bool = False) -> list[str]:
        """``text(item_id, fields)`` for every item, in ``item_ids`` order.

        Args:
            fields (Sequence[str] | None): as in ``text``.
            allow_empty (bool, default False): return ``""`` for items without text instead of
                raising.

        Returns:
            list[str]: one string per item (length ``len(self)``).

        Raises:
            ValueError: some item renders to empty text and ``allow_empty`` is False (names how
                many and the first ids), or the catalog has no text at all.
        """
        rendered = [self.text(item_id, fields) for item_id in self._item_ids]
        if not allow_empty:
            empty = [item_id for item_id, text in zip(self._item_ids, rendered) if not text]
            if empty:
                shown = ", ".join(repr(i) for i in empty[:5])
                what = "all" if len(empty) == len(self) else f"{len(empty)} of {len(self)}"
                raise ValueError(
                    f"catalog {self.name!r}: {what} items have empty text for fields "
                    f"{list(fields or DEFAULT_TEXT_FIELDS)} (e.g. item ids {shown}); text is "
                    f"required here. Available fields: {self.field_names or 'none'}. Pass other "
                    "`fields`, add an item_meta.jsonl to the dataset folder, or use a "
                    "tokenizer/model that does not need item text"
                )
        return rendered

    @property
    def has_text(self) -> bool:
        """True when at least one item has non-empty default text."""
        return any(self.text(item_id) for item_id in self._item_ids)

    def require_text(self, fields: Sequence[str] | None = None) -> None:
        """Raise a clear ValueError unless every item has non-empty text for ``fields``."""
        self.texts(fields)

    def to_records(self) -> list[dict[str, Any]]:
        """Every item's fields plus ``item_id``, row order (copies)."""
        return [{"item_id": i, **r} for i, r in zip(self._item_ids, self._records)]
