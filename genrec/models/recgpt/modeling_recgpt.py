"""RecGPT (HKUDS/RecGPT): a decoder-only recommender over text-derived FSQ item tokens.

* Items are tokenized by genrec's ``fsq`` item tokenizer: an item is ``C = num_chunks`` codes, one per chunk
  of its text embedding. New items (cold start, another domain) get codes from their text alone.
* Token ``(i, c)`` of a history = LayerNorm(code embedding) + LayerNorm(Linear_c(text chunk c of item i))
  + item-position + chunk-position embeddings (the paper fuses the raw text chunk into the token input).
* Hybrid attention: bidirectional among the C tokens of one item, causal across items
  (:func:`hybrid_attention_mask`, one vectorised boolean mask fed to PyTorch SDPA).
* Parallel prediction: the C positions of item ``i`` predict the C codes of item ``i + 1``, so one forward
  pass gives the whole next item. ``log p(item) = sum_c log p_c(code_c(item))``: the model scores the whole
  catalog exactly with one gather (:meth:`RecGPTForCausalLM.score`) or runs catalog-constrained beam search
  through genrec's decoder step (:meth:`RecGPTForCausalLM.generate`).

* The cheap item layout (``input_granularity="item"``, RPG-style): ONE position per history item (summed code
  embeddings + projected text), causal attention over items, ``C`` linear heads give the next item's code queries;
  with ``tie_code_embeddings`` / ``logit_temperature`` the codes are scored by cosine against the input table, and
  ``loss_type="items"`` trains a (sampled) softmax over items of their mean code logits.

Inputs follow genrec's training layer: ``input_ids`` are catalog rows + 1 (0 = padding, left-padded), and
the model expands them to codes and text chunks from the catalog it holds (:meth:`set_catalog`).
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
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from genrec.models.catalog import ITEM_IDS_FILE, load_item_ids, save_item_ids
from genrec.models.histories import history_rows, left_padded_rows
from genrec.models.item_vectors import dataset_item_vectors
from genrec.models.layers import FeedForwardBlock, SparseMoeBlock
from genrec.models.recgpt.configuration_recgpt import RecGPTConfig
from genrec.models.recommender import Recommender

logger = logging.get_logger(__name__)

__all__ = ["RecGPTForCausalLM", "RecGPTOutput", "RecGPTPreTrainedModel", "dataset_item_vectors",
           "hybrid_attention_mask"]

CATALOG_FILE = "catalog.safetensors"
ITEM_TOKENIZER_DIR = "item_tokenizer"


def hybrid_attention_mask(item_mask: torch.Tensor, num_chunks: int) -> torch.Tensor:
    """RecGPT's attention mask: token ``(i, c)`` sees ``(j, c')`` iff ``j <= i`` and item ``j`` is real.

    Built in one vectorised expression (no Python loop over tokens). A padding query also sees itself, so
    every softmax row has at least one key (its output is never used).

    Args:
        item_mask: bool/int ``(batch, n_items)``; 1 = real item (left padding allowed).
        num_chunks: tokens per item ``C``.

    Returns:
        bool ``(batch, 1, n_items * C, n_items * C)``; True = may attend (PyTorch SDPA convention).
    """
    n_items = item_mask.shape[1]
    length = n_items * num_chunks
    item_of_token = torch.arange(length, device=item_mask.device) // num_chunks  # (T,)
    causal_items = item_of_token[:, None] >= item_of_token[None, :]  # (T, T) same item or earlier
    key_valid = item_mask.bool().repeat_interleave(num_chunks, dim=1)  # (B, T)
    mask = causal_items[None] & key_valid[:, None, :]  # (B, T, T)
    mask = mask | torch.eye(length, dtype=torch.bool, device=item_mask.device)[None]
    return mask[:, None]


@dataclass
class RecGPTOutput(ModelOutput):
    """Output of :class:`RecGPTForCausalLM`.

    Attributes:
        loss: scalar, mean code cross-entropy (+ MoE aux loss), when ``labels`` were given.
        logits: ``(batch, C, codebook_size)``: next-item code logits from the last history item.
        hidden_states: final hidden states, ``(batch, n_items, C, hidden)`` in the token layout and
            ``(batch, n_items, hidden)`` in the item layout (:meth:`RecGPTForCausalLM.code_queries` maps either to
            the next item's ``C`` code queries).
        aux_loss: scalar MoE auxiliary loss (0 for dense).
        expert_load: ``(num_layers, num_experts)`` fraction of routed tokens per expert (MoE only).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    expert_load: torch.FloatTensor | None = None


class RecGPTCodeTable(nn.Module):
    """Vectors for every (chunk, code): a learned table, a sum of per-digit vectors, or both.

    Args:
        config: the model config (``num_chunks``, ``codebook_size``, ``fsq_levels``, ``code_embedding_type``).
    """

    def __init__(self, config: RecGPTConfig):
        super().__init__()
        chunks, size, hidden = config.num_chunks, config.codebook_size, config.hidden_size
        self.num_chunks, self.codebook_size, self.levels = chunks, size, list(config.fsq_levels)
        kind = config.code_embedding_type
        self.table = nn.Embedding(chunks * size, hidden) if kind in ("table", "both") else None
        self.digit_table = nn.Embedding(chunks * sum(self.levels), hidden) if kind in ("digits", "both") else None
        self._digits_cache: dict[torch.device, torch.Tensor] = {}

    def code_digits(self, device: torch.device) -> torch.Tensor:
        """``(codebook_size, q)`` rows of ``digit_table`` (within a chunk) for each code's mixed-radix digits."""
        if device not in self._digits_cache:
            levels = torch.tensor(self.levels, dtype=torch.long)
            basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
            digits = (torch.arange(self.codebook_size)[:, None] // basis) % levels  # (K, q)
            offsets = torch.cat([levels.new_zeros(1), levels.cumsum(0)[:-1]])
            self._digits_cache[device] = (digits + offsets).to(device)
        return self._digits_cache[device]

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Vectors of codes ``(..., C)`` (code ``c`` of the last axis in chunk ``c``) → ``(..., C, hidden)``."""
        chunk = torch.arange(self.num_chunks, device=codes.device)
        out = 0
        if self.table is not None:
            out = self.table(codes + chunk * self.codebook_size)
        if self.digit_table is not None:
            rows = self.code_digits(codes.device)[codes] + (chunk * sum(self.levels))[:, None]  # (..., C, q)
            out = out + self.digit_table(rows).sum(-2)
        return out

    def summed(self, codes: torch.Tensor) -> torch.Tensor:
        """``forward(codes).sum(-2)`` without the ``(..., C, hidden)`` intermediate: codes ``(..., C)`` → ``(..., hidden)``.

        One ``embedding_bag`` per table (a fused gather-sum; its backward scatters into the used rows only).
        """
        shape = codes.shape[:-1]
        flat = codes.reshape(-1, self.num_chunks)
        chunk = torch.arange(self.num_chunks, device=codes.device)
        out = 0
        if self.table is not None:
            out = F.embedding_bag(flat + chunk * self.codebook_size, self.table.weight, mode="sum")
        if self.digit_table is not None:
            rows = self.code_digits(codes.device)[flat] + (chunk * sum(self.levels))[:, None]  # (M, C, q)
            out = out + F.embedding_bag(rows.reshape(flat.shape[0], -1), self.digit_table.weight, mode="sum")
        return out.view(*shape, -1)

    def weight(self) -> torch.Tensor:
        """Every code's vector, ``(C, codebook_size, hidden)``."""
        out = 0
        if self.table is not None:
            out = self.table.weight.view(self.num_chunks, self.codebook_size, -1)
        if self.digit_table is not None:
            digits = self.code_digits(self.digit_table.weight.device)  # (K, q)
            per_chunk = self.digit_table.weight.view(self.num_chunks, sum(self.levels), -1)  # (C, S, H)
            for j in range(digits.shape[1]):  # q small gathers instead of one (C, K, q, H) tensor
                out = out + per_chunk[:, digits[:, j]]
        return out


class RecGPTAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` with a boolean mask."""

    def __init__(self, config: RecGPTConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """hidden_states ``(B, T, H)``, attention_mask bool ``(B, 1, T, T)`` → ``(B, T, H)``."""
        batch, length, hidden = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, hidden))


class RecGPTBlock(nn.Module):
    """Pre-LayerNorm transformer block; the feed-forward is dense or a sparse MoE (``config.ffn_type``)."""

    def __init__(self, config: RecGPTConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = RecGPTAttention(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if config.ffn_type == "moe":
            self.ffn = SparseMoeBlock(
                hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                num_experts=config.num_experts, num_experts_per_tok=config.num_experts_per_tok,
                hidden_act=config.hidden_act, router_aux_loss_coef=config.router_aux_loss_coef,
                router_z_loss_coef=config.router_z_loss_coef,
            )
        else:
            self.ffn = FeedForwardBlock(
                hidden_size=config.hidden_size, intermediate_size=config.intermediate_size, hidden_act=config.hidden_act
            )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, attention_mask, token_mask):
        """``(B, T, H)``, bool ``(B, 1, T, T)``, bool ``(B, T)`` → ``(B, T, H)`` and the block's MoE output."""
        hidden_states = hidden_states + self.dropout(self.attention(self.attention_norm(hidden_states), attention_mask))
        ffn = self.ffn(self.ffn_norm(hidden_states), attention_mask=token_mask)
        return hidden_states + self.dropout(ffn.hidden_states), ffn


class RecGPTPreTrainedModel(PreTrainedModel):
    """Weight init and config class shared by RecGPT models."""

    config_class = RecGPTConfig
    base_model_prefix = "recgpt"
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, RecGPTForCausalLM):
            module.head_bias.zero_()


class RecGPTForCausalLM(Recommender, RecGPTPreTrainedModel):
    """RecGPT: hybrid-attention transformer predicting all codes of the next item in one pass.

    Args:
        config: :class:`RecGPTConfig`.
        item_ids: optional catalog ids (row ``j`` = ``item_ids[j]``); with ``item_codes`` and
            ``item_text_embeddings`` binds the catalog (see :meth:`set_catalog`).
        item_codes: ``(num_items, >= C)`` int FSQ codes (an extra disambiguation level is ignored).
        item_text_embeddings: ``(num_items, text_embedding_dim)`` float.
        item_tokenizer: optional fitted ``fsq`` :class:`genrec.tokenization.ItemTokenizer`: saved with the
            model and used by :meth:`set_catalog` to encode new items from their texts or vectors.
    """

    def __init__(self, config: RecGPTConfig, item_ids=None, item_codes=None, item_text_embeddings=None,
                 item_tokenizer=None):
        super().__init__(config)
        hidden, chunks = config.hidden_size, config.num_chunks
        self.code_embeddings = RecGPTCodeTable(config)
        self.code_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        chunk_dim = config.text_embedding_dim // chunks
        # one projection per chunk, as one grouped weight (C, chunk_dim, H)
        self.text_proj = nn.Parameter(torch.empty(chunks, chunk_dim, hidden))
        self.text_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.item_position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.chunk_position_embeddings = nn.Embedding(chunks, hidden)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([RecGPTBlock(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.head = None if config.tie_code_embeddings else RecGPTCodeTable(config)  # None: the input table scores
        self.head_bias = nn.Parameter(torch.zeros(chunks, config.codebook_size))
        # input_granularity "item": one position per history item; C heads turn its state into C code queries
        self.chunk_heads = nn.Parameter(torch.empty(chunks, hidden, hidden)) if config.input_granularity == "item" else None
        # text_logits: a query head whose output meets every item's projected text embedding (identity at start)
        self.text_query = nn.Parameter(torch.empty(hidden, hidden)) if config.text_logits else None
        # text_skip: a second text term in the RAW item-vector space, query = g * (the position's own item vector)
        # + U(state); g starts at 1 and U at 0, so an untrained model is last-item text-kNN on the item vectors
        self.text_skip_gate = nn.Parameter(torch.ones(())) if config.text_skip else None
        self.text_skip_proj = nn.Parameter(torch.zeros(hidden, config.text_embedding_dim)) if config.text_skip else None
        self.item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        self.catalog_codes: torch.Tensor | None = None  # (num_items + 1, C) long; row 0 = padding
        self.catalog_text: torch.Tensor | None = None  # (num_items + 1, D) float; row 0 = padding
        self._decoding_catalog = None
        self.item_tokenizer = item_tokenizer
        # False: the bound catalog's codes are not used at all -- histories read their items' text alone and the
        # ranking is by text logits (``set_catalog(..., use_codes=False)``; needs ``text_logits``), for a
        # catalog whose codes the model never trained on
        self.use_codes = True
        self.post_init()
        with torch.no_grad():
            self.text_proj.normal_(0.0, config.initializer_range)
            if self.chunk_heads is not None:  # start as the identity: every code query = the position's state
                self.chunk_heads.copy_(torch.eye(hidden).expand(chunks, hidden, hidden))
            if self.text_query is not None:
                self.text_query.copy_(torch.eye(hidden))
            if self.text_skip_proj is not None:  # post_init's _init_weights does not know these two
                self.text_skip_proj.zero_()
                self.text_skip_gate.fill_(1.0)
        if item_codes is not None:
            if item_ids is None or item_text_embeddings is None:
                raise ValueError("pass `item_ids`, `item_codes` and `item_text_embeddings` together to bind a catalog")
            self.set_catalog(item_ids, item_codes=item_codes, item_text_embeddings=item_text_embeddings)
            if config.code_init == "text":
                self.init_code_vectors_from_text()

    @classmethod
    def from_dataset(cls, catalog, train_sequences=None, *, seed: int = 0, **config_kwargs: Any) -> RecGPTForCausalLM:
        """genrec's one builder (:mod:`genrec.models.recommender`): item vectors (text, plus ``tokenizer.
        collaborative_dims`` spectral dimensions from the TRAINING sequences), the fitted ``fsq``/``pq`` tokenizer and
        an untrained model (see :meth:`from_catalog`; ``seed`` is unused: the tokenizer config holds its seed).

        Args:
            catalog: :class:`genrec.data.ItemCatalog`. train_sequences: ``{user: [item ids]}`` (training part).
            **config_kwargs: :class:`RecGPTConfig` fields, plus ``tokenizer`` (the tokenizer section).
        """
        kwargs = dict(config_kwargs)
        tokenizer_kwargs = dict(kwargs.pop("tokenizer", None) or {})
        embeddings = dataset_item_vectors(catalog, tokenizer_kwargs, train_sequences)
        return cls.from_catalog(catalog, embeddings=embeddings, tokenizer_kwargs=tokenizer_kwargs, **kwargs)

    @classmethod
    def from_catalog(cls, catalog, *, embeddings: np.ndarray | None = None, item_tokenizer=None,
                     tokenizer_kwargs: dict | None = None, **config_kwargs: Any) -> RecGPTForCausalLM:
        """Build a model for a genrec ``ItemCatalog``: embed item texts, fit (or reuse) the ``fsq`` tokenizer.

        Args:
            catalog: :class:`genrec.data.ItemCatalog` (item texts are embedded unless ``embeddings`` is given).
            embeddings: optional ``(num_items, D)`` item text embeddings in catalog order.
            item_tokenizer: an already fitted ``fsq`` or ``pq`` tokenizer over this catalog (else one is fitted).
            tokenizer_kwargs: ``method`` (``"fsq"``, the default and RecGPT's, or ``"pq"``: product quantization,
                RPG's long codes) and that tokenizer's config fields (:class:`genrec.tokenization.fsq.FSQConfig`,
                :class:`genrec.tokenization.pq.PQConfig`).
            **config_kwargs: :class:`RecGPTConfig` fields (``num_chunks``/``codebook_size``/``fsq_levels``/
                ``text_embedding_dim`` are taken from the tokenizer and embeddings).

        Returns:
            an untrained model with the catalog and tokenizer bound.
        """
        import math

        from genrec.tokenization import get_tokenizer_class
        from genrec.tokenization.embeddings import embed_catalog

        tokenizer_kwargs = dict(tokenizer_kwargs or {})
        method = tokenizer_kwargs.pop("method", "fsq")
        if method not in ("fsq", "pq"):
            raise ValueError(f"`tokenizer.method` ({method!r}) must be 'fsq' (RecGPT's) or 'pq' (product quantization)")
        if embeddings is None:
            embeddings = embed_catalog(catalog, tokenizer_kwargs.get("embedding_model"),
                                       tokenizer_kwargs.get("embedding_cache_dir"), tokenizer_kwargs.get("text_fields"),
                                       batch_size=tokenizer_kwargs.get("embedding_batch_size", 256))
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if item_tokenizer is None:
            item_tokenizer = get_tokenizer_class(method)(**tokenizer_kwargs)
            item_tokenizer.fit(catalog, embeddings=embeddings)
        if list(item_tokenizer.item_ids) != list(catalog.item_ids):
            raise ValueError("`item_tokenizer` was fitted on another catalog (its item_ids differ from the catalog's)")
        if hasattr(item_tokenizer.config, "levels"):  # fsq: a code is a mixed-radix number of FSQ digits
            levels = list(item_tokenizer.config.levels)
        else:  # pq: plain code indices; the "digits" embedding degenerates to one digit = the code itself
            levels = [item_tokenizer.config.codebook_size]
        config = RecGPTConfig(
            **{**config_kwargs, "num_chunks": item_tokenizer.config.num_chunks, "codebook_size": math.prod(levels),
               "fsq_levels": levels, "text_embedding_dim": int(embeddings.shape[1])}
        )
        return cls(config, item_ids=catalog.item_ids, item_codes=item_tokenizer.codes, item_text_embeddings=embeddings,
                   item_tokenizer=item_tokenizer)

    # ----- catalog ----------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        """Items in the bound catalog (0 when none)."""
        return 0 if self.item_ids is None else len(self.item_ids)

    @property
    def item_index(self) -> dict[str, int]:
        """Catalog id -> row (empty until a catalog is bound); genrec's evaluator maps dataset ids with it."""
        return self._item_index

    catalog_features: ClassVar[dict[str, str]] = {
        "item_codes": "(num_items, >= num_chunks) int codes (default: the bound codes, or encoded from the given "
                      "text by the item tokenizer)",
        "item_text_embeddings": "(num_items, text_embedding_dim) item vectors",
        "texts": "one text per item, embedded with the item tokenizer's encoder (instead of item_text_embeddings)",
        "use_codes": "False: rank by text logits alone, for codes the model never trained on (default: unchanged)",
    }
    required_catalog_features: ClassVar[tuple[tuple[str, ...], ...]] = (("item_text_embeddings", "texts"),)
    positional_catalog_features: ClassVar[tuple[str, ...]] = ("item_codes", "item_text_embeddings")

    def _catalog_defaults(self, item_ids: list[str], given: dict[str, Any]) -> dict[str, Any]:
        rows = self.bound_rows(item_ids) if self.item_ids is not None else None
        if rows is None or "texts" in given or "item_text_embeddings" in given:
            return {}  # new text: its codes come from the item tokenizer unless given
        index = torch.tensor(rows, dtype=torch.long, device=self.catalog_codes.device) + 1  # row 0 = padding
        return {"item_codes": self.catalog_codes[index].cpu(), "item_text_embeddings": self.catalog_text[index].cpu()}

    def _bind_catalog(self, item_ids: list[str], *, item_codes=None, item_text_embeddings=None,
                      texts: Sequence[str] | None = None, use_codes: bool | None = None) -> None:
        """Bind (or replace) the catalog the model reads histories from and recommends out of (see
        :meth:`set_catalog`).

        Any catalog works with the same weights, e.g. another domain's items tokenized by the same ``fsq``
        tokenizer (zero-shot transfer): give their ``texts`` or ``item_text_embeddings`` and the codes are encoded
        by the attached item tokenizer (vectors with fewer dimensions than the model's -- text only, for a model
        trained on ``[text ; collaborative]`` -- get zeros appended, like the source domain's cold items).

        Args:
            item_ids: N distinct ids; row ``j`` (input id ``j + 1``) is ``item_ids[j]``.
            item_codes: int ``(N, >= C)`` codes; columns after the first C (a disambiguation level) are dropped.
            item_text_embeddings: float ``(N, text_embedding_dim)``. texts: N strings instead.
            use_codes: ``False`` ignores the items' codes (``text_logits`` models): histories read each item's text
                alone and the catalog is ranked by text logits. The code vectors were trained on OTHER items, so
                on a new domain they can be noise; choose on the new domain's validation split
                (``benchmarks/zero_shot_item.py`` does). None: unchanged.

        Raises:
            ValueError: mismatched sizes, codes out of ``[0, codebook_size)``, both ``texts`` and
                ``item_text_embeddings``, codes or texts to encode without an item tokenizer, or
                ``use_codes=False`` without ``text_logits``.
        """
        if use_codes is False and self.text_query is None:
            raise ValueError("`use_codes=False` needs a model trained with `text_logits: true`")
        if texts is not None and item_text_embeddings is not None:
            raise ValueError("pass one of `texts` and `item_text_embeddings`, not both")
        if (texts is not None or item_codes is None) and self.item_tokenizer is None:
            raise ValueError(f"this RecGPT model has no `item_tokenizer` to {'embed `texts`' if texts is not None else 'encode the items'}"
                             "; pass `item_codes` and `item_text_embeddings`, or load a model saved with one")
        if texts is not None:
            from genrec.tokenization.embeddings import embed_texts

            item_text_embeddings = embed_texts([str(text) for text in texts], self.item_tokenizer.config.embedding_model)
        embeddings = _numpy(item_text_embeddings, np.float32)
        if item_codes is None:
            missing = self.config.text_embedding_dim - embeddings.shape[-1]
            if embeddings.ndim == 2 and missing > 0:  # new items have no interactions yet: collaborative part 0
                embeddings = np.concatenate([embeddings, np.zeros((len(embeddings), missing), np.float32)], axis=1)
            item_codes = self.item_tokenizer.encode_embeddings(embeddings)
        codes = torch.from_numpy(_numpy(item_codes, np.int64))
        text = torch.from_numpy(embeddings)
        chunks, dim = self.config.num_chunks, self.config.text_embedding_dim
        if codes.dim() != 2 or codes.shape[0] != len(item_ids) or codes.shape[1] < chunks:
            raise ValueError(f"`item_codes` shape {tuple(codes.shape)} must be ({len(item_ids)}, >= {chunks})")
        codes = codes[:, :chunks]
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise ValueError(
                f"`item_codes` hold values in [{int(codes.min())}, {int(codes.max())}]; allowed: "
                f"0..{self.config.codebook_size - 1}"
            )
        if text.shape != (len(item_ids), dim):
            raise ValueError(f"`item_text_embeddings` shape {tuple(text.shape)} must be ({len(item_ids)}, {dim})")
        device = self.text_proj.device
        self.item_ids, self._item_index = item_ids, {item: row for row, item in enumerate(item_ids)}
        self.catalog_codes = torch.cat([codes.new_zeros(1, chunks), codes]).to(device)
        self.catalog_text = torch.cat([text.new_zeros(1, dim), text]).to(device)
        self._decoding_catalog = None
        if use_codes is not None:
            self.use_codes = use_codes

    @torch.no_grad()
    def init_code_vectors_from_text(self) -> None:
        """Set every output code vector to the mean projected text chunk of the bound catalog's items with that code.

        Output code ``k`` of chunk ``c`` becomes ``mean_{i: code_c(i) = k} text_c(i) @ text_proj[c]`` (codes no
        item holds keep their random start), scaled to the random table's norm. The input side already reads the
        same projection, so the untrained model scores an item by how close its text chunks are to the history's:
        a text-similarity starting point that training then refines with the sequence. ``"digits"`` heads (no
        per-code table) are left as they are.
        """
        self._require_catalog()
        if self.output_codes.table is None:
            return
        chunks, size = self.config.num_chunks, self.config.codebook_size
        codes = self.catalog_codes[1:]  # (N, C)
        text = self.catalog_text[1:].view(codes.shape[0], chunks, -1)  # (N, C, D / C)
        projected = torch.einsum("ncd,cdh->nch", text, self.text_proj)  # (N, C, H)
        table = self.output_codes.table.weight.view(chunks, size, -1)
        for c in range(chunks):
            sums = projected.new_zeros(size, projected.shape[-1]).index_add_(0, codes[:, c], projected[:, c])
            counts = torch.bincount(codes[:, c], minlength=size)
            used = counts > 0
            means = sums[used] / counts[used, None]
            scale = table[c].norm(dim=-1).mean() / means.norm(dim=-1).mean().clamp(min=1e-12)
            table[c, used] = means * scale

    def add_catalog_from_texts(self, item_ids: Sequence[str], texts: Sequence[str] | None = None,
                               embeddings: np.ndarray | None = None, *, use_codes: bool = True) -> None:
        """Deprecated alias (removed in genrec 0.3) of ``set_catalog(item_ids, texts=... | item_text_embeddings=...,
        use_codes=...)``: bind a new catalog from item texts or their embeddings, codes from the item tokenizer.

        Raises:
            ValueError: neither or both of ``texts`` and ``embeddings``, or what :meth:`set_catalog` rejects.
        """
        from genrec.models.catalog import deprecated_alias

        deprecated_alias("RecGPTForCausalLM.add_catalog_from_texts(item_ids, texts | embeddings)",
                         "set_catalog(item_ids, texts=... | item_text_embeddings=..., use_codes=...)")
        if (texts is None) == (embeddings is None):
            raise ValueError("pass exactly one of `texts` and `embeddings`")
        self.set_catalog(item_ids, texts=texts, item_text_embeddings=embeddings, use_codes=use_codes)

    def _require_catalog(self) -> None:
        if self.catalog_codes is None:
            raise ValueError("this RecGPT model has no catalog; call set_catalog() or load a checkpoint saved with one")
        if self.catalog_codes.device != self.text_proj.device:
            self.catalog_codes = self.catalog_codes.to(self.text_proj.device)
            self.catalog_text = self.catalog_text.to(self.text_proj.device)

    # ----- forward ----------------------------------------------------------------------------------
    def embed_items(self, codes: torch.Tensor, text: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
        """Token inputs of items: codes ``(B, n, C)``, text ``(B, n, D)``, item_mask ``(B, n)`` → ``(B, n, C, H)``."""
        batch, n_items, chunks = codes.shape
        text_chunks = text.view(batch, n_items, chunks, -1)  # (B, n, C, D / C)
        text_part = torch.einsum("bncd,cdh->bnch", text_chunks, self.text_proj)
        hidden = self.code_norm(self.code_embeddings(codes)) + self.text_norm(text_part)
        positions = (item_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, n) left padding → 0-based positions
        hidden = hidden + self.item_position_embeddings(positions)[:, :, None]
        return hidden + self.chunk_position_embeddings.weight  # (B, n, C, H)

    def embed_history_items(self, codes: torch.Tensor, text: torch.Tensor, item_mask: torch.Tensor) -> torch.Tensor:
        """One input vector per item (``input_granularity="item"``): codes ``(B, n, C)``, text ``(B, n, D)`` → ``(B, n, H)``.

        ``LayerNorm(sum_c code_embedding_c) + LayerNorm(text @ W)`` + item position, where ``W`` is the per-chunk
        text projection stacked into one ``(D, H)`` matrix (the same parameters as the token layout). The code term
        is dropped for an item with probability ``code_dropout`` in training, and for every item when ``use_codes``
        is off (a catalog the model never trained on).
        """
        batch, n_items, chunks = codes.shape
        text_part = torch.einsum("bncd,cdh->bnh", text.view(batch, n_items, chunks, -1), self.text_proj)
        hidden = self.text_norm(text_part)
        if self.use_codes:
            code_part = self.code_norm(self.code_embeddings.summed(codes))
            if self.training and self.config.code_dropout > 0:  # some items are read from their text alone
                keep = torch.rand(batch, n_items, 1, device=codes.device) >= self.config.code_dropout
                code_part = code_part * keep
            hidden = hidden + code_part
        positions = (item_mask.long().cumsum(1) - 1).clamp(min=0)
        return hidden + self.item_position_embeddings(positions)  # (B, n, H)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        item_codes: torch.LongTensor | None = None,
        item_text_embeddings: torch.FloatTensor | None = None,
        label_codes: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> RecGPTOutput:
        """Encode histories; predict the next item's codes; optionally the training loss.

        Args:
            input_ids: ``(B, n)`` catalog rows + 1, 0 = padding (left-padded). Or give ``item_codes`` ``(B, n, C)``
                and ``item_text_embeddings`` ``(B, n, D)`` directly (items outside the catalog).
            attention_mask: ``(B, n)`` 1 = real item (default: ``input_ids != 0``, or all ones).
            labels: ``(B, n)`` catalog rows + 1 of the item after each position; ``-100`` or 0 = ignore.
            label_codes: ``(B, n, C)`` target codes instead of ``labels``; rows with a negative code are ignored.

        Returns:
            :class:`RecGPTOutput`.
        """
        if input_ids is not None:
            self._require_catalog()
            if attention_mask is None:
                attention_mask = input_ids != 0
            item_codes = self.catalog_codes[input_ids]
            item_text_embeddings = self.catalog_text[input_ids]
        elif item_codes is None or item_text_embeddings is None:
            raise ValueError("pass `input_ids` or both `item_codes` and `item_text_embeddings`")
        batch, n_items, chunks = item_codes.shape
        if n_items > self.config.max_position_embeddings:
            raise ValueError(
                f"history length {n_items} exceeds `max_position_embeddings` ({self.config.max_position_embeddings}); "
                "keep the most recent items"
            )
        if attention_mask is None:
            attention_mask = torch.ones(batch, n_items, dtype=torch.bool, device=item_codes.device)
        item_mask = attention_mask.bool()
        per_item = self.chunk_heads is not None
        if per_item:  # (B, n, H): one position per item, plain causal attention over items
            hidden = self.dropout(self.embed_history_items(item_codes, item_text_embeddings, item_mask))
            mask, token_mask = hybrid_attention_mask(item_mask, 1), item_mask
        else:  # (B, n * C, H): C positions per item, hybrid mask
            hidden = self.dropout(self.embed_items(item_codes, item_text_embeddings, item_mask))
            hidden = hidden.view(batch, n_items * chunks, -1)
            mask = hybrid_attention_mask(item_mask, chunks)
            token_mask = item_mask.repeat_interleave(chunks, dim=1)
        aux_loss = hidden.new_zeros(())
        loads = []
        for layer in self.layers:
            hidden, ffn = layer(hidden, mask, token_mask)
            aux_loss = aux_loss + ffn.aux_loss
            if ffn.expert_load is not None:
                loads.append(ffn.expert_load)
        hidden = self.final_norm(hidden)
        if not per_item:
            hidden = hidden.view(batch, n_items, chunks, -1)  # (B, n, C, H)
        # else (B, n, H): the C code queries are made only where they are scored (last position, labelled ones)
        head = self.output_code_vectors()  # (C, K, H)
        logits = self.code_logits(self.code_queries(hidden[:, -1]), head)  # (B, C, K)
        loss = None
        if labels is not None or label_codes is not None:
            if label_codes is None:
                self._require_catalog()
                valid = labels > 0
                label_codes = self.catalog_codes[labels.clamp(min=0)]
            else:
                valid = (label_codes >= 0).all(-1)
            valid = valid & item_mask
            chosen = self.code_queries(hidden[valid])  # (N, C, H): only real positions meet the codebooks
            position_logits = self.code_logits(chosen, head)  # (N, C, K)
            if self.config.loss_type == "items" and labels is not None:  # softmax over the catalog's items
                loss = self._item_softmax_loss(position_logits, labels[valid] - 1, hidden[valid] if per_item else None,
                                               item_text_embeddings[valid])
            else:
                targets = label_codes[valid]  # (N, C)
                loss = F.cross_entropy(position_logits.reshape(-1, position_logits.shape[-1]).float(),
                                       targets.reshape(-1))
            loss = loss + aux_loss
        return RecGPTOutput(
            loss=loss, logits=logits, hidden_states=hidden, aux_loss=aux_loss,
            expert_load=torch.stack(loads) if loads else None,
        )

    def code_queries(self, states: torch.Tensor) -> torch.Tensor:
        """Final states → the C code queries of the next item, ``(..., C, H)``.

        Token layout: the states already are ``(..., C, H)`` (one per code position) and pass through. Item layout:
        states ``(..., H)`` go through the C linear heads (``chunk_heads``).
        """
        if self.chunk_heads is None:
            return states
        return torch.einsum("...h,chg->...cg", states, self.chunk_heads)

    def _item_softmax_loss(self, code_logits: torch.Tensor, rows: torch.Tensor,
                           states: torch.Tensor | None = None, own_text: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the target items among the catalog (or sampled items), item logit = mean code logit
        (+ the text logit with ``text_logits``).

        Args:
            code_logits: ``(N, C, K)``. rows: ``(N,)`` catalog rows of the targets.
            states: ``(N, H)`` the positions' final states (needed with ``text_logits``).
            own_text: ``(N, D)`` the item vectors of the positions' own items (needed with ``text_skip``).
        """
        chunks = self.config.num_chunks
        if self.config.num_negatives == 0 or self.config.num_negatives >= self.num_items:
            logits = self.item_logits(code_logits) / chunks
            if self.text_query is not None:
                logits = logits + self.text_item_logits(states, own_text)
            return F.cross_entropy(logits.float(), rows)
        codes = self.catalog_codes[1:]  # (I, C)
        negatives = torch.randint(0, self.num_items, (self.config.num_negatives,), device=rows.device)
        candidates = torch.cat([rows[:, None], negatives[None].expand(rows.shape[0], -1)], 1)  # (N, 1 + S)
        candidate_codes = codes[candidates]  # (N, 1 + S, C)
        logits = code_logits.gather(2, candidate_codes.transpose(1, 2)).sum(1) / chunks  # (N, 1 + S)
        if self.text_query is not None:
            queries = self.text_queries(states, own_text)  # (N, H [+ D])
            positive = (queries * self.item_text_vectors(rows)).sum(-1, keepdim=True)  # (N, 1)
            logits = logits + torch.cat([positive, queries @ self.item_text_vectors(negatives).T], 1)
        hits = candidates[:, 1:] == rows[:, None]  # a sampled "negative" that is the target itself
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(hits, float("-inf"))], 1)
        return F.cross_entropy(logits.float(), torch.zeros_like(rows))

    def _scale(self, vectors: torch.Tensor) -> torch.Tensor:
        """Cosine logits (``logit_temperature`` set): L2-normalise; dot-product logits: leave as they are."""
        return vectors if self.config.logit_temperature is None else F.normalize(vectors, dim=-1)

    def text_queries(self, states: torch.Tensor, own_text: torch.Tensor | None = None) -> torch.Tensor:
        """``text_logits``: final states ``(N, H)`` → text queries ``(N, H)``, or ``(N, H + D)`` with ``text_skip``
        (the raw-space query ``g * own_text + states @ U`` appended; ``own_text`` ``(N, D)`` = the item vectors of
        the positions' own items). Each part is divided by τ and L2-normalised under cosine."""
        tau = self.config.logit_temperature or 1.0
        queries = self._scale(states @ self.text_query) / tau
        if self.text_skip_proj is None:
            return queries
        if own_text is None:
            raise ValueError("`text_skip` models need the item vectors of the scored positions (`own_text`)")
        raw = self.text_skip_gate * self._scale(own_text.to(states.dtype)) + states @ self.text_skip_proj
        return torch.cat([queries, self._scale(raw) / tau], -1)

    def item_text_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``text_logits``: items' projected text ``text_i @ W`` (the input side's projection), ``(R, H)``, with
        ``text_skip`` their raw item vectors appended, ``(R, H + D)``.

        Args:
            rows: catalog rows (0-based); ``None`` = the whole catalog. Each part is L2-normalised when
                ``logit_temperature`` is set.
        """
        text = self.catalog_text[1:] if rows is None else self.catalog_text[rows + 1]
        vectors = self._scale(torch.einsum("rcd,cdh->rh", text.view(text.shape[0], self.config.num_chunks, -1),
                                           self.text_proj))
        if self.text_skip_proj is None:
            return vectors
        return torch.cat([vectors, self._scale(text)], -1)

    def text_item_logits(self, states: torch.Tensor, own_text: torch.Tensor | None = None) -> torch.Tensor:
        """``text_logits``: every catalog item's text logit for final states ``(N, H)`` → ``(N, num_items)``."""
        return self.text_queries(states, own_text) @ self.item_text_vectors().T

    def item_logits(self, code_logits: torch.Tensor) -> torch.Tensor:
        """Every catalog item's additive score: ``(N, C, K)`` code logits → ``(N, num_items)`` sums of its C entries."""
        codes = self.catalog_codes[1:]  # (I, C)
        scores = code_logits[:, 0, codes[:, 0]]
        for c in range(1, self.config.num_chunks):
            scores = scores + code_logits[:, c, codes[:, c]]
        return scores

    @property
    def output_codes(self) -> RecGPTCodeTable:
        """The code table the next item's codes are scored against (the input table when tied)."""
        return self.code_embeddings if self.head is None else self.head

    def output_code_vectors(self) -> torch.Tensor:
        """``(C, K, H)`` code vectors of the output side, L2-normalised when ``logit_temperature`` is set."""
        head = self.output_codes.weight()
        return head if self.config.logit_temperature is None else F.normalize(head, dim=-1)

    def code_logits(self, queries: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """Code logits of queries ``(N, C, H)`` against ``head`` from :meth:`output_code_vectors` → ``(N, C, K)``.

        ``q · e + b``, or ``cos(q, e) / τ + b`` with ``logit_temperature`` τ.
        """
        if self.config.logit_temperature is not None:
            queries = F.normalize(queries, dim=-1) / self.config.logit_temperature
        return torch.einsum("nch,ckh->nck", queries, head) + self.head_bias

    # ----- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every catalog item's ranking score as the next one (genrec's ranking interface).

        Args:
            input_ids: ``(B, n)`` left-padded catalog rows + 1.
            attention_mask: ``(B, n)`` optional.

        Returns:
            ``(B, num_items)`` float: the exact ``log p(item) = sum_c log_softmax(logits_c)[code_c(item)]`` (items
            sharing all codes tie); with ``text_logits`` plus ``C x`` the item's text logit (the training logit times
            ``C``, up to a per-history constant), or that text term alone after
            ``set_catalog(..., use_codes=False)``; plus ``text_prior_weight x`` :meth:`text_prior` when that is > 0.
        """
        parts = self.score_components(input_ids, attention_mask, prior=bool(self.config.text_prior_weight))
        if "text_prior" not in parts:
            return parts["model"]
        return parts["model"] + self.config.text_prior_weight * parts["text_prior"]

    @torch.no_grad()
    def score_components(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, *,
                         prior: bool = True) -> dict[str, torch.Tensor]:
        """The two parts of :meth:`score`: ``"model"`` (the trained scores) and, with ``prior`` (item layout),
        ``"text_prior"`` (:meth:`text_prior`); ``score = model + text_prior_weight x text_prior``. Lets a weight
        sweep (:func:`genrec.training.trainer.tune_text_prior`) run the network once for every weight."""
        output = self(input_ids=input_ids, attention_mask=attention_mask)
        if self.text_query is None:
            scores = self.item_logits(output.logits.float().log_softmax(-1))  # (B, N)
        else:
            # the training logit is mean code logit + text logit: C x text here, beside the summed code log-probs
            last_text = self.catalog_text[input_ids[:, -1]] if self.text_skip_proj is not None else None
            scores = self.config.num_chunks * self.text_item_logits(output.hidden_states[:, -1], last_text).float()
            if self.use_codes:
                scores = scores + self.item_logits(output.logits.float().log_softmax(-1))
        parts = {"model": scores}
        if prior:
            parts["text_prior"] = self.text_prior(input_ids)
        return parts

    @torch.no_grad()
    @property
    def supports_text_prior(self) -> bool:
        """Whether :meth:`score_components` has a ``"text_prior"`` part (the item layout)."""
        return self.config.input_granularity == "item"

    def text_prior(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Last-item prior ``C x cos(v_last, v_i) / τ`` for every catalog item, ``(B, num_items)`` float.

        ``v`` are the items' raw item vectors (what ``set_catalog(item_text_embeddings=...)`` bound), ``v_last`` the
        history's last item (``input_ids`` left-padded), τ = ``logit_temperature`` (1 without it). The last item's
        own entry is 0 (as text-kNN's ``exclude_query_items``, without banning a repeat). Item layout only.

        Raises:
            ValueError: a token-layout model (its catalog has no item vectors per row).
        """
        if self.config.input_granularity != "item":
            raise ValueError('the text prior needs `input_granularity: "item"`')
        self._require_catalog()
        items = F.normalize(self.catalog_text[1:].float(), dim=-1)  # (N, D)
        last_rows = input_ids[:, -1]  # (B,) rows + 1
        cosine = F.normalize(self.catalog_text[last_rows].float(), dim=-1) @ items.T  # (B, N); padding row = zeros
        # an item is its own nearest neighbour: no prior for the last item itself (the model alone scores a repeat)
        cosine = cosine.scatter(1, (last_rows - 1).clamp(min=0)[:, None], 0.0)
        return self.config.num_chunks * cosine / (self.config.logit_temperature or 1.0)

    def decoding_catalog(self):
        """genrec :class:`~genrec.decoding.Catalog` over the items' code tokens (code ``k`` of chunk ``c`` = token ``c*K + k``)."""
        from genrec.decoding import Catalog

        self._require_catalog()
        if self._decoding_catalog is None:
            offsets = torch.arange(self.config.num_chunks, device=self.catalog_codes.device) * self.config.codebook_size
            self._decoding_catalog = Catalog.from_codes((self.catalog_codes[1:] + offsets).cpu())
        return self._decoding_catalog

    def generate(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Deprecated alias of :meth:`generate_items` (removed in genrec 0.3).

        RecGPT predicts all codes of the next item in one forward pass, so it has no token-by-token
        transformers ``generate``; the catalog beam search is :meth:`generate_items`.
        """
        import warnings

        warnings.warn("RecGPTForCausalLM.generate() is deprecated and will be removed in genrec 0.3; use "
                      "generate_items() (same arguments, returns (items, scores))", FutureWarning, stacklevel=2)
        return self.generate_items(*args, **kwargs)

    @torch.no_grad()
    def generate_items(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, *,
                       num_beams: int = 20, top_k: int | None = None,
                       banned_items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Catalog-constrained beam search over the C code positions; returns only catalog items.

        The C code distributions come from ONE forward pass (parallel prediction); beams walk genrec's catalog
        trie level by level with genrec's constrained top-k step (Triton on CUDA, torch otherwise). Items whose
        codes collide share one trie leaf: the smallest row is returned (use :meth:`score` to rank every item).

        Args:
            input_ids: ``(B, n)`` left-padded catalog rows + 1. attention_mask: ``(B, n)`` optional.
            num_beams: beams per user. top_k: items per user (default ``num_beams``).
            banned_items: bool ``(B, num_items)`` or rows ``(B, M)`` padded with -1 (e.g. the history).

        Returns:
            ``(items, scores)``: LongTensor ``(B, top_k)`` catalog rows best first (-1 only if fewer exist) and
            their log-probabilities ``(B, top_k)``.
        """
        from genrec.kernels.constrained_topk import constrained_topk

        if not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"`num_beams` ({num_beams!r}) must be an int >= 1")
        top_k = num_beams if top_k is None else top_k
        if not isinstance(top_k, int) or not 1 <= top_k <= num_beams:
            raise ValueError(f"`top_k` ({top_k!r}) must be an int in [1, num_beams={num_beams}]")
        catalog = self.decoding_catalog().to(input_ids.device)
        log_probs = self(input_ids=input_ids, attention_mask=attention_mask).logits.float().log_softmax(-1)
        batch, size = log_probs.shape[0], self.config.codebook_size
        banned = None if banned_items is None else catalog.banned_leaves(banned_items)
        beam_scores = log_probs.new_zeros(batch, 1)
        beam_nodes = torch.zeros(batch, 1, dtype=torch.long, device=log_probs.device)
        for d in range(self.config.num_chunks):
            lo, hi = catalog.token_lo[d], catalog.token_hi[d]
            step_logits = log_probs[:, d, lo - d * size : hi - d * size]  # (B, hi - lo): same for every beam
            beams_in = beam_scores.shape[1]
            step_logits = step_logits[:, None].expand(-1, beams_in, -1).reshape(batch * beams_in, -1)
            last = d == self.config.num_chunks - 1
            step = constrained_topk(
                step_logits, beam_scores, beam_nodes, catalog.child_ptr[d], catalog.child_token[d],
                catalog.is_leaf[d + 1], token_lo=lo, max_children=catalog.max_children[d],
                num_beams=0 if last else num_beams, num_finished=top_k if last else 1,
                row_lse=step_logits.new_zeros(batch * beams_in),  # already log-probabilities
                banned_leaves=banned, child_leaf_lo=catalog.leaf_lo[d + 1], child_leaf_hi=catalog.leaf_hi[d + 1],
            )
            if last:
                found = step.finished_child >= 0
                leaf = catalog.leaf_lo[d + 1][step.finished_child.clamp(min=0)].long()
                items = torch.where(found, catalog.leaf_item[leaf].long(), -1)
                scores = torch.where(found, step.finished_scores, float("-inf"))
                return items, scores
            beam_scores, beam_nodes = step.active_scores, step.active_child.clamp(min=0)
        raise AssertionError("unreachable")

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> torch.LongTensor:
        """String histories (oldest first) → left-padded ``(B, n)`` catalog rows + 1 (last ``max_position_embeddings``).

        Raises:
            ValueError: no catalog, a string instead of a list, an empty history or an unknown id.
        """
        self._require_catalog()
        rows = history_rows(histories, self._item_index, max_len=self.config.max_position_embeddings)
        input_ids = left_padded_rows(rows)
        return input_ids.to(self.text_proj.device)

    # ----- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained`` + ``catalog.safetensors`` (codes, text embeddings),
        ``item_ids.json`` and ``item_tokenizer/`` (the fsq tokenizer) when present, and the model card ``README.md``."""
        from safetensors.torch import save as save_tensors

        from genrec.utils.io import atomic_write_bytes

        if self.item_ids is not None:  # ties the catalog files to these weights (checked by from_pretrained)
            self.config.catalog_fingerprint = self._catalog_fingerprint()
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        directory = Path(save_directory)
        if self.item_ids is not None:
            save_item_ids(directory, self.item_ids)
            tensors = {"codes": self.catalog_codes[1:].cpu().contiguous(), "text_embeddings": self.catalog_text[1:].cpu().contiguous()}
            atomic_write_bytes(directory / CATALOG_FILE, save_tensors(tensors))
        if self.item_tokenizer is not None:
            self.item_tokenizer.save_pretrained(directory / ITEM_TOKENIZER_DIR)
        from genrec.models.model_card import save_model_card

        save_model_card(self, directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also restores the catalog and the item tokenizer.

        Raises:
            ValueError: those files are not the ones the weights were saved with (config.json's fingerprint).
        """
        from safetensors.torch import load_file

        from genrec.utils.hub import hub_lookup, optional_file

        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        lookup = hub_lookup(kwargs)

        def find(name: str):
            return optional_file(pretrained_model_name_or_path, name, **lookup)

        item_ids, catalog_path = load_item_ids(pretrained_model_name_or_path, kwargs), find(CATALOG_FILE)
        if item_ids is not None and catalog_path is not None:
            tensors = load_file(catalog_path)
            model.set_catalog(item_ids, item_codes=tensors["codes"], item_text_embeddings=tensors["text_embeddings"].numpy())
        else:
            logger.warning(f"{pretrained_model_name_or_path}: no {CATALOG_FILE}; call set_catalog() before recommending")
        tokenizer_config = find(f"{ITEM_TOKENIZER_DIR}/config.json")
        if tokenizer_config is not None:
            from genrec.tokenization import AutoItemTokenizer

            model.item_tokenizer = AutoItemTokenizer.from_pretrained(str(Path(tokenizer_config).parent))
        if model.item_ids is not None:
            from genrec.models.histories import check_catalog_fingerprint

            check_catalog_fingerprint(model.config, model._catalog_fingerprint(), pretrained_model_name_or_path,
                                      f"{ITEM_IDS_FILE}, {CATALOG_FILE} and {ITEM_TOKENIZER_DIR}/")
        return model

    def _catalog_fingerprint(self) -> str:
        """Fingerprint of the catalog ids and codes, and of the item tokenizer's codes when one is attached."""
        from genrec.models.histories import catalog_fingerprint

        tokenizer = self.item_tokenizer
        tokenizer_ids = [] if tokenizer is None else [f"tokenizer:{item}" for item in tokenizer.item_ids]
        return catalog_fingerprint(list(self.item_ids) + tokenizer_ids, self.catalog_codes[1:],
                                   None if tokenizer is None else tokenizer.codes)


def _numpy(values: Any, dtype) -> np.ndarray:
    """A fresh numpy array of ``values`` (a tensor, an array or nested lists) of ``dtype``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.array(values, dtype=dtype)
