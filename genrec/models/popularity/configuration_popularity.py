"""Popularity baseline configuration."""

from __future__ import annotations

from transformers import PreTrainedConfig

from genrec.models.nonparametric import check_positive_int

__all__ = ["PopularityConfig"]


class PopularityConfig(PreTrainedConfig):
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
        check_positive_int(self, "num_items", minimum=0)
        check_positive_int(self, "max_position_embeddings")
