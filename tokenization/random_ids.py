"""Random indexing (Hua et al. 2023): every item gets a random code tuple.

``num_levels`` codes drawn uniformly from ``codebook_size`` values with the config seed. By default the
tuples are drawn without repetition (distinct items never share a code, no extra level); with
``allow_collisions=True`` they are drawn independently and the base class resolves collisions by
appending the TIGER disambiguation level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.tokenization.base import ItemTokenizer, register_tokenizer
from genrec.tokenization.config import ItemTokenizerConfig, check_bool, check_int

__all__ = ["RandomTokenizerConfig", "RandomTokenizer"]


@dataclass
class RandomTokenizerConfig(ItemTokenizerConfig):
    """Config of random indexing.

    Args:
        codebook_size (int, default 256): values per level, >= 2.
        num_levels (int, default 3): code length, >= 1.
        allow_collisions (bool, default False): draw codes independently (collisions are then fixed by
            an appended disambiguation level) instead of drawing distinct tuples.
    """

    codebook_size: int = 256
    num_levels: int = 3
    allow_collisions: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_int("num_levels", self.num_levels, minimum=1)
        check_bool("allow_collisions", self.allow_collisions)


@register_tokenizer("random")
class RandomTokenizer(ItemTokenizer):
    """Uniformly random code tuples (distinct by default)."""

    config_class = RandomTokenizerConfig

    def _fit_codes(self, catalog, *, sequences, embeddings):
        config = self.config
        num_items = len(catalog.item_ids)
        size, levels = config.codebook_size, config.num_levels
        rng = np.random.default_rng(config.seed)
        if config.allow_collisions:
            return rng.integers(0, size, size=(num_items, levels), dtype=np.int64), [size] * levels
        space = size**levels  # python int: no overflow
        if space < num_items:
            raise ValueError(
                f"`codebook_size` ({size}) ** `num_levels` ({levels}) = {space} distinct codes cannot hold "
                f"{num_items} items; raise either, or set allow_collisions=True"
            )
        if space <= 50_000_000:
            numbers = rng.choice(space, size=num_items, replace=False).astype(np.int64)
            powers = size ** np.arange(levels - 1, -1, -1, dtype=np.int64)
            codes = (numbers[:, None] // powers[None, :]) % size
        else:  # huge space: draw, then redraw the later copies of any repeated tuple
            codes = rng.integers(0, size, size=(num_items, levels), dtype=np.int64)
            while True:
                _, first = np.unique(codes, axis=0, return_index=True)
                repeated = np.setdiff1d(np.arange(num_items), first)
                if len(repeated) == 0:
                    break
                codes[repeated] = rng.integers(0, size, size=(len(repeated), levels), dtype=np.int64)
        return codes, [size] * levels
