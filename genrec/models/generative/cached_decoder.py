"""The T5-specific fast decoder of genrec's beam search (:func:`genrec.decoding.beam_search`).

Used for every ``T5ForConditionalGeneration`` in eval mode (P5, OneRec and plain T5 alike); any other model gets
the generic HF-forward decoder of :mod:`genrec.decoding.beam_search`. Lives next to the T5 base because it
re-implements T5's decoder blocks step by step (tested against the HF forward).
"""

from __future__ import annotations

import torch
from torch import nn

from genrec.decoding.beam_search import with_decoder_prefix

__all__ = ["T5CachedDecoder"]


class T5CachedDecoder:
    """T5-family fast decoder: cross-attention keys/values once per user, never copied per beam.

    The generic ``genrec.decoding.beam_search._CachedDecoder`` must gather the cross-attention cache to ``batch * K`` rows, so every
    step reads K copies of each user's encoder keys/values (memory-bound on CPU). Here the decoder blocks of
    a ``T5ForConditionalGeneration`` run with the same modules and weights, but cross-attention treats a
    user's K beams as K queries against that user's single copy: ``(B, H, K, d) @ (B, H, d, S)``.
    Self-attention keeps a per-beam cache gathered by parent at every step (a few positions long). Step 0 feeds
    the start token + the decoder prefix (left-padded rows: T5's positions are relative, so padding placed before
    the start token and masked changes nothing). Numerically the same computation as the HF forward in eval mode
    (tested against it).
    """

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 decoder_start_token_id: int | None, decoder_prefix: torch.Tensor | None = None):
        self.model = model
        self.decoder = model.get_decoder()
        self.config = model.config
        start = decoder_start_token_id
        if start is None:
            start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
        if start is None:
            start = model.config.decoder_start_token_id
        if start is None:
            raise ValueError("`decoder_start_token_id` is None and the model's configs have none; pass one")
        self.decoder_start_token_id = int(start)
        encoder_states = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                             return_dict=True).last_hidden_state  # (B, S, d)
        batch, length, _ = encoder_states.shape
        self.cross_keys, self.cross_values = [], []
        for block in self.decoder.block:
            attention = block.layer[1].EncDecAttention
            heads, head_dim = attention.n_heads, attention.key_value_proj_dim
            self.cross_keys.append(attention.k(encoder_states).view(batch, length, heads, head_dim).transpose(1, 2))
            self.cross_values.append(attention.v(encoder_states).view(batch, length, heads, head_dim).transpose(1, 2))
        dtype = encoder_states.dtype
        # additive mask (B, 1, 1, S): padding positions of the history get the dtype's minimum
        self.cross_mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        self.self_keys: list[torch.Tensor | None] = [None] * len(self.decoder.block)
        self.self_values: list[torch.Tensor | None] = [None] * len(self.decoder.block)
        self.batch = batch
        self.length = 0  # decoder positions already cached
        starts = torch.full((batch, 1), self.decoder_start_token_id, dtype=torch.long, device=input_ids.device)
        self.start_tokens, mask = with_decoder_prefix(starts, torch.ones_like(starts), decoder_prefix)  # (B, T)
        # (rows, cached length) bool: which cached decoder positions are real (None: all of them)
        self.self_mask = None if bool(mask.all()) else mask.bool()

    @staticmethod
    def _attend(query, keys, values, bias, scaling, allowed=None):
        scores = torch.matmul(query, keys.transpose(-1, -2)) * scaling + bias
        if allowed is not None:  # masked_fill, not an additive mask: no overflow to -inf in half precision
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
        return torch.matmul(weights, values)

    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens`` (R, T) after the cached positions; returns the last position's logits (R, V')."""
        rows, steps = tokens.shape
        beams = rows // self.batch
        hidden = self.decoder.embed_tokens(tokens)  # (R, T, d)
        total = self.length + steps
        # relative position bias (1, H, T, total), owned by the first block
        position_bias = self.decoder.block[0].layer[0].SelfAttention.compute_bias(
            steps, total, device=hidden.device, past_seen_tokens=self.length).to(hidden.dtype)
        allowed = None  # (R or 1, 1, T, total) bool: causal within the new tokens, padding never a key
        if steps > 1:
            query_position = torch.arange(steps, device=hidden.device)[:, None] + self.length
            allowed = (torch.arange(total, device=hidden.device)[None, :] <= query_position)[None, None]
        if self.self_mask is not None:
            keys_ok = self.self_mask[:, None, None, :]  # (R, 1, 1, total)
            allowed = keys_ok if allowed is None else allowed & keys_ok
        for index, block in enumerate(self.decoder.block):
            self_attention = block.layer[0].SelfAttention
            heads, head_dim = self_attention.n_heads, self_attention.key_value_proj_dim
            normed = block.layer[0].layer_norm(hidden)
            query = self_attention.q(normed).view(rows, steps, heads, head_dim).transpose(1, 2)  # (R, H, T, dh)
            key = self_attention.k(normed).view(rows, steps, heads, head_dim).transpose(1, 2)
            value = self_attention.v(normed).view(rows, steps, heads, head_dim).transpose(1, 2)
            if self.self_keys[index] is not None:
                key = torch.cat([self.self_keys[index], key], dim=2)
                value = torch.cat([self.self_values[index], value], dim=2)
            self.self_keys[index], self.self_values[index] = key, value
            out = self._attend(query, key, value, position_bias, getattr(self_attention, "scaling", 1.0), allowed)
            hidden = hidden + self_attention.o(out.transpose(1, 2).reshape(rows, steps, heads * head_dim))
            # cross-attention: a user's beams (x T positions) are the queries against its one copy of the encoder
            cross = block.layer[1].EncDecAttention
            heads, head_dim = cross.n_heads, cross.key_value_proj_dim
            normed = block.layer[1].layer_norm(hidden)
            query = cross.q(normed).view(self.batch, beams * steps, heads, head_dim).transpose(1, 2)  # (B, H, K*T, dh)
            out = self._attend(query, self.cross_keys[index], self.cross_values[index], self.cross_mask,
                               getattr(cross, "scaling", 1.0))  # (B, H, K*T, dh)
            hidden = hidden + cross.o(out.transpose(1, 2).reshape(rows, steps, heads * head_dim))
            hidden = block.layer[2](hidden)  # T5LayerFF (or genrec's MoE layer): norm, feed-forward, residual
        hidden = self.decoder.final_layer_norm(hidden[:, -1:, :])
        if getattr(self.config, "tie_word_embeddings", False):
            hidden = hidden * (self.config.d_model**-0.5)  # T5 rescales before a tied LM head
        self.length = total
        return self.model.lm_head(hidden)[:, -1, :]

    def start(self) -> torch.Tensor:
        return self._forward(self.start_tokens)

    def advance(self, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        for index in range(len(self.self_keys)):
            self.self_keys[index] = self.self_keys[index].index_select(0, rows)
            self.self_values[index] = self.self_values[index].index_select(0, rows)
        if self.self_mask is not None:
            mask = self.self_mask.index_select(0, rows)
            self.self_mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
        return self._forward(tokens[:, None])
