"""User histories given as catalog item ids → validated catalog rows (shared by every model's recommend(), see
:mod:`genrec.models.recommender`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["catalog_fingerprint", "catalog_index", "check_catalog_fingerprint", "history_rows", "left_padded_rows",
           "read_item_ids_file", "seen_items_mask", "top_items"]


def __getattr__(name: str) -> Any:
    """``CatalogIdsMixin`` / ``ItemEmbeddingCatalogMixin`` moved to :mod:`genrec.models.catalog` (still importable
    from here; resolved lazily because that module imports this one)."""
    if name in ("CatalogIdsMixin", "ItemEmbeddingCatalogMixin"):
        from genrec.models import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# config.json key holding the fingerprint of the catalog files a checkpoint was saved with.
FINGERPRINT_KEY = "catalog_fingerprint"


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


def seen_items_mask(histories: Sequence[Sequence[str]], item_index: Mapping[str, int], num_items: int, *,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``(batch, num_items)``: True for every item anywhere in the history.

    ``recommend(exclude_history=True)`` masks with this, not with the window fed to the model: a history longer
    than the model's window still has its older items excluded.

    Raises:
        ValueError: as :func:`history_rows` (an empty history or an unknown id).
    """
    rows = history_rows(histories, item_index)
    mask = torch.zeros(len(rows), num_items, dtype=torch.bool)
    for number, row in enumerate(rows):
        mask[number, row] = True
    return mask.to(device) if device is not None else mask


def top_items(scores: torch.Tensor, k: int, item_ids: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Per row, up to ``k`` ``(item_id, score)`` pairs, best first, leaving out ``-inf`` (excluded) items.

    A row with fewer than ``k`` recommendable items (e.g. ``k`` near the catalog size with the history excluded)
    returns fewer pairs -- never an excluded item padded in with a ``-inf`` score.

    Args:
        scores: ``(batch, num_items)`` float scores, ``-inf`` = never recommend.
        k: items per row.
        item_ids: catalog ids, column ``j`` = ``item_ids[j]``.
    """
    values, columns = scores.topk(min(k, scores.shape[1]), dim=1)  # (batch, k), best first
    return [[(item_ids[c], v) for c, v in zip(cols, vals) if v != float("-inf")]
            for cols, vals in zip(columns.tolist(), values.tolist())]


def catalog_fingerprint(item_ids: Sequence[str], *codes: Any) -> str:
    """A short hash of a catalog: the item ids in row order and integer code tables (item codes, token ids).

    ``save_pretrained`` stores it in ``config.json`` (``catalog_fingerprint``) beside the weights, and
    ``from_pretrained`` recomputes it from the catalog files it loads (``item_ids.json``, ``catalog.safetensors``,
    ``item_tokenizer/``, the text tokenizer): files from different checkpoints would otherwise load silently and
    recommend other items than the weights were trained for.

    Args:
        item_ids: catalog ids, row order. codes: integer arrays/tensors (any shape), or None (skipped).
    """
    digest = hashlib.sha256(json.dumps([str(item) for item in item_ids]).encode("utf-8"))
    for table in codes:
        if table is None:
            continue
        array = np.ascontiguousarray(table.detach().cpu().numpy() if isinstance(table, torch.Tensor) else table,
                                     dtype=np.int64)
        digest.update(repr(array.shape).encode("ascii"))
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def check_catalog_fingerprint(config: Any, fingerprint: str, where: Any, files: str) -> None:
    """Compare a loaded catalog's fingerprint with the one ``config.json`` was saved with.

    Args:
        config: the loaded model config. fingerprint: :func:`catalog_fingerprint` of what was loaded.
        where: the checkpoint (for messages). files: the catalog files that were compared (for messages).

    Raises:
        ValueError: the fingerprints differ (the files do not belong together). A checkpoint saved before
            fingerprints existed (none in ``config.json``) only logs a warning.
    """
    saved = getattr(config, FINGERPRINT_KEY, None)
    if saved is None:
        logger.warning_once(
            f"{where}: config.json has no {FINGERPRINT_KEY} (saved by an older genrec), so nothing checks that "
            f"{files} belong to these weights; save the model again to add one"
        )
        return
    if saved != fingerprint:
        raise ValueError(
            f"{where}: {files} do not belong to the weights: config.json was saved with {FINGERPRINT_KEY} "
            f"{saved!r} but those files give {fingerprint!r}. Some files come from another checkpoint; copy the "
            "whole checkpoint folder"
        )
