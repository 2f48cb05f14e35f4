"""Shared code of the non-parametric baselines (popularity, last-item text-kNN).

These models are *fitted* from the training sequences or the item texts, never trained by gradient steps:
their state lives in persistent buffers (saved in ``model.safetensors``) and ``requires_training = False``
tells :func:`genrec.training.pipeline.run_training` to skip the ``Trainer``. They expose the same ranking
interface as SASRec: ``score(input_ids) -> (batch, num_items)``, ``item_ids`` / ``item_index`` and
``recommend`` of :class:`genrec.models.recommender.Recommender`; ``item_ids.json`` is saved beside the
weights (:class:`genrec.models.catalog.CatalogIdsMixin`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from genrec.models.catalog import ITEM_IDS_FILE, CatalogIdsMixin
from genrec.models.histories import history_rows, left_padded_rows
from genrec.models.recommender import Recommender

__all__ = ["NonParametricRecommenderMixin", "ITEM_IDS_FILE", "check_positive_int"]


def check_positive_int(config, *names: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming the first field of ``config`` that is not an integer >= ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}")


class NonParametricRecommenderMixin(Recommender, CatalogIdsMixin):
    """Catalog binding (:meth:`set_catalog`), ``recommend`` and ``item_ids.json`` persistence for models scored by
    ``score``.

    The host class is a ``PreTrainedModel`` whose config has ``num_items`` and ``max_position_embeddings``
    and which defines ``score(input_ids, attention_mask=None) -> (batch, num_items)``.
    """

    #: :func:`genrec.training.pipeline.run_training` skips the Trainer for models that set this to False.
    requires_training = False

    @property
    def device(self) -> torch.device:
        """Device of the model's buffers (these models have no parameters, so ``PreTrainedModel.device`` fails)."""
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model's floating-point buffers (``save_pretrained`` reads it)."""
        for tensor in self.buffers():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> torch.LongTensor:
        """String histories (oldest first) -> left-padded ``(batch, seq_len)`` catalog rows + 1 (0 = padding).

        Raises:
            ValueError: no catalog bound, a string instead of a list, an empty history or an unknown id.
        """
        if self.item_ids is None:
            raise ValueError(
                f"this {type(self).__name__} has no `item_ids`; build it with from_dataset(), bind them with "
                "set_catalog() or load a checkpoint saved with them"
            )
        rows = history_rows(histories, self._item_index, max_len=self.config.max_position_embeddings)
        return left_padded_rows(rows).to(self.device)
