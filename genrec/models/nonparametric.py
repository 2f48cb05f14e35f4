"""Shared code of the non-parametric baselines (popularity, last-item text-kNN).

These models are *fitted* from the training sequences or the item texts, never trained by gradient steps:
their state lives in persistent buffers (saved in ``model.safetensors``) and ``requires_training = False``
tells :func:`genrec.training.pipeline.run_training` to skip the ``Trainer``. They expose the same ranking
interface as SASRec: ``score(input_ids) -> (batch, num_items)``, ``item_ids`` / ``item_index`` and
``recommend`` of :class:`genrec.models.recommender.Recommender`; ``item_ids.json`` is saved beside the
weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from transformers.utils import logging

from genrec.models.histories import CatalogIdsMixin, history_rows, left_padded_rows
from genrec.models.recommender import Recommender
from genrec.utils.hub import hub_lookup, optional_file

__all__ = ["NonParametricRecommenderMixin", "ITEM_IDS_FILE", "check_positive_int"]

logger = logging.get_logger(__name__)

ITEM_IDS_FILE = "item_ids.json"


def check_positive_int(config, *names: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming the first field of ``config`` that is not an integer >= ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}")


class NonParametricRecommenderMixin(Recommender, CatalogIdsMixin):
    """Catalog binding, ``recommend`` and ``item_ids.json`` persistence for models scored by ``score``.

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
                f"this {type(self).__name__} has no `item_ids`; build it with from_sequences()/from_catalog() or "
                "load a checkpoint saved with them"
            )
        rows = history_rows(histories, self._item_index, max_len=self.config.max_position_embeddings)
        return left_padded_rows(rows).to(self.device)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained`` (config + buffers as safetensors) plus ``item_ids.json`` and the model
        card ``README.md``."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        if self.item_ids is not None:
            from genrec.utils.io import atomic_write_json

            atomic_write_json(Path(save_directory) / ITEM_IDS_FILE, {"item_ids": self.item_ids}, indent=0)
        from genrec.models.model_card import save_model_card

        save_model_card(self, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also restores ``item_ids.json`` when present."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        path = optional_file(pretrained_model_name_or_path, ITEM_IDS_FILE, **hub_lookup(kwargs))
        if path is not None:
            with open(path, encoding="utf-8") as handle:
                model.set_item_ids(json.load(handle)["item_ids"])
        else:
            logger.warning(f"{pretrained_model_name_or_path}: no {ITEM_IDS_FILE}; recommend() needs set_item_ids()")
        return model
