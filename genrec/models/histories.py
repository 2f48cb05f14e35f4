"""User histories given as catalog item ids → validated catalog rows (shared by every model's recommend())."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["CatalogIdsMixin", "catalog_index", "history_rows", "left_padded_rows", "read_item_ids_file"]


def read_item_ids_file(path) -> list[str]:
    """The ``item_ids`` list of a saved ``item_ids.json`` (``{"item_ids": ["1", "2", ...]}``).

    Raises:
        ValueError: the file is not UTF-8 JSON of that shape (the message names the file).
    """
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}); expected {{\"item_ids\": [...]}}") from None
    item_ids = payload.get("item_ids") if isinstance(payload, dict) else None
    if not isinstance(item_ids, list) or not all(isinstance(item, (str, int)) for item in item_ids):
        raise ValueError(f"{str(path)!r} must hold {{\"item_ids\": [...]}} with a list of item ids")
    return [str(item) for item in item_ids]


def catalog_index(item_ids: Sequence[str], num_items: int) -> tuple[list[str], dict[str, int]]:
    """Validate a model's catalog ids (row ``j`` = ``item_ids[j]``) and build their id -> row index.

    Raises:
        ValueError: a string instead of a list, a length other than ``num_items``, or duplicate ids.
    """
    if isinstance(item_ids, str):
        raise ValueError("`item_ids` must be a list of item ids, not a string")
    item_ids = [str(item_id) for item_id in item_ids]
    if len(item_ids) != num_items:
        raise ValueError(f"`item_ids` has {len(item_ids)} ids but `num_items` is {num_items}; they must match")
    index = {item_id: row for row, item_id in enumerate(item_ids)}
    if len(index) != len(item_ids):
        raise ValueError("`item_ids` contains duplicate ids; every catalog id must be unique")
    return item_ids, index


class CatalogIdsMixin:
    """``item_ids`` / ``item_index`` binding and the ``item_embeddings`` input-embedding accessors shared by the
    id-embedding models (SASRec, the reward model): row ``j`` of the catalog = embedding row ``j + 1``."""

    def set_item_ids(self, item_ids: Sequence[str]) -> None:
        """Bind the catalog: ``item_ids[j]`` is catalog row ``j`` (embedding row ``j + 1``).

        Raises:
            ValueError: wrong length or duplicate ids.
        """
        self.item_ids, self._item_index = catalog_index(item_ids, self.config.num_items)

    @property
    def item_index(self) -> dict[str, int]:
        """Catalog id -> row (empty until ``item_ids`` are bound)."""
        return self._item_index

    def get_input_embeddings(self):
        return self.item_embeddings

    def set_input_embeddings(self, value) -> None:
        self.item_embeddings = value


def history_rows(
    histories: Sequence[Sequence[str]], item_index: Mapping[str, int], *, max_len: int | None = None
) -> list[list[int]]:
    """Catalog rows of each history (oldest first), keeping the last ``max_len`` items when given.

    Raises:
        ValueError: ``histories`` is a string, a history is a string or empty, or an item id (among the
            kept items) is not in ``item_index``.
    """
    if isinstance(histories, str):
        raise ValueError("`histories` must be a list of histories (lists of item ids), not a string")
    rows = []
    for number, history in enumerate(histories):
        if isinstance(history, str) or len(history) == 0:
            raise ValueError(f"history {number} ({history!r}) must be a non-empty list of item ids")
        kept = list(history) if max_len is None else list(history)[-max_len:]
        try:
            rows.append([item_index[str(item)] for item in kept])
        except KeyError as error:
            raise ValueError(
                f"history {number} contains item id {error.args[0]!r}, which is not in the model's catalog "
                f"of {len(item_index)} items"
            ) from None
    return rows


def left_padded_rows(rows: Sequence[Sequence[int]], *, offset: int = 1) -> torch.LongTensor:
    """``(batch, longest)`` tensor of ``row + offset`` per history, left-padded with 0 (offset 1 keeps 0 = pad)."""
    width = max(len(row) for row in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    for number, row in enumerate(rows):
        input_ids[number, width - len(row):] = torch.tensor(row, dtype=torch.long) + offset
    return input_ids
