"""Popularity baseline configuration."""

from __future__ import annotations

from transformers import PreTrainedConfig

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.utils.checks import check_int

__all__ = ["PopularityConfig"]


class PopularityConfig(AutoRegisteredConfigMixin, PreTrainedConfig):
    r"""Configuration of :class:`genrec.models.popularity.PopularityModel`.

    The model has no architecture to speak of: its only state is one training count per catalog item.

    Args:
        num_items (int, defaults to 0): catalog size; 0 only for a config not yet bound to a catalog.
        max_position_embeddings (int, defaults to 50): most recent history items read, which only matters for
            ``exclude_history`` (the score ignores the history).

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-popularity"

    num_items: int = 0
    max_position_embeddings: int = 50

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("num_items", self.num_items, 0)
        check_int("max_position_embeddings", self.max_position_embeddings, 1)
