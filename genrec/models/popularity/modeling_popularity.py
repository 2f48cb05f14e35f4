"""Popularity baseline: score(item) = how often the item occurs in the training sequences.

A ``PreTrainedModel`` with no parameters: the counts are a persistent buffer (``item_counts`` in
``model.safetensors``), fitted by :meth:`PopularityModel.from_sequences` from the *training* part of each user's
sequence only (``leave_one_out(...).train_sequences``: the validation and test targets are never counted, so the
model cannot leak them). Every user gets the same ranking; ties are broken by the evaluator's pessimistic rule.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from transformers import PreTrainedModel

from genrec.models.nonparametric import NonParametricRecommenderMixin
from genrec.models.popularity.configuration_popularity import PopularityConfig

__all__ = ["PopularityModel", "PopularityPreTrainedModel"]


class PopularityPreTrainedModel(PreTrainedModel):
    """Config class and loading settings of the popularity baseline."""

    config_class = PopularityConfig
    config: PopularityConfig
    base_model_prefix = "popularity"
    main_input_name = "input_ids"

    def _init_weights(self, module) -> None:  # no parameters; the counts come from the checkpoint or a fit
        pass


class PopularityModel(NonParametricRecommenderMixin, PopularityPreTrainedModel):
    """Most-popular-items recommender with SASRec's ranking interface.

    Args:
        config (PopularityConfig): ``num_items`` must be > 0.
        item_ids (list[str] | None): catalog ids, ``item_ids[j]`` = score column ``j``.
        item_counts (sequence of float | None): ``(num_items,)`` training counts (default all zero).

    :meth:`set_catalog` re-binds; its one feature is ``item_counts`` (default: the items' bound counts).

    Example:
        >>> model = PopularityModel.from_sequences([["a", "b"], ["b", "c"]], ["a", "b", "c"])
        >>> model.recommend([["a"]], k=2, exclude_history=False)
        [[('b', 2.0), ('a', 1.0)]]
    """

    catalog_features: ClassVar[dict[str, str]] = {"item_counts": "(num_items,) non-negative training count of each item"}
    required_catalog_features: ClassVar[tuple[str, ...]] = ("item_counts",)
    catalog_row_tensors: ClassVar[dict[str, str]] = {"item_counts": "item_counts"}

    def __init__(self, config: PopularityConfig, item_ids: Sequence[str] | None = None, item_counts=None):
        super().__init__(config)
        if config.num_items < 1:
            raise ValueError(f"`num_items` ({config.num_items}) must be >= 1 to build a PopularityModel")
        self.register_buffer("item_counts", torch.zeros(config.num_items, dtype=torch.float32))  # (num_items,)
        self.item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        if item_ids is not None:
            self._bind_item_ids(item_ids)
        if item_counts is not None:
            counts = torch.as_tensor(item_counts, dtype=torch.float32)
            if counts.shape != (config.num_items,):
                raise ValueError(f"`item_counts` must be {config.num_items} non-negative values, got shape "
                                 f"{tuple(counts.shape)}")
            self.item_counts.copy_(self._check_catalog_rows("item_counts", counts))
        self.post_init()

    def _check_catalog_rows(self, feature: str, values: torch.Tensor) -> torch.Tensor:
        if bool((values < 0).any()) or not bool(torch.isfinite(values).all()):
            raise ValueError(f"`{feature}` must be finite non-negative counts")
        return values

    @classmethod
    def from_dataset(cls, catalog, train_sequences, *, seed: int = 0, **config_kwargs) -> "PopularityModel":
        """genrec's one builder (:mod:`genrec.models.recommender`): count the TRAINING sequences over
        ``catalog.item_ids`` (see :meth:`from_sequences`; ``seed`` is unused)."""
        return cls.from_sequences(train_sequences, catalog.item_ids, **config_kwargs)

    @classmethod
    def from_sequences(cls, train_sequences, item_ids: Sequence[str], **config_kwargs) -> "PopularityModel":
        """Count every item occurrence in the training sequences.

        Args:
            train_sequences: ``{user: [item, ...]}`` or a list of item-id lists -- the *training* parts only.
            item_ids: the catalog (score column order).
            **config_kwargs: other :class:`PopularityConfig` fields.

        Raises:
            ValueError: a sequence holds an id outside the catalog.
        """
        sequences = train_sequences.values() if hasattr(train_sequences, "values") else train_sequences
        index = {str(item): row for row, item in enumerate(item_ids)}
        counts = torch.zeros(len(index), dtype=torch.float32)
        for sequence in sequences:
            try:
                rows = [index[str(item)] for item in sequence]
            except KeyError as error:
                raise ValueError(f"training sequence item {error.args[0]!r} is not in the catalog") from None
            counts += torch.bincount(torch.tensor(rows, dtype=torch.long), minlength=len(index)).float()
        config = PopularityConfig(**{**config_kwargs, "num_items": len(index)})
        return cls(config, item_ids=item_ids, item_counts=counts)

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`score`."""
        return self.score(input_ids, attention_mask)

    @torch.no_grad()
    def score(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-ranking scores: the training count of every item, the same for every history.

        Args:
            input_ids: ``(batch, seq_len)`` left-padded catalog rows + 1 (only the batch size is used).

        Returns:
            ``(batch, num_items)`` float; column ``j`` is ``item_ids[j]``.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        return self.item_counts[None, :].expand(input_ids.shape[0], -1).clone()
