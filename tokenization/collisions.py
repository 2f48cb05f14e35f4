"""Collision statistics and the TIGER-style disambiguation level.

Two items *collide* when their code rows are identical. TIGER (Rajput et al. 2023) resolves this by
appending one more code: items sharing a code get 0, 1, 2, ... in a fixed order (here: catalog
order), items alone in their group get 0. The codebook of that extra level has ``max_group_size``
entries.

All functions take codes as an int64 array ``(num_items, code_length)`` where ``-1`` pads the end of
shorter (variable-length) codes; a padded row compares equal only to the identically padded row.
"""

from __future__ import annotations

import numpy as np

__all__ = ["collision_groups", "collision_stats", "append_disambiguation_level", "codes_are_unique"]


def collision_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group identical code rows.

    Args:
        codes (np.ndarray): ``(num_items, L)`` int64 codes.

    Returns:
        tuple: ``group`` ``(num_items,)`` int64 group id of every row (ids are dense, ``0..G-1``), and
        ``sizes`` ``(G,)`` int64 number of rows in every group.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"`codes` must be 2-d (num_items, code_length), got shape {codes.shape}")
    if codes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, group, sizes = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return group.reshape(-1).astype(np.int64), sizes.astype(np.int64)


def collision_stats(codes: np.ndarray) -> dict[str, float | int]:
    """Collision statistics of a code table.

    Returns:
        dict: ``collision_rate`` (fraction of items whose code row is shared with another item),
        ``num_collision_groups`` (groups with >= 2 items), ``max_group_size`` and ``num_unique_codes``.
    """
    group, sizes = collision_groups(codes)
    num_items = len(group)
    shared = int(sizes[sizes > 1].sum()) if num_items else 0
    return {
        "collision_rate": shared / num_items if num_items else 0.0,
        "num_collision_groups": int((sizes > 1).sum()),
        "max_group_size": int(sizes.max()) if num_items else 0,
        "num_unique_codes": int(len(sizes)),
    }


def codes_are_unique(codes: np.ndarray) -> bool:
    """True when no two rows of ``codes`` are identical."""
    _, sizes = collision_groups(codes)
    return bool((sizes <= 1).all())


def append_disambiguation_level(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Append a TIGER disambiguation column: the rank of each item within its group of equal codes.

    Ranks follow row order (catalog order), so the result is deterministic.

    Args:
        codes (np.ndarray): ``(num_items, L)`` int64 fixed-length codes (no ``-1`` padding).

    Returns:
        tuple: ``(new_codes, codebook_size)`` with ``new_codes`` ``(num_items, L + 1)`` int64, unique
        rows, and ``codebook_size`` = the largest group size (at least 2, the smallest legal codebook).

    Example:
        >>> append_disambiguation_level(np.array([[3, 1], [0, 2], [3, 1]]))[0].tolist()
        [[3, 1, 0], [0, 2, 0], [3, 1, 1]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    if (codes < 0).any():
        raise ValueError("append_disambiguation_level needs fixed-length codes (no -1 padding)")
    group, sizes = collision_groups(codes)
    # Stable sort by group keeps catalog order inside each group; rank = position - group start.
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(starts, sizes)
    new_codes = np.concatenate([codes, rank[:, None]], axis=1)
    return new_codes, max(2, int(sizes.max()) if len(sizes) else 2)
