"""Shared machinery of genrec's T5-based generative recommenders (P5, OneRec).

Both models are ``T5ForConditionalGeneration`` subclasses (attention, relative positions and the KV cache are
transformers' own), with three additions:

* **item-position embeddings** (P5's "whole-word embeddings"): every token of the ``n``-th item of the encoder
  input gets embedding ``n`` (1-based; text tokens get 0), added to its token embedding. The index is computed
  from the token ids (an item starts at a level-0 code token), so any caller of ``get_encoder()`` -- HF
  ``generate()``, :func:`genrec.decoding.beam_search` -- gets it;
* **sparse MoE feed-forward** (:class:`genrec.models.layers.SparseMoeBlock`) in place of T5's dense FFN in the
  layers the config names; the weighted router losses are added to the LM loss and per-expert load is returned
  (``expert_load``) and logged by :class:`genrec.training.callbacks.MoeLoggingCallback`;
* an **item tokenizer + catalog** bound to the model: ``save_pretrained`` writes them beside the weights,
  ``from_pretrained`` restores them, ``generate()`` only emits catalog items and :meth:`recommend` returns
  ``(item_id, score)`` pairs from genrec's constrained beam search.

Subclasses implement :meth:`GenerativeRecommenderMixin.encode_history` (history -> encoder tokens) and
:meth:`GenerativeRecommenderMixin.training_example` (history + next items -> encoder tokens + labels).

**Item-level inputs** (``config.input_granularity = "item"``): the encoder reads ONE position per history item
instead of one per code token. In ``input_ids`` such a position is the id ``vocab_size + catalog row`` (text tokens
keep their ids), and :meth:`GenerativeT5Model.embed_item_inputs` turns it into ``RMSNorm(mean of the item's code
embeddings in the shared table) + RMSNorm(Linear(item vector))``; the decoder still generates the item's code tokens.

**Item head** (``config.loss_type = "items"``, item layout only; RPG / RecGPT's item loss): the decoder state that
emits the next item's first code also scores EVERY catalog item (mean over code levels of a cosine between a per-level
query and the code's ``shared`` embedding, plus a text cosine with item vectors, over a temperature). Training adds a
softmax over the catalog of those logits to the token loss; ``recommend`` / ``score`` rank the catalog exactly by it
(one decoder step, no beam search); ``generate()`` keeps decoding code tokens with the LM head the token loss trains.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    LogitsProcessorList,
    T5ForConditionalGeneration,
)
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.t5.modeling_t5 import T5LayerNorm
from transformers.utils import logging

from genrec.models.catalog import ITEM_IDS_FILE, save_item_ids
from genrec.models.generative.configuration_generative import GenerativeT5Config
from genrec.models.histories import catalog_fingerprint, check_catalog_fingerprint, history_rows, read_item_ids_file
from genrec.models.layers import SparseMoeBlock
from genrec.models.recommender import DEFAULT_BATCH_SIZE, DEFAULT_EXCLUDE_HISTORY, DEFAULT_K, Recommender
from genrec.utils.checks import check_int

logger = logging.get_logger(__name__)

__all__ = [
    "GenerativeSeq2SeqOutput",
    "GenerativeT5Model",
    "T5SparseMoeLayerFF",
    "build_generative_model",
    "build_generative_training_data",
    "dataset_item_input_vectors",
]

ITEM_TOKENIZER_DIR = "item_tokenizer"
CATALOG_FILE = "catalog.safetensors"
# Beam rows (users x beams) one beam-search call holds at most: ``recommend_rows`` splits the users to stay under
# it, so memory is bounded whatever ``k`` is (one call for batch 512 x 20 beams, the evaluation default).
MAX_BEAM_ROWS = 16_384


class T5SparseMoeLayerFF(nn.Module):
    """T5's feed-forward sublayer (pre-norm, dropout, residual) around a genrec :class:`SparseMoeBlock`.

    T5 blocks call ``layer[-1](hidden_states)`` with no mask, so the model sets :attr:`routing_mask`
    ``(batch, seq)`` for the duration of a forward (padding is then not routed and not counted in the router
    losses) and reads the block's :class:`~genrec.models.layers.MoeBlockOutput` back from :attr:`last_output`.
    """

    def __init__(self, config: GenerativeT5Config):
        super().__init__()
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.moe = SparseMoeBlock(
            hidden_size=config.d_model,
            intermediate_size=config.moe_intermediate_size or config.d_ff,
            num_experts=config.num_experts,
            num_experts_per_tok=config.num_experts_per_tok,
            num_shared_experts=config.num_shared_experts,
            hidden_act=config.dense_act_fn,
            gated=config.is_gated_act,
            router_aux_loss_coef=config.router_aux_loss_coef,
            router_z_loss_coef=config.router_z_loss_coef,
        )
        self.routing_mask: torch.Tensor | None = None
        self.last_output = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Args: hidden_states (batch, seq, d_model). Returns: (batch, seq, d_model) with the residual added."""
        mask = self.routing_mask
        if mask is not None and tuple(mask.shape) != tuple(hidden_states.shape[:2]):
            mask = None  # cached decoding step: one new position, no padding to skip
        output = self.moe(self.layer_norm(hidden_states), attention_mask=mask)
        self.last_output = output
        return hidden_states + self.dropout(output.hidden_states)


@dataclass
class GenerativeSeq2SeqOutput(Seq2SeqLMOutput):
    """``Seq2SeqLMOutput`` plus the MoE terms.

    Attributes:
        lm_loss: cross-entropy over the label tokens (``loss = lm_loss + item_loss + aux_loss``).
        item_loss: ``loss_type="items"``: cross-entropy of the target items among all catalog items (else None).
        aux_loss: sum of the MoE layers' weighted router losses (0 for dense models).
        expert_load: ``(num_moe_layers, num_experts)`` fraction of assignments per expert, or None.
    """

    lm_loss: torch.FloatTensor | None = None
    item_loss: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    expert_load: torch.FloatTensor | None = None


class _ItemAwareEncoder:
    """What ``get_encoder()`` returns: the T5 encoder fed token + item-position embeddings.

    Not an ``nn.Module`` attribute of the model (it would register the encoder's weights twice); it only holds a
    reference to the model. ``forward``'s signature is what HF ``generate()`` inspects.
    """

    main_input_name = "input_ids"

    def __init__(self, model: GenerativeT5Model):
        self.model = model

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        return self.model._encode(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                  **kwargs)

    __call__ = forward

    def __getattr__(self, name: str):  # device, dtype, config, embed_tokens, block, ... of the real encoder
        return getattr(self.model.encoder, name)


class GenerativeT5Model(Recommender, T5ForConditionalGeneration):
    """Base of :class:`~genrec.models.p5.P5ForConditionalGeneration` and
    :class:`~genrec.models.onerec.OneRecForConditionalGeneration` (see the module docstring).

    Attributes set by :meth:`set_catalog` (restored by ``from_pretrained``):
        item_ids: the catalog, row order (the item tokenizer's items, or a subset / reordering of them).
        item_tokenizer: the genrec ``ItemTokenizer`` that encodes the catalog's items.
        tokenizer: the ``PreTrainedTokenizerFast`` whose vocabulary the model reads/writes.
        item_token_table: LongTensor ``(num_items, code_length)`` of every catalog item's token ids (-1 padded).
        catalog: :class:`genrec.decoding.Catalog` over that table.
    """

    config_class = GenerativeT5Config
    _tied_weights_keys = {  # noqa: RUF012 (transformers reads this class attribute)
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
        "lm_head.weight": "shared.weight",
    }

    def __init__(self, config: GenerativeT5Config):
        super().__init__(config)
        self.item_position_embedding = nn.Embedding(config.max_item_positions, config.d_model)
        for stack_name, stack in (("encoder", self.encoder), ("decoder", self.decoder)):
            if config.sparse_layers(stack_name):
                for block in stack.block:
                    block.layer[-1] = T5SparseMoeLayerFF(config)
        # input_granularity "item": one encoder position per history item (see embed_item_inputs)
        item_level = config.input_granularity == "item"
        self.item_code_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon) if item_level else None
        vector_dim = config.item_vector_dim if item_level else 0
        self.item_vector_proj = nn.Linear(vector_dim, config.d_model, bias=False) if vector_dim else None
        self.item_vector_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon) if vector_dim else None
        # loss_type "items": the item head on the decoder's first state (a query per code level, + a text query)
        item_head = config.loss_type == "items" and config.item_code_length > 0
        d = config.d_model
        self.item_code_queries = nn.Parameter(torch.empty(config.item_code_length, d, d)) if item_head else None
        self.item_text_query = nn.Parameter(torch.empty(d, d)) if item_head and vector_dim else None
        self._code_rows: dict[tuple[int, ...], int] = {}  # an item's code token ids -> catalog row
        self.item_tokenizer = None
        self.tokenizer = None
        self.item_token_table: torch.Tensor | None = None
        self.item_vector_table: torch.Tensor | None = None  # (num_items, item_vector_dim) float, item-level only
        self._input_code_table: torch.Tensor | None = None  # item_token_table on the encoder's device
        self.catalog = None
        self.item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        self.post_init()
        # zero start: the sum equals the plain token embedding until training moves it (keeps a pretrained
        # backbone's behaviour at step 0)
        with torch.no_grad():
            self.item_position_embedding.weight.zero_()
            if self.item_vector_proj is not None:  # T5's _init_weights does not know a bare Linear
                self.item_vector_proj.weight.normal_(0.0, vector_dim**-0.5)
            for query in (self.item_code_queries, self.item_text_query):  # identity start: query = the state
                if query is not None:
                    query.copy_(torch.eye(d).expand_as(query))

    # ------------------------------------------------------------------ structure
    def _moe_layers(self) -> list[T5SparseMoeLayerFF]:
        return [module for module in self.modules() if isinstance(module, T5SparseMoeLayerFF)]

    def get_encoder(self, modality: str | None = None):
        return _ItemAwareEncoder(self)

    def item_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Item index of every token: 1 for the first item's tokens, 2 for the second, ...; 0 for text
        (``item_position_origin="last"``: 1 for the LAST item's tokens, 2 for the one before, ...).

        Args:
            input_ids: LongTensor (batch, seq).

        Returns:
            LongTensor (batch, seq), clamped to ``max_item_positions - 1``.
        """
        config = self.config
        if config.input_granularity == "item":  # one position per item: every item id starts (and is) an item
            is_item = is_start = input_ids >= config.vocab_size
        elif config.item_token_range is None or config.item_start_token_range is None:
            return torch.zeros_like(input_ids)
        else:
            lo, hi = config.item_token_range
            start_lo, start_hi = config.item_start_token_range
            is_item = (input_ids >= lo) & (input_ids < hi)
            is_start = (input_ids >= start_lo) & (input_ids < start_hi)
        order = is_start.long().cumsum(-1)  # (batch, seq): 1 from the first item on
        if config.item_position_origin == "last":
            order = order[:, -1:] - order + 1  # items in the row - order + 1: 1 for the last item
        positions = order * is_item.long()
        return positions.clamp(max=config.max_item_positions - 1)

    @property
    def item_input_offset(self) -> int | None:
        """``input_granularity="item"``: history item ``r`` is the encoder input id ``offset + r`` (``offset`` =
        ``vocab_size``, past every real token); ``None`` in the token layout."""
        return self.config.vocab_size if self.config.input_granularity == "item" else None

    def embed_item_inputs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Encoder input embeddings of the item layout (``input_granularity="item"``).

        A text / special token ``t < vocab_size`` gets ``shared(t)``; an item position ``vocab_size + r`` gets
        ``RMSNorm(mean_c shared(code_c(r))) + RMSNorm(W @ item_vector(r))`` (the second term only with item vectors).
        The code embeddings are the decoder's own (``shared``, tied to the LM head), so what the decoder learns to
        emit and what the encoder reads are one table, as RPG / RecGPT's item layout tie them.

        Args:
            input_ids: LongTensor (batch, seq).

        Returns:
            FloatTensor (batch, seq, d_model).

        Raises:
            ValueError: the model has no catalog, or has ``item_vector_dim`` > 0 but no item vectors set.
        """
        self._require_bound()
        vocab = self.config.vocab_size
        is_item = input_ids >= vocab  # (batch, seq)
        embeds = self.shared(input_ids.masked_fill(is_item, self.config.pad_token_id))  # (batch, seq, d)
        if not bool(is_item.any()):
            return embeds
        device = embeds.device
        rows = input_ids[is_item] - vocab  # (n,) catalog rows, row-major order of the positions
        codes = self._code_table_on(device)[rows]  # (n, L) token ids, -1 = padding (variable code lengths)
        valid = (codes >= 0).unsqueeze(-1)  # (n, L, 1)
        code_sum = (self.shared(codes.clamp(min=0)) * valid).sum(1)  # (n, d)
        items = self.item_code_norm(code_sum / valid.sum(1).clamp(min=1))
        if self.item_vector_proj is not None:
            if self.item_vector_table is None:
                raise ValueError(f"this model reads item vectors (`item_vector_dim` = {self.config.item_vector_dim}) "
                                 "but none are set; call set_catalog(item_ids, ..., item_vectors=...) or load a checkpoint saved "
                                 "with them")
            if self.item_vector_table.device != device:
                self.item_vector_table = self.item_vector_table.to(device)
            vectors = self.item_vector_table[rows].to(self.item_vector_proj.weight.dtype)  # (n, D)
            items = items + self.item_vector_norm(self.item_vector_proj(vectors))
        # fill the item positions in row-major order (the order of `rows`)
        return embeds.masked_scatter(is_item.unsqueeze(-1), items.to(embeds.dtype))

    def expand_item_inputs(self, input_ids: Sequence[int]) -> list[int]:
        """Encoder ids with every item position (``vocab_size + row``) replaced by that item's code tokens, for
        display (``tokenizer.decode``); the token layout comes back unchanged."""
        offset = self.item_input_offset
        if offset is None:
            return list(input_ids)
        expanded: list[int] = []
        for token in input_ids:
            expanded.extend(self.item_tokens(int(token) - offset) if token >= offset else [int(token)])
        return expanded

    def _encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs) -> BaseModelOutput:
        """The encoder with item-position embeddings added to the token embeddings."""
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("the encoder needs `input_ids` or `inputs_embeds`")
            if self.config.input_granularity == "item":
                inputs_embeds = self.embed_item_inputs(input_ids)  # (batch, seq, d_model): one position per item
            else:
                inputs_embeds = self.shared(input_ids)  # (batch, seq, d_model)
            if self.config.use_item_position_embeddings:
                inputs_embeds = inputs_embeds + self.item_position_embedding(self.item_positions(input_ids))
        for layer in self._moe_layers_of(self.encoder):
            layer.routing_mask = attention_mask
        kwargs.pop("input_ids", None)
        return self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)

    @staticmethod
    def _moe_layers_of(stack) -> list[T5SparseMoeLayerFF]:
        return [block.layer[-1] for block in stack.block if isinstance(block.layer[-1], T5SparseMoeLayerFF)]

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> GenerativeSeq2SeqOutput:
        """T5's forward with item-position embeddings and MoE losses.

        Args:
            input_ids: (batch, src_len) encoder tokens; attention_mask (batch, src_len).
            decoder_input_ids: (batch, tgt_len), default: ``labels`` shifted right.
            labels: (batch, tgt_len) item code tokens, -100 = ignored.

        Returns:
            :class:`GenerativeSeq2SeqOutput`: ``loss = lm_loss + aux_loss`` when ``labels`` are given, ``logits``
            (batch, tgt_len, vocab), ``expert_load`` (num_moe_layers, num_experts) when the model has MoE layers.
        """
        if "past_key_values" in kwargs:  # HF generate() still passes the cache under its pre-5.40 name
            kwargs["cache"] = kwargs.pop("past_key_values")
        if encoder_outputs is None:
            encoder_outputs = self._encode(input_ids=input_ids, attention_mask=attention_mask,
                                           inputs_embeds=kwargs.pop("inputs_embeds", None))
        decoder_mask = decoder_attention_mask
        if decoder_mask is None and labels is not None and decoder_input_ids is None:
            decoder_mask = (labels != -100).long()
        for layer in self._moe_layers_of(self.decoder):
            layer.routing_mask = decoder_mask
        label_items = None
        if self.item_code_queries is not None and labels is not None:
            label_items = self.label_items(labels)  # before the forward: bad labels fail fast
            kwargs["output_hidden_states"] = True  # the decoder's states at item starts feed the item head
        outputs = super().forward(
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            labels=labels,
            **kwargs,
        )
        moe_layers = self._moe_layers()
        aux_loss = outputs.logits.new_zeros(())
        expert_load = None
        if moe_layers:
            used = [layer.last_output for layer in moe_layers if layer.last_output is not None]
            if used:
                aux_loss = torch.stack([out.aux_loss for out in used]).sum()
                expert_load = torch.stack([out.expert_load for out in used])  # (layers, experts)
            for layer in moe_layers:
                layer.last_output, layer.routing_mask = None, None
        item_loss = None
        if label_items is not None:
            # the state that emits an item's first code scores the catalog: position 0 = the next item (what
            # recommend() ranks); item_loss_targets "session" adds the session's later items
            batch_index, positions, rows = (t.to(outputs.logits.device) for t in label_items)
            if self.config.item_loss_targets == "first":
                first = positions == 0
                batch_index, positions, rows = batch_index[first], positions[first], rows[first]
            states = outputs.decoder_hidden_states[-1][batch_index, positions]  # (n_items, d_model)
            item_logits = self.item_head_logits(states)  # (n_items, num_items)
            item_loss = F.cross_entropy(item_logits.float(), rows)
        loss = None if outputs.loss is None else outputs.loss + aux_loss
        if loss is not None and item_loss is not None:
            loss = loss + item_loss
        return GenerativeSeq2SeqOutput(
            loss=loss,
            lm_loss=outputs.loss,
            item_loss=item_loss,
            aux_loss=aux_loss,
            expert_load=expert_load,
            logits=outputs.logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
        )

    # ------------------------------------------------------------------ item head (loss_type "items")
    @property
    def has_item_head(self) -> bool:
        """Whether the model ranks by its item head (``loss_type="items"``) rather than by beam search."""
        return self.item_code_queries is not None

    def _code_table_on(self, device: torch.device) -> torch.Tensor:
        """``item_token_table`` on ``device`` (a cached copy; the catalog's own table stays on the CPU)."""
        if self._input_code_table is None or self._input_code_table.device != device:
            self._input_code_table = self.item_token_table.to(device)
        return self._input_code_table

    def item_head_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Every catalog item's logit for decoder first-position states (``loss_type="items"``).

        ``logit_i = [mean_l cos(q_l, shared(code_l(i))) + cos(q_text, RMSNorm(W v_i))] / τ`` with ``q_l = s @ Q_l``,
        ``q_text = s @ Q_text`` (the text term only with item vectors; ``W`` and the norm are the input side's).

        Args:
            states: ``(batch, d_model)``.

        Returns:
            ``(batch, num_items)`` float logits.
        """
        self._require_bound()
        table = self._code_table_on(states.device)  # (N, L), -1 = padding
        levels = table.shape[1]
        queries = F.normalize(torch.einsum("bh,lhg->blg", states, self.item_code_queries[:levels]), dim=-1)
        level_logits = queries @ F.normalize(self.shared.weight, dim=-1).T  # (batch, L, vocab)
        valid = table >= 0
        scores = states.new_zeros((states.shape[0], table.shape[0]))
        for level in range(levels):
            scores = scores + level_logits[:, level, table[:, level].clamp(min=0)] * valid[:, level]
        scores = scores / valid.sum(1).clamp(min=1)
        if self.item_text_query is not None:
            vectors = self.item_vector_table.to(device=states.device, dtype=self.item_vector_proj.weight.dtype)
            items = F.normalize(self.item_vector_norm(self.item_vector_proj(vectors)), dim=-1)  # (N, d)
            scores = scores + F.normalize(states @ self.item_text_query, dim=-1) @ items.T.to(states.dtype)
        return scores / self.config.item_logit_temperature

    def label_items(self, labels: torch.Tensor) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
        """Every item in ``labels`` (code tokens, items back to back; -100 / EOS end a row): where it starts and
        its catalog row. An item starts at a level-0 code token; the decoder state at that position emits it.

        Returns:
            ``(batch_index, position, row)``: three LongTensors ``(n_items,)``.

        Raises:
            ValueError: a label segment that is not a catalog item's codes.
        """
        self._require_bound()
        start_lo, start_hi = self.config.item_start_token_range
        batch_index, positions, rows = [], [], []
        for i, row in enumerate(labels.tolist()):
            segment: list[int] = []
            begin = 0
            for p, token in enumerate([*row, -100]):
                if token < 0 or token == self.config.eos_token_id or start_lo <= token < start_hi:
                    if segment:
                        found = self._code_rows.get(tuple(segment))
                        if found is None:
                            raise ValueError(f"labels row {i} holds the codes {segment} at position {begin}, which "
                                             "are not a catalog item's code tokens")
                        batch_index.append(i)
                        positions.append(begin)
                        rows.append(found)
                    segment, begin = [], p
                    if token < 0 or token == self.config.eos_token_id:
                        break
                segment.append(token)
        return (torch.tensor(batch_index, dtype=torch.long), torch.tensor(positions, dtype=torch.long),
                torch.tensor(rows, dtype=torch.long))

    @property
    def supports_text_prior(self) -> bool:
        """Whether :meth:`score_components` has a ``"text_prior"`` part (item head + item vectors)."""
        return self.has_item_head and self.item_vector_proj is not None

    def text_prior(self, last_rows: torch.Tensor) -> torch.Tensor:
        """Last-item prior ``cos(v_last, v_i) / τ`` for every catalog item, ``(B, num_items)`` float.

        ``v`` = the raw item vectors, ``last_rows`` ``(B,)`` the histories' last catalog rows (-1: empty history,
        no prior), τ = ``item_logit_temperature``. The last item's own entry is 0 (as text-kNN's).

        Raises:
            ValueError: a model without an item head or item vectors.
        """
        if not self.supports_text_prior or self.item_vector_table is None:
            raise ValueError('the text prior needs `loss_type: "items"` and item vectors')
        items = F.normalize(self.item_vector_table.float(), dim=-1)  # (N, D)
        last_rows = last_rows.to(items.device)
        cosine = items[last_rows.clamp(min=0)] @ items.T  # (B, N)
        cosine = cosine.scatter(1, last_rows.clamp(min=0)[:, None], 0.0) * (last_rows >= 0)[:, None]
        return cosine / self.config.item_logit_temperature

    @torch.no_grad()
    def score_components(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, *,
                         prior: bool = True) -> dict[str, torch.Tensor]:
        """The parts of :meth:`score` (item head only): ``"model"`` (the head's log-softmax) and, with ``prior``,
        ``"text_prior"``; ``score = model + text_prior_weight x text_prior``. One network pass serves a weight sweep
        (:func:`genrec.training.trainer.tune_text_prior`).

        Args:
            input_ids: LongTensor (batch, seq) of ``catalog row + 1``, 0 = padding (left-padded).
        """
        if not self.has_item_head:
            raise ValueError('score components need an item head (`loss_type: "items"`)')
        histories = [[int(r) - 1 for r in row.tolist() if r > 0] for row in input_ids]
        parts = {"model": self._head_scores(histories, prior=False).to(input_ids.device)}
        if prior:
            last = torch.tensor([history[-1] if history else -1 for history in histories], dtype=torch.long)
            parts["text_prior"] = self.text_prior(last).to(input_ids.device)
        return parts

    def _head_scores(self, histories: Sequence[Sequence[int]], *, prior: bool = True,
                     candidates: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
        """``(batch, num_items)`` ranking scores of the item head for histories of catalog rows (eval mode):
        log-softmax over the catalog, plus ``text_prior_weight x`` the text prior when that is > 0 and ``prior``."""
        was_training = self.training
        self.eval()
        try:
            scores = self.item_head_scores(*self.build_inputs(histories, candidates=candidates))
        finally:
            self.train(was_training)
        if prior and self.config.text_prior_weight:
            last = torch.tensor([history[-1] if len(history) else -1 for history in histories], dtype=torch.long)
            scores = scores + self.config.text_prior_weight * self.text_prior(last).to(scores.device)
        return scores

    @torch.no_grad()
    def item_head_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(batch, num_items)`` log-softmax of the item head over the catalog for an encoder batch."""
        start = torch.full((input_ids.shape[0], 1), self.config.decoder_start_token_id, dtype=torch.long,
                           device=input_ids.device)
        output = self(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start,
                      output_hidden_states=True, use_cache=False)
        return self.item_head_logits(output.decoder_hidden_states[-1][:, 0]).float().log_softmax(-1)

    # ------------------------------------------------------------------ item tokenizer / catalog
    catalog_features: ClassVar[dict[str, str]] = {
        "item_tokenizer": "the fitted genrec ItemTokenizer that encodes the items (default: the bound one)",
        "tokenizer": "the PreTrainedTokenizerFast holding every item code token (default: the bound one)",
        "item_token_table": "optional precomputed (num_items, L) token ids of the items, -1 padded "
                            "(default: from the item tokenizer)",
        "item_vectors": "item-level inputs with `item_vector_dim` > 0: float (num_items, item_vector_dim) per-item "
                        "vectors in the order of item_ids (default: the bound catalog's, matched by id)",
    }
    required_catalog_features: ClassVar[tuple[str, ...]] = ("item_tokenizer", "tokenizer")

    def _catalog_defaults(self, item_ids: list[str], given: dict[str, Any]) -> dict[str, Any]:
        # any item the bound item tokenizer encodes can be bound again (not only the bound catalog's)
        defaults = {"item_tokenizer": self.item_tokenizer, "tokenizer": self.tokenizer}
        if self.item_vector_table is not None and "item_vectors" not in given and \
                all(item in self._item_index for item in item_ids):
            rows = torch.tensor([self._item_index[item] for item in item_ids], dtype=torch.long)
            defaults["item_vectors"] = self.item_vector_table[rows.to(self.item_vector_table.device)].cpu()
        return {name: value for name, value in defaults.items() if value is not None}

    def _bind_catalog(self, item_ids: list[str], *, item_tokenizer, tokenizer,
                      item_token_table: torch.Tensor | None = None, item_vectors=None) -> None:
        """Attach the item tokenizer and the text tokenizer and build the decoding catalog of ``item_ids``.

        Raises:
            ValueError: an id the item tokenizer does not encode, a table of the wrong shape, item token ids
                beyond the vocabulary, or ``item_vectors`` for a model that reads none / of the wrong shape.
        """
        from genrec.decoding import Catalog

        if item_vectors is not None and self.item_vector_proj is None:
            raise ValueError('`item_vectors`: this model reads no item vectors (it needs `input_granularity: "item"` '
                             "and `item_vector_dim` > 0)")

        tokenizer_ids = list(item_tokenizer.item_ids)
        if item_token_table is None:
            table = item_tokenizer.item_token_ids(tokenizer)  # (tokenizer items, L)
            if item_ids != tokenizer_ids:
                rows = {item: row for row, item in enumerate(tokenizer_ids)}
                unknown = [item for item in item_ids if item not in rows]
                if unknown:
                    raise ValueError(f"the item tokenizer does not encode the item ids "
                                     f"{', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''}; "
                                     "pass an `item_tokenizer` fitted on them")
                table = table[torch.tensor([rows[item] for item in item_ids], dtype=torch.long)]
        else:
            table = item_token_table
        table = torch.as_tensor(table, dtype=torch.long)
        if table.dim() != 2 or table.shape[0] != len(item_ids):
            raise ValueError(f"`item_token_table` shape {tuple(table.shape)} must be ({len(item_ids)}, code length)")
        valid = table[table >= 0]
        if int(valid.max()) >= self.config.vocab_size:
            raise ValueError(
                f"item token id {int(valid.max())} >= `vocab_size` ({self.config.vocab_size}); build the model with "
                "the tokenizer's full vocabulary"
            )
        if self.config.loss_type == "items" and (self.item_code_queries is None
                                                 or table.shape[1] > self.item_code_queries.shape[0]):
            levels = 0 if self.item_code_queries is None else self.item_code_queries.shape[0]
            raise ValueError(f"the item head has queries for {levels} code levels (`item_code_length`); the "
                             f"catalog's items have up to {table.shape[1]} (from_item_tokenizer sets it)")
        self.config.num_items = len(item_ids)
        self.config.item_token_range = [int(valid.min()), int(valid.max()) + 1]
        self.config.item_start_token_range = [int(table[:, 0].min()), int(table[:, 0].max()) + 1]
        self.item_tokenizer = item_tokenizer
        self.tokenizer = tokenizer
        self.item_token_table = table
        self._input_code_table = None
        self.catalog = Catalog.from_codes(table)
        self.item_ids = item_ids
        self._item_index = {item_id: row for row, item_id in enumerate(item_ids)}
        self._code_rows = {tuple(t for t in codes if t >= 0): row for row, codes in enumerate(table.tolist())}
        self.item_vector_table = None  # rows of the previous catalog would be misaligned
        if item_vectors is not None:
            self.set_item_vectors(item_vectors)
        self._on_bind()

    def bind_item_tokenizer(self, item_tokenizer, tokenizer, item_token_table: torch.Tensor | None = None) -> None:
        """Deprecated alias (removed in genrec 0.3) of ``set_catalog(item_tokenizer.item_ids,
        item_tokenizer=..., tokenizer=..., item_token_table=...)``: bind the item tokenizer's whole catalog.

        Raises:
            ValueError: as :meth:`set_catalog`.
        """
        from genrec.models.catalog import deprecated_alias

        deprecated_alias(f"{type(self).__name__}.bind_item_tokenizer(item_tokenizer, tokenizer)",
                         "set_catalog(item_tokenizer.item_ids, item_tokenizer=..., tokenizer=...)")
        self.set_catalog(item_tokenizer.item_ids, item_tokenizer=item_tokenizer, tokenizer=tokenizer,
                         item_token_table=item_token_table)

    @property
    def item_index(self) -> dict[str, int]:
        """Catalog item id -> row (the order of ``item_ids``); empty before binding."""
        return dict(self._item_index)

    def _require_bound(self) -> None:
        if self.catalog is None:
            raise ValueError(
                f"{type(self).__name__} has no item tokenizer/catalog; call set_catalog(item_ids, item_tokenizer=..., "
                "tokenizer=...) or load a folder saved with save_pretrained"
            )

    def item_rows(self, item_ids: Sequence[str], *, where: str = "history") -> list[int]:
        """Catalog rows of item ids. Raises ``ValueError`` naming an unknown id."""
        self._require_bound()
        try:
            return [self._item_index[item_id] for item_id in item_ids]
        except KeyError as error:
            raise ValueError(f"{where} holds item id {error.args[0]!r}, which is not in the model's catalog") from None

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> torch.LongTensor:
        """String histories -> left-padded ``(batch, seq)`` catalog rows + 1 (the layout :meth:`score` reads)."""
        from genrec.models.histories import left_padded_rows

        self._require_bound()
        return left_padded_rows(history_rows(histories, self._item_index)).to(self.device)

    def item_tokens(self, row: int) -> list[int]:
        """Token ids of catalog row ``row`` (padding dropped)."""
        return [t for t in self.item_token_table[row].tolist() if t >= 0]

    @classmethod
    def _new_bound_model(cls, config: GenerativeT5Config, item_tokenizer, tokenizer, item_vector_table=None):
        """A new model of ``config`` over ``tokenizer``'s vocabulary, bound to the item tokenizer's whole catalog
        (with the item-level input vectors, when given)."""
        cls._size_item_vectors(config, item_vector_table)
        config.vocab_size = len(tokenizer)
        config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        config.decoder_start_token_id = tokenizer.pad_token_id
        config.num_items = item_tokenizer.num_items
        if config.loss_type == "items":  # the item head needs a query per code level
            config.item_code_length = int(item_tokenizer.item_token_ids(tokenizer).shape[1])
        model = cls(config)
        model.set_catalog(item_tokenizer.item_ids, item_tokenizer=item_tokenizer, tokenizer=tokenizer,
                          item_vectors=item_vector_table)
        return model

    @staticmethod
    def _size_item_vectors(config: GenerativeT5Config, item_vector_table) -> None:
        """Set ``config.item_vector_dim`` from the vectors a new model is built with (``from_item_tokenizer``).

        Raises:
            ValueError: vectors for a token-level config, or not a 2-d array.
        """
        if item_vector_table is None:
            return
        if config.input_granularity != "item":
            raise ValueError('`item_vector_table` needs `input_granularity: "item"` (the token layout reads code '
                             "tokens only)")
        shape = np.shape(item_vector_table)
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(f"item vectors have shape {shape}; expected (num_items, dim)")
        config.item_vector_dim = int(shape[1])

    def set_item_vectors(self, vectors) -> None:
        """Set the per-item vectors an item-level input adds (``input_granularity="item"``, ``item_vector_dim`` > 0).

        Args:
            vectors: float ``(num_items, item_vector_dim)`` in catalog order (e.g. the items' text embeddings).

        Raises:
            ValueError: the model reads no item vectors, or the shape is not ``(num_items, item_vector_dim)``.
        """
        if self.item_vector_proj is None:
            raise ValueError('this model reads no item vectors: it needs `input_granularity: "item"` and '
                             "`item_vector_dim` > 0")
        table = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        expected = (self.config.num_items, self.config.item_vector_dim)
        if tuple(table.shape) != expected:
            raise ValueError(f"item vectors have shape {tuple(table.shape)}; expected (num_items, item_vector_dim) = "
                             f"{expected}")
        self.item_vector_table = table.to(self.item_vector_proj.weight.device)

    # ------------------------------------------------------------------ inputs (subclass hooks)
    def example_encoder(self):
        """A small picklable object turning catalog rows into token ids (no model weights): it has
        ``encode(history_rows, candidates=None) -> list[int]`` and
        ``training_example(history_rows, target_rows, rng) -> {"input_ids", "labels"}``. Subclasses build it."""
        raise NotImplementedError

    def _on_bind(self) -> None:
        self._example_encoder = self.example_encoder()

    def encode_history(self, history_rows: Sequence[int], *, candidates: Sequence[int] | None = None) -> list[int]:
        """Encoder token ids for one history of catalog rows (oldest first; the most recent
        ``max_history_items`` are kept)."""
        return self._example_encoder.encode(history_rows, candidates=candidates)

    def build_training_data(self, train_sequences, *, seed: int = 0):
        """Training windows of this model and their collator (what genrec's training pipeline calls).

        Args:
            train_sequences: ``{user: [item ids]}`` or an iterable of chronological item-id lists (training part).
            seed: seeds template / negative sampling.

        Returns:
            ``(dataset, collator)``: :class:`genrec.data.datasets.GenerativeRecDataset`, ``Seq2SeqRecCollator``.
        """
        self._require_bound()
        sequences = train_sequences.values() if hasattr(train_sequences, "values") else train_sequences
        return build_generative_training_data(self, list(sequences), self._item_index, seed=seed)

    def build_inputs(self, histories: Sequence[Sequence[int]], *,
                     candidates: Sequence[Sequence[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded encoder batch for histories of catalog rows.

        Returns:
            ``(input_ids, attention_mask)``, both ``(batch, max_len)`` on the model's device.
        """
        self._require_bound()
        if len(histories) == 0:
            raise ValueError("`histories` is empty; pass at least one history")
        rows = [self.encode_history(h, candidates=None if candidates is None else candidates[i])
                for i, h in enumerate(histories)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, : len(r)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    # ------------------------------------------------------------------ recommendation
    @torch.no_grad()
    def recommend_rows(self, histories: Sequence[Sequence[int]], k: int, *, num_beams: int | None = None,
                       candidates: Sequence[Sequence[int]] | None = None,
                       banned_items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` catalog rows per history by constrained beam search.

        Args:
            histories: per user, catalog rows oldest first.
            k: items per user; columns past the catalog size are -1 (the search itself asks for at most
                ``num_items``).
            num_beams: default ``max(k, config.num_beams)``; more beams than catalog items are never used.
            candidates: optional per-user candidate rows; only those can be returned (direct recommendation).
            banned_items: optional bool ``(batch, num_items)`` of items never to return.

        Returns:
            ``(items, scores)``: LongTensor ``(batch, k)`` (-1 where fewer than k items exist) and float
            ``(batch, k)`` log-probabilities, best first.

        Raises:
            ValueError: ``k < 1`` or ``num_beams < k``.

        Memory: the beam width is capped at ``num_items`` and users are decoded in groups of at most
        ``MAX_BEAM_ROWS // num_beams``, so a large ``k`` costs time, not an allocation of ``batch x k`` beams.
        """
        from genrec.decoding import beam_search

        self._require_bound()
        num_items = self.config.num_items
        check_int("k", k, 1)
        num_beams = max(k, self.config.num_beams) if num_beams is None else num_beams
        check_int("num_beams", num_beams, k)
        num_beams = min(num_beams, num_items)  # a beam per item already finds every item
        found = min(k, num_items)
        if candidates is not None:
            allowed = torch.zeros((len(histories), num_items), dtype=torch.bool)
            for i, rows in enumerate(candidates):
                allowed[i, list(rows)] = True
            banned_items = ~allowed if banned_items is None else banned_items | ~allowed
        if self.has_item_head:
            return self._recommend_rows_by_head(histories, k, found, candidates, banned_items)
        group = max(1, MAX_BEAM_ROWS // num_beams)
        was_training = self.training
        self.eval()
        all_items, all_scores = [], []
        try:
            for start in range(0, max(1, len(histories)), group):
                end = start + group
                input_ids, attention_mask = self.build_inputs(
                    histories[start:end], candidates=None if candidates is None else candidates[start:end])
                banned = None if banned_items is None else banned_items[start:end].to(self.device)
                items, scores = beam_search(self, self.catalog, input_ids=input_ids, attention_mask=attention_mask,
                                            num_beams=num_beams, top_k=found, banned_items=banned,
                                            decoder_start_token_id=self.config.decoder_start_token_id)
                all_items.append(items.cpu())
                all_scores.append(scores.float().cpu())
        finally:
            self.train(was_training)
        items, scores = torch.cat(all_items), torch.cat(all_scores)
        if found < k:  # k beyond the catalog: the missing columns are "no item"
            items = torch.cat([items, items.new_full((items.shape[0], k - found), -1)], 1)
            scores = torch.cat([scores, scores.new_full((scores.shape[0], k - found), float("-inf"))], 1)
        return items, scores

    def _recommend_rows_by_head(self, histories, k, found, candidates, banned_items):
        """:meth:`recommend_rows` of an item-head model: exact top-``k`` of the head's log-softmax over the catalog."""
        all_items, all_scores = [], []
        group = 512
        with torch.no_grad():
            for start in range(0, max(1, len(histories)), group):
                end = start + group
                # candidates: P5's direct prompt reads them; they are already in banned_items' complement
                scores = self._head_scores(histories[start:end],
                                           candidates=None if candidates is None else candidates[start:end])
                if banned_items is not None:
                    scores = scores.masked_fill(banned_items[start:end].to(scores.device), float("-inf"))
                top_scores, top_items = scores.topk(found, dim=-1)
                top_items = top_items.masked_fill(torch.isinf(top_scores), -1)  # banned everywhere: "no item"
                all_items.append(top_items.cpu())
                all_scores.append(top_scores.cpu())
        items, scores = torch.cat(all_items), torch.cat(all_scores)
        if found < k:
            items = torch.cat([items, items.new_full((items.shape[0], k - found), -1)], 1)
            scores = torch.cat([scores, scores.new_full((scores.shape[0], k - found), float("-inf"))], 1)
        return items, scores

    def recommend(self, histories: Sequence[Sequence[str]], k: int = DEFAULT_K, *,
                  exclude_history: bool = DEFAULT_EXCLUDE_HISTORY, batch_size: int = DEFAULT_BATCH_SIZE,
                  num_beams: int | None = None,
                  candidates: Sequence[Sequence[str]] | None = None) -> list[list[tuple[str, float]]]:
        """Recommend ``k`` catalog items per history by constrained beam search
        (:meth:`genrec.models.recommender.Recommender.recommend`).

        Args (beyond the contract's ``histories``, ``k=10``, ``exclude_history=True``, ``batch_size=32``):
            num_beams: beam width (default ``max(k, config.num_beams)``, at most ``num_items``).
            candidates: optional per-user candidate item ids (direct recommendation: rank only those).

        ``exclude_history`` bans the history items inside the beam search, so the beams find other items.

        Returns:
            per history, up to ``k`` ``(item_id, log-probability)`` pairs, best first.

        Raises:
            ValueError: as the contract, plus ``candidates`` of another length or with unknown ids.
        """
        self._require_bound()
        candidate_rows = None
        if candidates is not None:
            if len(candidates) != len(histories):
                raise ValueError(f"`candidates` has {len(candidates)} lists; `histories` has {len(histories)}")
            candidate_rows = [self.item_rows([str(c) for c in row], where=f"candidates[{i}]")
                              for i, row in enumerate(candidates)]
        return super().recommend(histories, k, exclude_history=exclude_history, batch_size=batch_size,
                                 num_beams=num_beams, candidate_rows=candidate_rows)

    def _recommend_batch(self, histories, k, banned, *, offset=0, num_beams=None, candidate_rows=None):
        rows = [[self._item_index[item] for item in history] for history in histories]
        candidates = None if candidate_rows is None else candidate_rows[offset:offset + len(histories)]
        items, scores = self.recommend_rows(rows, k, num_beams=num_beams, candidates=candidates, banned_items=banned)
        item_ids = self.item_ids
        return [[(item_ids[r], float(s)) for r, s in zip(row_items.tolist(), row_scores.tolist()) if r >= 0]
                for row_items, row_scores in zip(items, scores)]

    @classmethod
    def from_dataset(cls, catalog, train_sequences, *, seed: int = 0, item_tokenizer=None, item_vector_table=None,
                     **config_kwargs: Any):
        """genrec's one builder (:mod:`genrec.models.recommender`): fit the configured item tokenizer on the
        catalog + TRAINING sequences (or load a fitted one) and build an untrained model bound to it.

        With ``input_granularity="item"`` and ``item_vectors`` set, the per-item vectors (text embedding, optionally
        plus collaborative dimensions) are computed here too (:func:`dataset_item_input_vectors`).

        Args:
            catalog: ``genrec.data.ItemCatalog`` (row order = the model's item order).
            train_sequences: ``{user: [item ids]}`` of the training part only (no validation/test items).
            seed: tokenizer seed when its config has none.
            item_tokenizer (str | os.PathLike | ItemTokenizer | None): a tokenizer fitted on this catalog (e.g. by
                ``genrec tokenize``), as an object, a folder or a Hub repo id (``model.item_tokenizer`` in a run
                config); it replaces ``item_tokenizer_method`` / ``item_tokenizer_config``. None: fit one.
            item_vector_table: precomputed ``(num_items, D)`` item vectors to use instead of building them from
                ``item_vectors`` (item-level inputs only).
            **config_kwargs: config fields (``item_tokenizer_method`` / ``item_tokenizer_config`` pick the tokenizer).

        Raises:
            ValueError: bad config values, an unknown tokenizer method, an ``item_tokenizer`` fitted on another
                catalog, or ``item_vectors`` reading item text from a catalog without text.
        """
        import time

        from genrec.tokenization import get_tokenizer_class

        config = cls.config_class(**{key: value for key, value in config_kwargs.items() if key != "num_items"})
        vectors = item_vector_table
        if vectors is None and config.input_granularity == "item" and config.item_vectors is not None:
            vectors = dataset_item_input_vectors(catalog, config.item_vectors, train_sequences,
                                                 tokenizer_config=config.item_tokenizer_config)
        if item_tokenizer is not None:  # config.json then names the scheme that made the ids, not the preset's
            item_tokenizer = _fitted_item_tokenizer(item_tokenizer, catalog)
            config.item_tokenizer_method = item_tokenizer.method
            config.item_tokenizer_config = item_tokenizer.config.to_dict()
            return cls.from_item_tokenizer(item_tokenizer, config, item_vector_table=vectors)
        tokenizer_config = dict(config.item_tokenizer_config or {})
        tokenizer_class = get_tokenizer_class(config.item_tokenizer_method)
        tokenizer_config.setdefault("seed", seed)
        start = time.time()
        item_tokenizer = tokenizer_class(tokenizer_config).fit(catalog, sequences=train_sequences)
        logger.info(f"item tokenizer {config.item_tokenizer_method} fitted in {time.time() - start:.1f}s: "
                    f"code length {item_tokenizer.code_length}, codebooks {item_tokenizer.codebook_sizes}")
        return cls.from_item_tokenizer(item_tokenizer, config, item_vector_table=vectors)

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """genrec's ranking scores (:mod:`genrec.models.recommender`) for left-padded histories of item rows.

        Args:
            input_ids: LongTensor (batch, seq) of ``catalog row + 1``, 0 = padding (genrec.training's RankingSet).
            attention_mask: ignored (padding is ``0``); accepted for the common signature.

        Returns:
            FloatTensor (batch, num_items): the beam-search log-probability of the ``config.num_beams`` items found,
            ``-inf`` elsewhere (so an item outside the beam counts as a miss); with the item head
            (``loss_type="items"``) every item's log-probability under the head (exact full ranking).
        """
        histories = [[int(r) - 1 for r in row.tolist() if r > 0] for row in input_ids]
        if self.has_item_head:
            return self._head_scores(histories).to(input_ids.device)
        items, scores = self.recommend_rows(histories, self.config.num_beams)
        out = torch.full((len(histories), self.config.num_items), float("-inf"))
        valid = items >= 0
        batch_index = torch.arange(len(histories))[:, None].expand_as(items)
        out[batch_index[valid], items[valid]] = scores[valid]
        return out.to(input_ids.device)

    def generate(self, input_ids=None, attention_mask=None, *, banned_items=None, logits_processor=None, **kwargs):
        """HF ``generate`` constrained to the catalog: every returned sequence is a catalog item.

        Args:
            input_ids, attention_mask: encoder batch (e.g. from :meth:`build_inputs`).
            banned_items: optional per-user items never to generate (see ``CatalogLogitsProcessor``).
            logits_processor: extra processors, run after the catalog constraint.
            **kwargs: any ``generate`` argument (``num_beams``, ``num_return_sequences``, ``do_sample``, ...);
                ``max_new_tokens`` defaults to the item code length.

        Returns:
            what ``GenerationMixin.generate`` returns; ``sequences[:, 1:]`` are item token ids
            (``self.catalog.items_of`` maps them back to rows).
        """
        from genrec.decoding import CatalogLogitsProcessor

        self._require_bound()
        decoder_input_ids = kwargs.get("decoder_input_ids")
        prompt_length = 1 if decoder_input_ids is None else decoder_input_ids.shape[1]
        kwargs.setdefault("max_new_tokens", self.catalog.max_length)
        processor = CatalogLogitsProcessor(self.catalog, prompt_length=prompt_length, banned_items=banned_items)
        processors = LogitsProcessorList([processor, *(logits_processor or [])])
        return super().generate(input_ids=input_ids, attention_mask=attention_mask, logits_processor=processors,
                                **kwargs)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """``PreTrainedModel.save_pretrained`` plus the tokenizer, ``item_tokenizer/``, ``catalog.safetensors`` and
        a model card ``README.md``, ``item_ids.json`` (the catalog's rows): the folder is complete for
        ``from_pretrained`` and the Hub. config.json gets the catalog's fingerprint (item ids + item token ids), which
        ``from_pretrained`` checks."""
        if self.item_tokenizer is not None:
            self.config.catalog_fingerprint = catalog_fingerprint(self.item_ids, self.item_token_table)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return result
        from genrec.models.model_card import save_model_card

        directory = Path(save_directory)
        if self.item_tokenizer is not None:
            from safetensors.torch import save_file

            self.tokenizer.save_pretrained(directory)
            self.item_tokenizer.save_pretrained(directory / ITEM_TOKENIZER_DIR)
            save_item_ids(directory, self.item_ids)
            tmp = directory / f".{CATALOG_FILE}.tmp"
            tensors = {"item_token_ids": self.item_token_table.cpu().contiguous()}
            if self.item_vector_table is not None:  # item-level inputs: the vectors travel with the codes table
                tensors["item_vectors"] = self.item_vector_table.float().cpu().contiguous()
            save_file(tensors, str(tmp), metadata={"format": "genrec-catalog", "num_items": str(self.config.num_items)})
            os.replace(tmp, directory / CATALOG_FILE)
        save_model_card(self, directory)
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also restores the tokenizer, item tokenizer and catalog.

        Raises:
            ValueError: ``catalog.safetensors`` disagrees with the item tokenizer and tokenizer, or those files are
                not the ones the weights were saved with (config.json's ``catalog_fingerprint``).
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        folder = _resolve_folder(pretrained_model_name_or_path, kwargs)
        if (folder / ITEM_TOKENIZER_DIR / "config.json").is_file():
            from safetensors.torch import load_file
            from transformers import AutoTokenizer

            from genrec.tokenization import AutoItemTokenizer

            item_tokenizer = AutoItemTokenizer.from_pretrained(folder / ITEM_TOKENIZER_DIR)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            # the bound catalog: item_ids.json (absent before genrec wrote it: the item tokenizer's whole catalog)
            item_ids = (read_item_ids_file(folder / ITEM_IDS_FILE) if (folder / ITEM_IDS_FILE).is_file()
                        else list(item_tokenizer.item_ids))
            table = vectors = None
            if (folder / CATALOG_FILE).is_file():
                stored = load_file(str(folder / CATALOG_FILE))
                table, vectors = stored["item_token_ids"], stored.get("item_vectors")
                expected = item_tokenizer.item_token_ids(tokenizer)  # (tokenizer items, L)
                if item_ids != list(item_tokenizer.item_ids):  # a subset / reordering of the tokenizer's items
                    rows = {item: row for row, item in enumerate(item_tokenizer.item_ids)}
                    if not all(item in rows for item in item_ids):
                        raise ValueError(f"{folder / ITEM_IDS_FILE} names items the item tokenizer there does not encode")
                    expected = expected[torch.tensor([rows[item] for item in item_ids], dtype=torch.long)]
                if not torch.equal(table, expected):
                    raise ValueError(f"{folder / CATALOG_FILE} does not match the item tokenizer and tokenizer there")
            if model.item_vector_proj is not None and vectors is None:
                raise ValueError(f"{folder} holds a model with item vectors (`item_vector_dim` = "
                                 f"{model.config.item_vector_dim}) but {CATALOG_FILE} has no `item_vectors`")
            model.set_catalog(item_ids, item_tokenizer=item_tokenizer, tokenizer=tokenizer, item_token_table=table,
                              item_vectors=vectors)
            check_catalog_fingerprint(
                model.config, catalog_fingerprint(model.item_ids, model.item_token_table), folder,
                f"{ITEM_TOKENIZER_DIR}/, {CATALOG_FILE}, {ITEM_IDS_FILE} and the tokenizer files")
        return model


def _fitted_item_tokenizer(item_tokenizer, catalog):
    """A fitted item tokenizer (object, folder or Hub repo id) whose items are ``catalog``'s, in its order.

    Raises:
        ValueError: it was fitted on another catalog (the items differ or come in another order).
    """
    from genrec.tokenization import AutoItemTokenizer

    where = "the item tokenizer"
    if isinstance(item_tokenizer, (str, os.PathLike)):
        where = f"`model.item_tokenizer` {os.fspath(item_tokenizer)!r}"
        item_tokenizer = AutoItemTokenizer.from_pretrained(item_tokenizer)
    items, expected = list(item_tokenizer.item_ids), [str(item) for item in catalog.item_ids]
    if items != expected:
        missing = [item for item in expected if item not in set(items)]
        detail = (f"the dataset's items {missing[:3]} are not in it" if missing
                  else "its items come in another order" if sorted(items) == sorted(expected)
                  else f"it has {len(items)} items, the dataset {len(expected)}")
        raise ValueError(f"{where} was fitted on another catalog ({detail}); fit it on this dataset with "
                         "`genrec tokenize --dataset <the same data and data options>`")
    logger.info(f"item tokenizer {item_tokenizer.method!r} loaded (not fitted): code length "
                f"{item_tokenizer.code_length}, codebooks {item_tokenizer.codebook_sizes}")
    return item_tokenizer


def _resolve_folder(name_or_path, kwargs: dict) -> Path:
    """Local folder of a checkpoint: a Hub repo id is downloaded whole (:func:`genrec.utils.hub.resolve_folder`:
    the item tokenizer, catalog and tokenizer files come with the weights)."""
    from genrec.utils.hub import hub_lookup, resolve_folder

    lookup = hub_lookup(kwargs)
    subfolder = lookup.pop("subfolder", None) or ""
    local = resolve_folder(name_or_path, what="checkpoint", **lookup)
    return local / subfolder if subfolder else local


def dataset_item_input_vectors(catalog, options: dict[str, Any], train_sequences, *,
                               tokenizer_config: dict | None = None) -> np.ndarray:
    """The per-item vectors of an item-level P5 / OneRec (``config.item_vectors``), as RecGPT builds its own.

    ``options`` are RecGPT's ``model.tokenizer`` keys (see :data:`ITEM_VECTOR_OPTIONS`): ``item_text`` (default
    true) embeds the catalog text, ``collaborative_dims`` appends spectral co-occurrence dimensions of the TRAINING
    histories. The text encoder settings default to the item tokenizer's (``tokenizer_config``), so the text
    embeddings its fit cached are reused.

    Returns:
        float32 ``(num_items, D)`` in catalog order.

    Raises:
        ValueError: ``item_text`` on a catalog without item text, or bad option values.
    """
    from genrec.models.item_vectors import dataset_item_vectors
    from genrec.tokenization.embeddings import embed_catalog

    options = dict(options)
    for key in ("embedding_model", "text_fields", "embedding_cache_dir", "embedding_batch_size"):
        if key not in options and (tokenizer_config or {}).get(key) is not None:
            options[key] = tokenizer_config[key]
    if options.get("item_text", True) and not getattr(catalog, "has_text", False):
        raise ValueError("`model.item_vectors` embeds the item text (`item_text: true`, the default), but the dataset "
                         "has no item text; set `item_vectors: null`, or `{item_text: false, collaborative_dims: 64}`")
    vectors = dataset_item_vectors(catalog, options, train_sequences)  # pops the RecGPT keys it reads
    if vectors is None:  # text only (no collaborative dimensions)
        vectors = embed_catalog(catalog, options.get("embedding_model"), options.get("embedding_cache_dir"),
                                options.get("text_fields"), batch_size=options.get("embedding_batch_size", 256))
    return np.asarray(vectors, dtype=np.float32)


def build_generative_model(model_class: type[GenerativeT5Model], model_kwargs: dict[str, Any], catalog,
                           train_sequences, *, seed: int = 0) -> GenerativeT5Model:
    """Fit the configured item tokenizer on the catalog + TRAINING sequences and build the model around it.

    Args:
        model_class: a :class:`GenerativeT5Model` subclass (P5 / OneRec); its ``config_class`` reads
            ``model_kwargs``.
        model_kwargs: config fields (``item_tokenizer_method`` / ``item_tokenizer_config`` pick the tokenizer).
        catalog: ``genrec.data.ItemCatalog`` (row order = the model's item order).
        train_sequences: ``{user: [item ids]}`` of the training part only (no validation/test items).
        seed: tokenizer seed when its config has none.

    Returns:
        a new model bound to the fitted item tokenizer.

    Raises:
        ValueError: bad config values, or an unknown tokenizer method.
    """
    return model_class.from_dataset(catalog, train_sequences, seed=seed, **model_kwargs)


def build_generative_training_data(model: GenerativeT5Model, train_sequences, item_index, *, seed: int = 0):
    """Training windows of a generative model and their collator.

    Args:
        model: a bound P5 / OneRec model (its ``max_history_items`` and, for OneRec, ``session_length`` apply).
        train_sequences: iterable of chronological item-id lists (training part).
        item_index: catalog id -> row.

    Returns:
        ``(dataset, collator)`` for the Trainer; the dataset knows each window's user (``window_users``), which
        ``training.train_targets: random_cut`` samples by.
    """
    from genrec.data.datasets import (
        GenerativeRecDataset,
        Seq2SeqRecCollator,
        next_item_windows,
    )

    windows, users = next_item_windows(train_sequences, item_index, max_history=model.config.max_history_items,
                                       num_targets=getattr(model.config, "session_length", 1), with_users=True)
    dataset = GenerativeRecDataset(windows, model.example_encoder(), seed=seed, window_users=users)
    return dataset, Seq2SeqRecCollator(pad_token_id=model.config.pad_token_id)
