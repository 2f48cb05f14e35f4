"""genrec's fast catalog-constrained beam search over any HF model with a KV cache.

Why not ``model.generate(num_beams=K)``? HF beam search expands every user's encoder output (or prompt) to
K beams before decoding: it computes the cross-attention keys/values K times per user, runs the first step
for K identical beams and projects every beam onto the whole vocabulary at every step. Here:

* the encoder (or the decoder-only prompt) runs once per user, and step 0 runs with one beam per user;
  the cache is then gathered to ``batch * K`` rows once (cross-attention keys/values are computed once per
  user and never reordered again: all beams of a user share them);
* at step ``d`` the output projection is restricted to the tokens that can appear at position ``d``
  (``[catalog.token_lo[d], catalog.token_hi[d])``: one level's codebook for semantic IDs), by slicing the
  model's ``lm_head`` weight for the duration of the call;
* the constrained step (mask to the trie children, log-softmax, top-k per user across beams, bans) is one
  call of :func:`genrec.kernels.constrained_topk` (Triton on CUDA, torch otherwise) on fixed-shape
  ``(batch, K)`` tensors: there is no Python work per beam.

Every returned item is a catalog row, and a user never gets an item twice (beams are distinct trie paths).

``decoder_prefix`` continues a decoder that has already emitted tokens (e.g. the items of a session so far,
OneRec's slot-by-slot session generation): the prefix runs through the cached decoder in step 0 (one row per
user, rows of different lengths left-padded and masked), then the constrained search starts at the catalog root.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging

from genrec.decoding.catalog import Catalog
from genrec.kernels.constrained_topk import constrained_topk, constrained_topk_reference
from genrec.utils.threads import warn_if_threads_may_spin

logger = logging.get_logger(__name__)

__all__ = ["beam_search", "beam_search_unconstrained"]

_NORMALIZE = ("catalog", "vocab")


def _left_pack(tokens: torch.Tensor, valid: torch.Tensor, pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every row's valid tokens to the right end, in order, with padding on the left.

    Args:
        tokens: LongTensor ``(B, T)``.
        valid: bool ``(B, T)``: which tokens are real.
        pad_token_id: value written into padding positions (they are masked anyway).

    Returns:
        ``(packed, mask)``: LongTensor ``(B, W)`` and long ``(B, W)`` 0/1 mask, ``W`` = the most valid tokens in
        a row. Example: ``[[5, -, 6], [7, 8, 9]]`` -> ``[[pad, 5, 6], [7, 8, 9]]``.
    """
    order = torch.sort(valid.int(), dim=1, stable=True).indices  # padding first, real tokens keep their order
    packed = tokens.gather(1, order)
    mask = valid.gather(1, order)
    width = max(int(valid.sum(1).max()), 1)
    packed, mask = packed[:, -width:], mask[:, -width:]
    return packed.masked_fill(~mask, pad_token_id), mask.long()


def with_decoder_prefix(first: torch.Tensor, first_mask: torch.Tensor, decoder_prefix: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``first`` (its masked-out positions dropped) followed by the prefix's non-negative tokens, left-packed."""
    if decoder_prefix is None:
        return _left_pack(first, first_mask.bool())
    prefix = decoder_prefix.to(first.device).long()
    tokens = torch.cat([first, prefix.clamp(min=0)], 1)
    valid = torch.cat([first_mask.bool(), prefix >= 0], 1)
    return _left_pack(tokens, valid)


class _OutputSlice:
    """Context manager restricting a model's output projection to token ids ``[lo, hi)``.

    The model then returns ``(..., hi - lo)`` logits (column ``c`` = token ``lo + c``) for the same cost as a
    ``hi - lo`` row projection. Works for any model whose ``get_output_embeddings()`` is an ``nn.Linear``
    whose output goes to the logits through elementwise ops only (true of HF LM heads; T5's pre-head scaling
    acts on the hidden state). Elsewhere nothing is patched and callers slice the full logits.
    """

    def __init__(self, model: nn.Module, enabled: bool):
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.head = head if enabled and isinstance(head, nn.Linear) else None
        self.range: tuple[int, int] | None = None

    @property
    def active(self) -> bool:
        return self.head is not None

    def _forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight, bias = self.head.weight, self.head.bias
        if self.range is not None:
            lo, hi = self.range
            weight = weight[lo:hi]  # a view: no copy of the projection matrix
            bias = None if bias is None else bias[lo:hi]
        return F.linear(hidden_states, weight, bias)

    def __enter__(self) -> "_OutputSlice":
        if self.head is not None:
            self.head.forward = self._forward  # instance attribute shadows the class method
        return self

    def __exit__(self, *exc) -> None:
        if self.head is not None and "forward" in self.head.__dict__:
            del self.head.forward


class _CachedDecoder:
    """Runs an HF model step by step with its KV cache, one row per (user, beam).

    Encoder-decoder: the encoder runs once; step 0 feeds ``decoder_start_token_id`` (+ the decoder prefix, rows
    left-padded with a decoder attention mask) with one row per user. Decoder-only: step 0 feeds the prompt + the
    prefix (left-packed) with one row per user; positions come from the attention mask. After step 0,
    :meth:`advance` gathers the cache rows of the chosen parent beams.
    """

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 decoder_start_token_id: int | None, decoder_prefix: torch.Tensor | None = None):
        self.model = model
        self.config = model.config
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.accepts_position_ids = "position_ids" in params
        self.accepts_logits_to_keep = "logits_to_keep" in params
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.cache = None
        self.first = True
        self.decoder_mask = None  # encoder-decoder with a ragged prefix: (rows, decoded length) 0/1
        if not self.is_encoder_decoder and decoder_prefix is not None:
            self.input_ids, self.attention_mask = with_decoder_prefix(input_ids, attention_mask, decoder_prefix)
        if self.is_encoder_decoder:
            start = decoder_start_token_id
            if start is None:
                start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
            if start is None:
                start = getattr(model.config, "decoder_start_token_id", None)
            if start is None:
                raise ValueError(
                    "`decoder_start_token_id` is None and the model's config/generation_config has none; pass "
                    "decoder_start_token_id=<int>"
                )
            self.decoder_start_token_id = int(start)
            starts = torch.full((input_ids.shape[0], 1), self.decoder_start_token_id, dtype=torch.long,
                                device=input_ids.device)
            self.decoder_input_ids, decoder_mask = with_decoder_prefix(starts, torch.ones_like(starts), decoder_prefix)
            if not bool(decoder_mask.all()):
                self.decoder_mask = decoder_mask
            encoder = model.get_encoder()
            self.encoder_outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)

    def _cache_out(self, outputs: Any):
        cache = getattr(outputs, "cache", None)
        return cache if cache is not None else getattr(outputs, "past_key_values", None)

    def start(self) -> torch.Tensor:
        """Step 0 with one row per user. Returns logits ``(batch, V')``."""
        if self.is_encoder_decoder:
            kwargs = {} if self.decoder_mask is None else {"decoder_attention_mask": self.decoder_mask}
            outputs = self.model(encoder_outputs=self.encoder_outputs, attention_mask=self.attention_mask,
                                 decoder_input_ids=self.decoder_input_ids, use_cache=True, return_dict=True,
                                 **kwargs)
        else:
            kwargs: dict[str, Any] = {}
            self.positions = (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            if self.accepts_position_ids:
                kwargs["position_ids"] = self.positions
            if self.accepts_logits_to_keep:
                kwargs["logits_to_keep"] = 1
            outputs = self.model(input_ids=self.input_ids, attention_mask=self.attention_mask, use_cache=True,
                                 return_dict=True, **kwargs)
            self.positions = self.positions[:, -1:]
        self.cache = self._cache_out(outputs)
        if self.cache is None:
            raise ValueError(
                f"{type(self.model).__name__} returned no cache; beam_search needs a model with a KV cache"
            )
        return outputs.logits[:, -1, :]

    def advance(self, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` to the beams whose parents are cache rows ``rows``; returns next logits.

        Args:
            tokens: LongTensor ``(R,)``: the token each new beam adds.
            rows: LongTensor ``(R,)``: for each new beam, the current cache row of its parent.

        Returns:
            logits ``(R, V')`` for the next position.
        """
        cache = self.cache
        if self.is_encoder_decoder:
            cache.self_attention_cache.reorder_cache(rows)
            if self.first:
                # cross-attention keys/values: computed once per user in step 0, gathered once to the beams
                cache.cross_attention_cache.reorder_cache(rows)
                hidden = self.encoder_outputs.last_hidden_state.index_select(0, rows)
                self.encoder_outputs = type(self.encoder_outputs)(last_hidden_state=hidden)
                self.attention_mask = self.attention_mask.index_select(0, rows)
            kwargs = {}
            if self.decoder_mask is not None:
                mask = self.decoder_mask.index_select(0, rows)
                self.decoder_mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
                kwargs["decoder_attention_mask"] = self.decoder_mask
            outputs = self.model(encoder_outputs=self.encoder_outputs, attention_mask=self.attention_mask,
                                 decoder_input_ids=tokens[:, None], use_cache=True, return_dict=True,
                                 **{self.cache_arg: cache}, **kwargs)
        else:
            cache.reorder_cache(rows)
            self.attention_mask = self.attention_mask.index_select(0, rows)
            self.positions = self.positions.index_select(0, rows) + 1
            self.attention_mask = torch.cat(
                [self.attention_mask, self.attention_mask.new_ones((self.attention_mask.shape[0], 1))], dim=1
            )
            kwargs: dict[str, Any] = {}
            if self.accepts_position_ids:
                kwargs["position_ids"] = self.positions
            outputs = self.model(input_ids=tokens[:, None], attention_mask=self.attention_mask, use_cache=True,
                                 return_dict=True, **{self.cache_arg: cache}, **kwargs)
        self.first = False
        self.cache = self._cache_out(outputs)
        return outputs.logits[:, -1, :]


def _make_decoder(model, input_ids, attention_mask, decoder_start_token_id, fast_model_path, decoder_prefix=None):
    """The T5 fast decoder for T5-family models in eval mode (when allowed), else the generic one."""
    from transformers import T5ForConditionalGeneration

    if fast_model_path and isinstance(model, T5ForConditionalGeneration) and not model.training:
        from genrec.models.generative.cached_decoder import T5CachedDecoder

        return T5CachedDecoder(model, input_ids, attention_mask, decoder_start_token_id, decoder_prefix)
    return _CachedDecoder(model, input_ids, attention_mask, decoder_start_token_id, decoder_prefix)


def _validate(model, input_ids, attention_mask, num_beams, top_k, normalize):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(f"`input_ids` must be a 2-D LongTensor (batch, length), got {type(input_ids).__name__}"
                         f"{'' if not isinstance(input_ids, torch.Tensor) else tuple(input_ids.shape)}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"`input_ids` must be non-empty, got shape {tuple(input_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"`attention_mask` shape {tuple(attention_mask.shape)} must equal `input_ids` shape "
                         f"{tuple(input_ids.shape)}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"`num_beams` must be an int >= 1, got {num_beams!r}")
    if not isinstance(top_k, int) or not 1 <= top_k <= num_beams:
        raise ValueError(f"`top_k` must be an int in [1, num_beams={num_beams}], got {top_k!r}")
    if normalize not in _NORMALIZE:
        raise ValueError(f"`normalize` must be one of {_NORMALIZE}, got {normalize!r}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return attention_mask.to(input_ids.device)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    catalog: Catalog,
    *,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_beams: int = 10,
    top_k: int | None = None,
    banned_items: torch.Tensor | None = None,
    normalize: str = "catalog",
    length_penalty: float = 0.0,
    decoder_start_token_id: int | None = None,
    use_kernel: bool | None = None,
    fast_model_path: bool = True,
    decoder_prefix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recommend the ``top_k`` best catalog items per user by constrained beam search.

    Args:
        model: any HF encoder-decoder (``config.is_encoder_decoder``) or decoder-only LM with a KV cache,
            in the mode the caller wants (``model.eval()`` for deterministic results).
        catalog: the valid token sequences (:class:`genrec.decoding.Catalog`).
        input_ids: LongTensor ``(batch, length)``: encoder input, or the decoder-only prompt (left-padded).
        attention_mask: ``(batch, length)``; defaults to all ones.
        num_beams: beams per user, ``K``.
        top_k: items returned per user, ``1 <= top_k <= num_beams`` (default ``num_beams``).
        banned_items: optional per-user items that must not be returned (e.g. history, or items already in a
            session): bool ``(batch, num_items)`` or catalog rows ``(batch, M)`` padded with -1. Prefixes whose
            items are all banned are pruned during the search, so beams are not wasted on them.
        normalize: ``"catalog"`` (default): each step's log-probabilities are renormalised over the catalog
            children of the prefix (only those logits are computed); ``"vocab"``: the model's full-vocabulary
            log-softmax, as ``generate()`` scores beams (projects onto the whole vocabulary).
        length_penalty: finished items are ranked by ``score / length ** length_penalty`` (only matters for
            variable-length catalogs; 0 = raw sum of log-probabilities, which also allows exact early stop).
        decoder_start_token_id: encoder-decoder start token (default: from the model's configs).
        use_kernel: force the Triton kernel (True) or the torch reference (False); default: Triton when the
            model runs on CUDA.
        fast_model_path: use the model-specific decoder where one exists (T5 family in eval mode: encoder
            keys/values once per user, see :class:`genrec.models.generative.cached_decoder.T5CachedDecoder`);
            False = the generic HF forward + cache.
        decoder_prefix: optional LongTensor ``(batch, P)`` of tokens the decoder has already emitted (after the
            start token; for decoder-only models, after the prompt), e.g. the codes of the items already in a
            session. ``-1`` entries are padding and are dropped, so rows may hold different lengths. The prefix
            is fed through the cached decoder once per user; the search then starts a new item at the catalog
            root, and ``scores`` exclude the prefix. Combine with ``banned_items`` to keep a session free of
            repeats.

    Returns:
        ``(items, scores)``: LongTensor ``(batch, top_k)`` of catalog rows, best first, -1 only where fewer
        than ``top_k`` items can be returned (small catalog, bans); float32 ``(batch, top_k)`` scores
        (cumulative log-probabilities, divided by the length penalty), ``-inf`` where ``items`` is -1.

    Raises:
        ValueError: bad argument shapes or values, or a model without a cache/decoder start token.
    """
    top_k = num_beams if top_k is None else top_k
    attention_mask = _validate(model, input_ids, attention_mask, num_beams, top_k, normalize)
    if not isinstance(catalog, Catalog):
        raise ValueError(f"`catalog` must be a genrec.decoding.Catalog, got {type(catalog).__name__}")
    device = input_ids.device
    if device.type == "cpu":
        warn_if_threads_may_spin()  # once per process: torch imported first, OpenMP threads may spin under load
    catalog = catalog.to(device)
    batch = input_ids.shape[0]
    step_fn = constrained_topk
    if use_kernel is False:
        step_fn = constrained_topk_reference
    elif use_kernel:
        from genrec.kernels.constrained_topk import constrained_topk_triton

        step_fn = constrained_topk_triton
    if decoder_prefix is not None:
        if not isinstance(decoder_prefix, torch.Tensor) or decoder_prefix.dim() != 2 or decoder_prefix.shape[0] != batch:
            shape = tuple(decoder_prefix.shape) if isinstance(decoder_prefix, torch.Tensor) else type(decoder_prefix)
            raise ValueError(f"`decoder_prefix` must be a LongTensor (batch={batch}, P), got {shape}")
        if decoder_prefix.dtype.is_floating_point or decoder_prefix.dtype == torch.bool:
            raise ValueError(f"`decoder_prefix` must hold integer token ids, got dtype {decoder_prefix.dtype}")
        if decoder_prefix.numel() and int(decoder_prefix.min()) < -1:
            raise ValueError(f"`decoder_prefix` holds {int(decoder_prefix.min())}; allowed: token ids >= 0 or -1 "
                             "(padding)")
        if decoder_prefix.numel() == 0 or not bool((decoder_prefix >= 0).any()):
            decoder_prefix = None  # nothing emitted yet: an ordinary search
    banned_leaves = None
    if banned_items is not None:
        if banned_items.shape[0] != batch:
            raise ValueError(f"`banned_items` has {banned_items.shape[0]} rows; `input_ids` has batch {batch}")
        banned_leaves = catalog.banned_leaves(banned_items)

    pool_scores = torch.full((batch, top_k), float("-inf"), device=device)
    pool_rank = torch.full((batch, top_k), float("-inf"), device=device)
    pool_items = torch.full((batch, top_k), -1, dtype=torch.long, device=device)
    beam_scores = torch.zeros((batch, 1), device=device)
    beam_nodes = torch.zeros((batch, 1), dtype=torch.long, device=device)
    user_rows = torch.arange(batch, device=device)[:, None]

    runner = _make_decoder(model, input_ids, attention_mask, decoder_start_token_id, fast_model_path,
                           decoder_prefix)
    with _OutputSlice(model, enabled=normalize == "catalog") as head:
        depth_count = catalog.max_length
        rows = tokens = None  # the beams' source rows and chosen tokens of the previous step (set at its end)
        for d in range(depth_count):
            lo, hi = catalog.token_lo[d], catalog.token_hi[d]
            head.range = (lo, hi)
            logits = runner.start() if d == 0 else runner.advance(tokens, rows)
            row_lse = None
            if normalize == "vocab":
                row_lse = torch.logsumexp(logits.float(), dim=-1)
            if not head.active:
                logits = logits[:, lo:hi]
            last = d == depth_count - 1
            step = step_fn(
                logits, beam_scores, beam_nodes, catalog.child_ptr[d], catalog.child_token[d],
                catalog.is_leaf[d + 1], token_lo=lo, max_children=catalog.max_children[d],
                num_beams=0 if last else num_beams, num_finished=top_k, row_lse=row_lse,
                banned_leaves=banned_leaves, child_leaf_lo=catalog.leaf_lo[d + 1],
                child_leaf_hi=catalog.leaf_hi[d + 1],
            )
            # merge this step's finished items into the per-user pool of the best top_k
            found = step.finished_child >= 0
            new_items = torch.where(
                found, catalog.leaf_item[catalog.leaf_lo[d + 1][step.finished_child.clamp(min=0)].long()].long(), -1
            )
            new_rank = step.finished_scores / float(d + 1) ** length_penalty if length_penalty else step.finished_scores
            all_rank = torch.cat([pool_rank, new_rank], 1)
            order = torch.sort(all_rank, dim=1, descending=True, stable=True).indices[:, :top_k]
            pool_rank = all_rank.gather(1, order)
            pool_items = torch.cat([pool_items, new_items], 1).gather(1, order)
            pool_scores = pool_rank
            if last:
                break
            alive = step.active_scores > float("-inf")  # (B, K)
            if not bool(alive.any()):
                break
            if length_penalty == 0.0 and bool(pool_items[:, -1].ge(0).all()):
                # log-probabilities are <= 0: no continuation can beat the pool's worst item any more
                if bool((step.active_scores.max(1).values <= pool_rank[:, -1]).all()):
                    break
            beams_in = beam_scores.shape[1]
            rows = (user_rows * beams_in + step.active_parent.clamp(min=0)).view(-1)
            tokens = torch.where(alive, catalog.child_token[d][step.active_child.clamp(min=0)].long(), lo).view(-1)
            beam_scores = step.active_scores
            beam_nodes = step.active_child.clamp(min=0)
    pool_items = torch.where(pool_scores > float("-inf"), pool_items, -1)
    return pool_items, pool_scores


@torch.no_grad()
def beam_search_unconstrained(
    model: nn.Module,
    *,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_beams: int = 10,
    top_k: int | None = None,
    max_new_tokens: int = 4,
    decoder_start_token_id: int | None = None,
    fast_model_path: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same cached beam search with no catalog: every vocabulary token may follow every prefix.

    The unconstrained twin of :func:`beam_search` (the benchmark's reference for the constraint's cost).
    Fixed length, no eos handling.

    Args:
        model, input_ids, attention_mask, num_beams, top_k, decoder_start_token_id, fast_model_path: see
            :func:`beam_search`.
        max_new_tokens: tokens generated per sequence.

    Returns:
        ``(sequences, scores)``: LongTensor ``(batch, top_k, max_new_tokens)`` and float32 ``(batch, top_k)``
        full-vocabulary log-probabilities, best first.
    """
    top_k = num_beams if top_k is None else top_k
    attention_mask = _validate(model, input_ids, attention_mask, num_beams, top_k, "vocab")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be an int >= 1, got {max_new_tokens!r}")
    batch = input_ids.shape[0]
    device = input_ids.device
    runner = _make_decoder(model, input_ids, attention_mask, decoder_start_token_id, fast_model_path)
    beam_scores = torch.zeros((batch, 1), device=device)
    sequences = torch.zeros((batch, 1, 0), dtype=torch.long, device=device)
    user_rows = torch.arange(batch, device=device)[:, None]
    rows = tokens = None  # the previous step's source rows and tokens (set at its end)
    for t in range(max_new_tokens):
        logits = runner.start() if t == 0 else runner.advance(tokens, rows)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B * K_in, V)
        vocab = log_probs.shape[-1]
        beams_in = beam_scores.shape[1]
        scores = (beam_scores[..., None] + log_probs.view(batch, beams_in, vocab)).view(batch, -1)
        width = top_k if t == max_new_tokens - 1 else num_beams
        beam_scores, flat = scores.topk(width, dim=1)
        parent, token = flat // vocab, flat % vocab
        sequences = torch.cat([sequences.gather(1, parent[..., None].expand(-1, -1, t)), token[..., None]], 2)
        rows = (user_rows * beams_in + parent).view(-1)
        tokens = token.view(-1)
    return sequences, beam_scores
