"""Shared tiny models and brute-force references for the decoding tests."""

from __future__ import annotations

import functools

import torch
from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

VOCAB = 48  # ids 0..2 special (pad/start=0, eos=1), codes from 3


@functools.lru_cache(maxsize=None)
def tiny_t5(vocab: int = VOCAB) -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(vocab_size=vocab, d_model=16, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                      d_kv=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # larger logits so rankings are well separated
        model.lm_head.weight.mul_(8.0)
    return model


@functools.lru_cache(maxsize=None)
def tiny_llama(vocab: int = VOCAB) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, bos_token_id=2,
                         eos_token_id=1, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


@torch.no_grad()
def teacher_forced_log_probs(model, input_ids, attention_mask, sequences, prefixes=None):
    """Full-vocabulary log-probs ``(batch, num_seq, L, V)`` of each sequence's tokens under ``model``.

    sequences: LongTensor (num_seq, L) padded with -1 (replaced by 0 when fed; ignored by callers).
    prefixes: optional per-batch-row token lists the decoder has already emitted before each sequence (after the
    start token, or after the prompt for decoder-only models); fed unpadded, one row at a time.
    """
    batch = input_ids.shape[0]
    num_seq, length = sequences.shape
    fed = sequences.clamp(min=0)
    out = []
    for b in range(batch):
        prefix = torch.tensor(list(prefixes[b]) if prefixes is not None else [], dtype=torch.long)
        prefix = prefix[None, :].expand(num_seq, -1)
        ids = input_ids[b : b + 1].expand(num_seq, -1)
        mask = attention_mask[b : b + 1].expand(num_seq, -1)
        if model.config.is_encoder_decoder:
            decoder_input = torch.cat([torch.zeros((num_seq, 1), dtype=torch.long), prefix, fed[:, :-1]], 1)
            logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input).logits
            logits = logits[:, prefix.shape[1]:]
        else:
            full = torch.cat([ids, prefix, fed[:, :-1]], 1)
            full_mask = torch.cat([mask, torch.ones((num_seq, prefix.shape[1] + length - 1), dtype=mask.dtype)], 1)
            positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=full, attention_mask=full_mask, position_ids=positions).logits
            logits = logits[:, ids.shape[1] + prefix.shape[1] - 1 :]
        out.append(torch.log_softmax(logits.float(), -1))
    return torch.stack(out)


def brute_force(model, input_ids, attention_mask, sequences, normalize="catalog", banned=None, prefixes=None):
    """Exhaustive constrained scores ``(batch, num_items)`` of every catalog sequence (-inf where banned).

    sequences: list of token lists (row i = item i). Catalog normalisation renormalises each step over the
    distinct next tokens among the items sharing the prefix. prefixes: see :func:`teacher_forced_log_probs`.
    """
    length = max(len(s) for s in sequences)
    padded = torch.full((len(sequences), length), -1, dtype=torch.long)
    for i, s in enumerate(sequences):
        padded[i, : len(s)] = torch.tensor(s)
    log_probs = teacher_forced_log_probs(model, input_ids, attention_mask, padded, prefixes)
    scores = torch.zeros((input_ids.shape[0], len(sequences)))
    for i, seq in enumerate(sequences):
        for d, token in enumerate(seq):
            step = log_probs[:, i, d]  # (batch, V)
            if normalize == "catalog":
                children = sorted({s[d] for s in sequences if len(s) > d and list(s[:d]) == list(seq[:d])})
                step = step[:, children].log_softmax(-1)[:, children.index(token)]
            else:
                step = step[:, token]
            scores[:, i] += step
    if banned is not None:
        scores = scores.masked_fill(banned, float("-inf"))
    # duplicates: only the smallest row of a repeated sequence can be returned
    seen = {}
    for i, seq in enumerate(sequences):
        if tuple(seq) in seen:
            scores[:, i] = float("-inf")
        seen.setdefault(tuple(seq), i)
    return scores
