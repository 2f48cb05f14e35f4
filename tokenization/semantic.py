"""Semantic (content-based) indexing (Hua et al. 2023): the category path as prefix, then a leaf index.

Every item's category path (``catalog.categories(item)``, root first, e.g. ``Beauty > Makeup > Nails >
Nail Polish``) becomes one code per level: the rank of the category name among its siblings (the
categories with the same parent path), names sorted so codes do not depend on catalog order. Items
with a shorter path get the empty name ``""`` (rank 0 among its siblings) at the missing levels.
Leading levels where every item that has a category has the same one (Beauty's root ``"Beauty"``)
carry no information and are dropped when ``skip_shared_root=True``. A final level numbers the
items inside each leaf category (0, 1, 2, ... in catalog order); with ``leaf_base > 0`` that number
is written as several base-``leaf_base`` digits, so no level needs a codebook as large as the
biggest category.

``collision_rate_before`` in the stats is the fraction of items that share their category path with
another item (the leaf index is this scheme's collision fix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.tokenization.base import ItemTokenizer, register_tokenizer
from genrec.tokenization.collisions import collision_groups
from genrec.tokenization.config import ItemTokenizerConfig, check_bool, check_int
from genrec.tokenization.sequential import number_to_digits

__all__ = ["SemanticTokenizerConfig", "SemanticTokenizer", "category_codes"]


@dataclass
class SemanticTokenizerConfig(ItemTokenizerConfig):
    """Config of category-based indexing.

    Args:
        category_depth (int, default 0): category levels used (after dropping the shared root); 0 = the
            deepest path in the catalog. More than the catalog holds is an error.
        skip_shared_root (bool, default True): drop leading levels where all items share one category.
        leaf_base (int, default 0): 0 = the leaf index is one code (codebook = largest category); >= 2 =
            the leaf index written as fixed-width base-``leaf_base`` digits.
    """

    category_depth: int = 0
    skip_shared_root: bool = True
    leaf_base: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("category_depth", self.category_depth, minimum=0)
        check_bool("skip_shared_root", self.skip_shared_root)
        check_int("leaf_base", self.leaf_base, minimum=0)
        if self.leaf_base == 1:
            raise ValueError("`leaf_base` (1) must be 0 (one leaf code) or >= 2")


def category_codes(
    paths: list[list[str]], *, category_depth: int = 0, skip_shared_root: bool = True
) -> tuple[np.ndarray, list[int]]:
    """Per-level sibling ranks of category paths.

    Args:
        paths (list[list[str]]): one category path per item, root first (may be empty).
        category_depth (int): levels to keep (0 = all).
        skip_shared_root (bool): drop leading levels that are identical for every item.

    Returns:
        tuple: ``codes`` ``(num_items, depth)`` int64 and ``codebook_sizes`` (list of ``depth`` ints >= 2).

    Raises:
        ValueError: no item has a category, or ``category_depth`` exceeds the available depth.
    """
    paths = [[str(name).strip() for name in path] for path in paths]
    if skip_shared_root:
        # A level is dropped when every item that has it holds the same name (items without any
        # category still differ from the rest through the empty name at the next level).
        while any(paths) and len({path[0] for path in paths if path}) == 1:
            paths = [path[1:] for path in paths]
    depth = max((len(path) for path in paths), default=0)
    if depth == 0:
        raise ValueError(
            "the catalog has no category information below a shared root (`categories` empty for every item); "
            "the semantic tokenizer needs item categories"
        )
    if category_depth > depth:
        raise ValueError(
            f"`category_depth` ({category_depth}) exceeds the deepest category path in the catalog ({depth} levels"
            f"{' after the shared root' if skip_shared_root else ''})"
        )
    depth = category_depth or depth
    padded = [tuple(path[:depth]) + ("",) * (depth - len(path[:depth])) for path in paths]
    codes = np.zeros((len(paths), depth), dtype=np.int64)
    sizes = []
    for level in range(depth):
        children: dict[tuple[str, ...], set[str]] = {}
        for path in padded:
            children.setdefault(path[:level], set()).add(path[level])
        rank = {parent: {name: r for r, name in enumerate(sorted(names))} for parent, names in children.items()}
        codes[:, level] = [rank[path[:level]][path[level]] for path in padded]
        sizes.append(max(2, max(len(names) for names in children.values())))
    return codes, sizes


@register_tokenizer("semantic")
class SemanticTokenizer(ItemTokenizer):
    """Category path codes + index inside the leaf category."""

    config_class = SemanticTokenizerConfig
    handles_collisions = True  # the leaf index makes codes unique

    def _fit_codes(self, catalog, *, sequences, embeddings):
        config = self.config
        paths = [list(catalog.categories(item)) for item in catalog.item_ids]
        prefix, sizes = category_codes(
            paths, category_depth=config.category_depth, skip_shared_root=config.skip_shared_root
        )
        self._raw_codes = prefix
        leaf = leaf_index(prefix)
        largest = int(leaf.max()) + 1
        if config.leaf_base == 0:
            return np.concatenate([prefix, leaf[:, None]], axis=1), [*sizes, max(2, largest)]
        digits = 1
        while config.leaf_base**digits < largest:
            digits += 1
        leaf_codes = number_to_digits(leaf, config.leaf_base, digits)
        return np.concatenate([prefix, leaf_codes], axis=1), [*sizes, *[config.leaf_base] * digits]


def leaf_index(prefix: np.ndarray) -> np.ndarray:
    """``(num_items,)`` rank of each item among the items with the same prefix row, in row order."""
    group, sizes = collision_groups(prefix)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(starts, sizes)
    return rank
