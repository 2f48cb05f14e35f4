"""Sequential indexing (Hua et al. 2023, "How to Index Item IDs"; P5): consecutive numbers.

Items are numbered 0, 1, 2, ... in order of first appearance when walking the TRAINING histories (users
in the order given, items oldest first); items that never appear in training follow in catalog order.
The number is written in base ``base`` with a fixed number of digits, most significant first, and each
digit is one code level: with ``base=10`` item 1234 of 12,101 gets ``(0, 1, 2, 3, 4)``, tokens
``<a_0><b_1><c_2><d_3><e_4>`` (the "sub-piece" tokenization of How to Index, with position-specific
digit tokens so all ids have the same length).

Known leak (P5 PR #3): under consecutive numbering the next item of a user is often "the largest id
seen so far + 1", so a model can score well by counting. ``shuffle=True`` assigns the numbers by a
seeded random permutation instead, which removes the leak (the "sequential-shuffled" variant; also
registered under that method name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from transformers.utils import logging

from genrec.tokenization.base import ItemTokenizer, register_tokenizer
from genrec.tokenization.config import ItemTokenizerConfig, check_bool, check_int

logger = logging.get_logger(__name__)

__all__ = [
    "SequentialTokenizerConfig",
    "SequentialTokenizer",
    "ShuffledSequentialTokenizerConfig",
    "ShuffledSequentialTokenizer",
]


@dataclass
class SequentialTokenizerConfig(ItemTokenizerConfig):
    """Config of sequential indexing.

    Args:
        base (int, default 10): digits per level (= codebook size of every level), >= 2. ``base=10``
            gives decimal digits; ``base=100`` two-digit chunks.
        num_levels (int, default 0): number of digits; 0 = the fewest that number every item.
        shuffle (bool, default False): number items by a seeded random permutation (no leak).
    """

    base: int = 10
    num_levels: int = 0
    shuffle: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("base", self.base, minimum=2)
        check_int("num_levels", self.num_levels, minimum=0)
        check_bool("shuffle", self.shuffle)


def first_appearance_order(item_ids: list[str], sequences: list[list[str]] | None) -> np.ndarray:
    """Catalog rows ordered by first appearance in ``sequences``; unseen items follow in catalog order.

    Returns:
        np.ndarray: ``(num_items,)`` int64, a permutation of ``range(num_items)``.
    """
    index = {item: row for row, item in enumerate(item_ids)}
    seen = np.zeros(len(item_ids), dtype=bool)
    order = []
    for sequence in sequences or []:
        for item in sequence:
            row = index[item]
            if not seen[row]:
                seen[row] = True
                order.append(row)
    order.extend(np.flatnonzero(~seen).tolist())
    return np.asarray(order, dtype=np.int64)


def number_to_digits(numbers: np.ndarray, base: int, num_levels: int) -> np.ndarray:
    """``(n,)`` non-negative ints -> ``(n, num_levels)`` base-``base`` digits, most significant first."""
    powers = base ** np.arange(num_levels - 1, -1, -1, dtype=np.int64)  # (num_levels,)
    return (numbers[:, None] // powers[None, :]) % base


@register_tokenizer("sequential")
class SequentialTokenizer(ItemTokenizer):
    """Consecutive item numbers in order of first appearance in training, as fixed-width digits."""

    config_class = SequentialTokenizerConfig
    handles_collisions = True  # distinct numbers -> distinct digit strings

    def _fit_codes(self, catalog, *, sequences, embeddings):
        config = self.config
        item_ids = list(catalog.item_ids)
        num_items = len(item_ids)
        needed = max(1, math.ceil(math.log(num_items, config.base) - 1e-12)) if num_items > 1 else 1
        while config.base**needed < num_items:  # guard float rounding
            needed += 1
        num_levels = config.num_levels or needed
        if config.base**num_levels < num_items:
            raise ValueError(
                f"`num_levels` ({num_levels}) digits of `base` ({config.base}) number only "
                f"{config.base**num_levels} items but the catalog has {num_items}; use num_levels >= {needed} or 0"
            )
        if config.shuffle:
            numbers = np.random.default_rng(config.seed).permutation(num_items).astype(np.int64)
        else:
            if sequences is None:
                logger.warning("sequential tokenizer fitted without `sequences`: numbering items in catalog order")
            order = first_appearance_order(item_ids, sequences)
            numbers = np.empty(num_items, dtype=np.int64)
            numbers[order] = np.arange(num_items, dtype=np.int64)
        self.item_numbers = numbers
        return number_to_digits(numbers, config.base, num_levels), [config.base] * num_levels


@dataclass
class ShuffledSequentialTokenizerConfig(SequentialTokenizerConfig):
    """:class:`SequentialTokenizerConfig` with ``shuffle=True`` by default."""

    shuffle: bool = True


@register_tokenizer("sequential-shuffled")
class ShuffledSequentialTokenizer(SequentialTokenizer):
    """``sequential`` with ``shuffle=True`` by default: seeded random numbers, no next-id leak."""

    config_class = ShuffledSequentialTokenizerConfig
