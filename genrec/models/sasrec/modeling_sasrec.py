"""SASRec: causal self-attention over a user's item history (Kang & McAuley, ICDM 2018).

The model reads a left-padded history of item rows (row 0 = padding, row ``i + 1`` = catalog item
``item_ids[i]``) and, at every position ``t``, predicts the item at ``t + 1``. Scores are dot products
between the hidden state and the (shared) input item embeddings, as in the paper.

Design choices (documented because reruns of SASRec differ on them):

* **Pre-LN blocks** with a final LayerNorm: ``h = h + Drop(Attn(LN(h)))``, ``h = h + Drop(FFN(LN(h)))``.
  The reference code normalises only the attention query; pre-LN trains stably with either loss.
* **Positions counted from the right.** Histories are left-padded and the last item always sits at
  position ``max_position_embeddings - 1`` whatever the batch's padded length, exactly as when every
  sequence is padded to the full length in the reference code.
* **Losses.** ``"ce"``: softmax cross-entropy over the whole catalog at every labelled position (the
  strong variant). ``"bce"``: the paper's binary cross-entropy with one uniformly sampled negative per
  position (never equal to the positive).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput, logging

from genrec.models.histories import (
    ItemEmbeddingCatalogMixin,
    catalog_fingerprint,
    check_catalog_fingerprint,
    history_rows,
    left_padded_rows,
)
from genrec.models.recommender import Recommender
from genrec.models.sasrec.configuration_sasrec import SASRecConfig
from genrec.utils.hub import hub_lookup, optional_file

__all__ = ["SASRecModel", "SASRecOutput", "SASRecPreTrainedModel", "ITEM_IDS_FILE", "history_mask"]

logger = logging.get_logger(__name__)

ITEM_IDS_FILE = "item_ids.json"


def history_mask(input_ids: torch.LongTensor, num_items: int) -> torch.Tensor:
    """Which catalog columns each history already holds.

    Args:
        input_ids: ``(batch, seq_len)`` item rows, 0 = padding.
        num_items: catalog size.

    Returns:
        bool ``(batch, num_items)``; ``[b, j]`` is True when row ``j + 1`` occurs in ``input_ids[b]``.
    """
    mask = torch.zeros(input_ids.shape[0], num_items + 1, dtype=torch.bool, device=input_ids.device)
    mask.scatter_(1, input_ids, True)
    return mask[:, 1:]  # drop the padding column


@dataclass
class SASRecOutput(ModelOutput):
    """Output of :class:`SASRecModel`.

    Args:
        loss: scalar training loss, present when ``labels`` were given.
        logits: ``(batch, num_items)`` next-item scores after the last position, present when no
            ``labels`` were given (catalog row ``j`` = ``item_ids[j]``).
        last_hidden_state: ``(batch, seq_len, hidden_size)`` final normalised hidden states.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


class SASRecAttention(nn.Module):
    """Multi-head causal self-attention (``scaled_dot_product_attention`` with a boolean mask)."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.attention_dropout = config.attention_dropout
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Args: hidden_states ``(batch, seq, hidden)``; attention_mask bool ``(batch, 1, seq, seq)``, True = attend."""
        batch, seq_len, hidden = hidden_states.shape

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, seq_len, self.num_heads, self.head_dim).transpose(1, 2)  # (batch, heads, seq, dim)

        query = split_heads(self.q_proj(hidden_states))
        key = split_heads(self.k_proj(hidden_states))
        value = split_heads(self.v_proj(hidden_states))
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # (batch, heads, seq, dim)
        return self.o_proj(attended.transpose(1, 2).reshape(batch, seq_len, hidden))


class SASRecBlock(nn.Module):
    """Pre-LN transformer block: attention and a point-wise feed-forward network, each residual."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SASRecAttention(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_act = ACT2FN[config.hidden_act]
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.attention(self.attention_norm(hidden_states), attention_mask))
        ffn = self.ffn_out(self.dropout(self.ffn_act(self.ffn_in(self.ffn_norm(hidden_states)))))
        return hidden_states + self.dropout(ffn)


class SASRecPreTrainedModel(PreTrainedModel):
    """Weight init and config class for SASRec models."""

    config_class = SASRecConfig
    config: SASRecConfig
    base_model_prefix = "sasrec"
    main_input_name = "input_ids"
    _no_split_modules = ["SASRecBlock"]


class SASRecModel(Recommender, ItemEmbeddingCatalogMixin, SASRecPreTrainedModel):
    """SASRec next-item model with full-catalog scoring and string-id recommendation.

    Args:
        config (SASRecConfig): architecture; ``config.num_items`` must be > 0.
        item_ids (list[str] | None): catalog ids, ``item_ids[j]`` = score column ``j``. Needed by
            :meth:`recommend`; saved by :meth:`save_pretrained` as ``item_ids.json``.

    Example:
        >>> model = SASRecModel(SASRecConfig(num_items=3), item_ids=["a", "b", "c"])   # doctest: +SKIP
        >>> model.recommend([["a", "b"]], k=2)                                           # doctest: +SKIP
        [[('c', 0.13), ('a', -0.02)]]
    """

    def __init__(self, config: SASRecConfig, item_ids: Sequence[str] | None = None):
        super().__init__(config)
        if config.num_items < 1:
            raise ValueError(f"`num_items` ({config.num_items}) must be >= 1 to build a SASRecModel")
        self.item_embeddings = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        if item_ids is not None:
            self.set_item_ids(item_ids)
        self.post_init()

    @classmethod
    def from_dataset(cls, catalog, train_sequences=None, *, seed: int = 0, **config_kwargs) -> SASRecModel:
        """genrec's one builder (:mod:`genrec.models.recommender`): an untrained model over ``catalog.item_ids``.

        Args:
            catalog: ``genrec.data.ItemCatalog`` (or anything with ``item_ids``). train_sequences, seed: unused
                (the common signature). **config_kwargs: :class:`SASRecConfig` fields (``num_items`` is set here).
        """
        config = SASRecConfig(**{**config_kwargs, "num_items": len(catalog.item_ids)})
        return cls(config, item_ids=catalog.item_ids)

    # ----- forward ---------------------------------------------------------------------------------
    def encode(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state at every position.

        Args:
            input_ids: ``(batch, seq_len)`` item rows, left-padded with 0; ``seq_len <= max_position_embeddings``.
            attention_mask: ``(batch, seq_len)`` 1 for items, 0 for padding; default ``input_ids != 0``.

        Returns:
            ``(batch, seq_len, hidden_size)`` normalised hidden states.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        batch, seq_len = input_ids.shape
        max_len = self.config.max_position_embeddings
        if seq_len > max_len:
            raise ValueError(
                f"`input_ids` length ({seq_len}) exceeds `max_position_embeddings` ({max_len}); "
                "keep only the most recent items"
            )
        if attention_mask is None:
            attention_mask = input_ids != self.config.pad_token_id
        attention_mask = attention_mask.bool()
        # Right-aligned positions: the last slot is always position max_len - 1 (see module docstring).
        positions = torch.arange(max_len - seq_len, max_len, device=input_ids.device)  # (seq,)
        hidden_states = self.item_embeddings(input_ids)  # (batch, seq, hidden)
        if self.config.scale_embeddings:
            hidden_states = hidden_states * math.sqrt(self.config.hidden_size)
        hidden_states = self.embedding_dropout(hidden_states + self.position_embeddings(positions))
        # Causal mask over real keys; every query also sees itself so padded query rows are never
        # fully masked (SDPA would return NaN). Real positions never look at padding.
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=input_ids.device).tril()  # (seq, seq)
        diagonal = torch.eye(seq_len, dtype=torch.bool, device=input_ids.device)
        mask = (causal & attention_mask[:, None, :]) | diagonal  # (batch, seq, seq)
        mask = mask[:, None]  # (batch, 1, seq, seq)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
        return self.final_norm(hidden_states)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
    ) -> SASRecOutput | tuple:
        """Training loss (with ``labels``) or next-item scores (without).

        Args:
            input_ids: ``(batch, seq_len)`` left-padded item rows (0 = padding).
            attention_mask: ``(batch, seq_len)`` optional, 1 = item.
            labels: ``(batch, seq_len)`` the item row that follows each position, ``-100`` where no
                loss is taken (padding). Rows are ``1..num_items``.

        No ``**kwargs``: the loss is already a mean over labelled positions, so the Trainer must not
        rescale it by ``num_items_in_batch``.

        Returns:
            :class:`SASRecOutput` with ``loss`` (labels given) or ``logits`` ``(batch, num_items)`` for the
            item after the last position (no labels).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_states = self.encode(input_ids, attention_mask)  # (batch, seq, hidden)
        loss = logits = None
        if labels is not None:
            loss = self._loss(hidden_states, labels)
        else:
            logits = self._catalog_scores(hidden_states[:, -1])  # (batch, num_items)
        if not return_dict:
            return tuple(value for value in (loss, logits, hidden_states) if value is not None)
        return SASRecOutput(loss=loss, logits=logits, last_hidden_state=hidden_states)

    def _catalog_scores(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``(..., hidden)`` -> ``(..., num_items)`` dot products with item rows 1..num_items."""
        return hidden_states @ self.item_embeddings.weight[1:].T

    def _loss(self, hidden_states: torch.Tensor, labels: torch.LongTensor) -> torch.Tensor:
        if labels.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"`labels` shape {tuple(labels.shape)} must equal `input_ids` shape {tuple(hidden_states.shape[:2])}"
            )
        selected = labels != -100  # (batch, seq)
        targets = labels[selected]  # (n,)
        if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) > self.config.num_items):
            raise ValueError(
                f"`labels` must be item rows in [1, {self.config.num_items}] or -100, got values in "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        hidden = hidden_states[selected]  # (n, hidden): only labelled positions, never (batch, seq, num_items)
        if targets.numel() == 0:
            return hidden_states.sum() * 0.0
        if self.config.loss_type == "ce":
            logits = self._catalog_scores(hidden)  # (n, num_items); column j = row j + 1
            return F.cross_entropy(logits.float(), targets - 1)
        # "bce": one negative per position, uniform over the other num_items - 1 items.
        num_items = self.config.num_items
        if num_items < 2:
            raise ValueError("`loss_type` 'bce' needs at least 2 items to sample negatives")
        offset = torch.randint(1, num_items, targets.shape, device=targets.device)
        negatives = (targets - 1 + offset) % num_items + 1  # (n,), never equal to targets
        positive_logits = (hidden * self.item_embeddings(targets)).sum(-1)
        negative_logits = (hidden * self.item_embeddings(negatives)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            positive_logits.float(), torch.ones_like(positive_logits, dtype=torch.float)
        ) + F.binary_cross_entropy_with_logits(
            negative_logits.float(), torch.zeros_like(negative_logits, dtype=torch.float)
        )

    # ----- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-ranking scores for the next item.

        Args:
            input_ids: ``(batch, seq_len)`` left-padded item rows.
            attention_mask: ``(batch, seq_len)`` optional.

        Returns:
            ``(batch, num_items)`` float scores; column ``j`` is ``item_ids[j]``.
        """
        hidden_states = self.encode(input_ids, attention_mask)
        return self._catalog_scores(hidden_states[:, -1]).float()

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> torch.LongTensor:
        """Turn string histories (oldest first) into a left-padded ``(batch, seq_len)`` tensor of item rows.

        Raises:
            ValueError: no catalog bound, an empty history, or an id outside the catalog.
        """
        if self.item_ids is None:
            raise ValueError(
                "this SASRecModel has no `item_ids`; pass item_ids= to the constructor, call set_item_ids(), "
                "or load a checkpoint saved with them"
            )
        rows = history_rows(histories, self._item_index, max_len=self.config.max_position_embeddings)
        input_ids = left_padded_rows(rows)
        return input_ids.to(self.device)

    # ----- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained`` plus ``item_ids.json`` (the catalog, column order) and the model card
        ``README.md``; config.json gets the catalog's fingerprint, which ``from_pretrained`` checks."""
        if self.item_ids is not None:
            self.config.catalog_fingerprint = catalog_fingerprint(self.item_ids)
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
        """``PreTrainedModel.from_pretrained`` that also restores ``item_ids.json`` when present.

        Raises:
            ValueError: ``item_ids.json`` is not the catalog the weights were saved with (config.json's fingerprint).
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        path = optional_file(pretrained_model_name_or_path, ITEM_IDS_FILE, **hub_lookup(kwargs))
        if path is not None:
            from genrec.models.histories import read_item_ids_file

            model.set_item_ids(read_item_ids_file(path))
            check_catalog_fingerprint(model.config, catalog_fingerprint(model.item_ids), pretrained_model_name_or_path,
                                      ITEM_IDS_FILE)
        else:
            logger.warning(f"{pretrained_model_name_or_path}: no {ITEM_IDS_FILE}; recommend() needs set_item_ids()")
        return model
