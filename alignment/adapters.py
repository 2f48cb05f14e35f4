"""Per-token log-probabilities of a preference batch under a genrec recommender (P5, OneRec, RecGPT).

DPO needs ``log p(session | history)`` of the chosen and rejected sessions under the policy and the reference.
genrec's recommenders are not causal LMs over one token stream, so this module computes those per-token
log-probabilities from each model's *own* ``forward`` (no patched forward, no library internals):

* **T5 family** (P5, OneRec; :class:`~genrec.models.generative.GenerativeT5Model`): ``input_ids`` is the *decoder*
  sequence ``[decoder_start, t_1, ..., t_L]`` of a session (the concatenated code tokens of its items) and
  ``context_input_ids`` the encoder tokens of the history. The decoder is causal, so ``decoder_input_ids =
  input_ids[:, :-1]`` gives at position ``j`` the distribution of ``t_{j+1}``:
  ``log p(session) = sum_j log p(t_j | history, t_<j)``.
* **RecGPT** (:class:`~genrec.models.recgpt.RecGPTForCausalLM`): one forward over the history gives the ``C``
  code distributions of the next item in parallel; ``input_ids = [0, code_0, ..., code_{C-1}]`` and
  ``log p(item) = sum_c log_softmax(logits[:, c])[code_c]``. Chosen and rejected share the history, so the
  history is encoded once and its logits reused for both.

Example:
    >>> out = preference_token_log_probs(model, "seq2seq", batch)     # doctest: +SKIP
    >>> out.log_probs.shape                                              # (2P, L)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MODEL_KINDS", "TokenLogProbs", "model_kind", "preference_token_log_probs", "token_log_probs"]

# the model registry's kinds (genrec.models.registry.KINDS) this adapter serves
MODEL_KINDS = ("seq2seq", "parallel-codes")


def model_kind(model: nn.Module) -> str:
    """The registry kind of ``model``: ``"seq2seq"`` for P5/OneRec, ``"parallel-codes"`` for RecGPT.

    Raises:
        TypeError: any other model (BIGRec, kind ``"text-lm"``, goes through TRL's own causal-LM path).
    """
    from genrec.models.registry import record_of

    try:
        kind = record_of(model).kind
    except ValueError:
        kind = None
    if kind not in MODEL_KINDS:
        raise TypeError(f"genrec's DPO adapter supports P5 / OneRec and RecGPT (registry kinds {list(MODEL_KINDS)}), "
                        f"got {type(model).__name__}")
    return kind


@dataclass
class TokenLogProbs:
    """Per-token scores of scored sequences (all ``(rows, T)``, 0 where ``mask`` is False).

    Args:
        log_probs: ``log p(token)`` (with gradient).
        mask: bool, the scored tokens.
        log_sum_sq_probs: ``log sum_v p(v)^2`` per position (no gradient; WPO weighting).
        mean_logits: mean logit over the vocabulary per position (no gradient; logged).
        aux_loss: the forward's MoE auxiliary loss (scalar; 0 for dense models).
    """

    log_probs: torch.Tensor
    mask: torch.Tensor
    log_sum_sq_probs: torch.Tensor
    mean_logits: torch.Tensor
    aux_loss: torch.Tensor


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor, aux_loss: torch.Tensor | None = None) -> TokenLogProbs:
    """Per-token fields from logits aligned with their labels.

    Args:
        logits: ``(rows, T, vocab)``; ``logits[:, j]`` is the distribution of ``labels[:, j]``.
        labels: ``(rows, T)`` token ids, ``-100`` = not scored.
        aux_loss: the forward's MoE auxiliary loss (scalar) or None (-> 0).
    """
    mask = labels != -100
    safe_labels = labels.clamp(min=0)
    log_softmax = logits.float().log_softmax(-1)  # fp32: sums of many log-probs are compared across models
    log_probs = log_softmax.gather(-1, safe_labels[..., None]).squeeze(-1).masked_fill(~mask, 0.0)
    with torch.no_grad():
        log_sum_sq_probs = torch.logsumexp(2.0 * log_softmax, dim=-1).masked_fill(~mask, 0.0)
        mean_logits = logits.float().mean(-1).masked_fill(~mask, 0.0)
    if aux_loss is None:
        aux_loss = log_probs.new_zeros(())
    return TokenLogProbs(log_probs=log_probs, mask=mask, log_sum_sq_probs=log_sum_sq_probs, mean_logits=mean_logits,
                         aux_loss=aux_loss)


def _tile_rows(tensor: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """Repeat a ``(P, ...)`` context to ``rows = k * P`` rows in the ``[chosen; rejected]`` order."""
    if tensor.shape[0] == rows:
        return tensor
    if tensor.shape[0] == 0 or rows % tensor.shape[0]:
        raise ValueError(f"`{name}` has {tensor.shape[0]} rows; the scored sequences have {rows} (must be a multiple)")
    return tensor.repeat(rows // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def preference_token_log_probs(model: nn.Module, kind: str, batch: dict[str, torch.Tensor]) -> TokenLogProbs:
    """Per-token log-probabilities of the batch's scored sequences (one forward of ``model``).

    Args:
        model: a P5 / OneRec (``kind="seq2seq"``) or RecGPT (``kind="parallel-codes"``) model, possibly wrapped (DDP).
        kind: :func:`model_kind` of the unwrapped model.
        batch: :class:`~genrec.alignment.dpo.GenRecPreferenceCollator` keys: ``input_ids`` / ``attention_mask`` /
            ``completion_mask`` ``(rows, 1 + L)`` (``[start] + tokens``), ``context_input_ids`` /
            ``context_attention_mask`` ``(P, S)`` with ``rows = k * P``.

    Returns:
        :class:`TokenLogProbs` of ``input_ids[:, 1:]`` where ``completion_mask[:, 1:]`` is set, ``(rows, L)``.
    """
    input_ids, completion = batch["input_ids"], batch["completion_mask"]
    labels = input_ids.masked_fill(completion == 0, -100)[:, 1:]  # (rows, L)
    rows = input_ids.shape[0]
    if kind == "seq2seq":
        context = _tile_rows(batch["context_input_ids"], rows, "context_input_ids")
        context_mask = _tile_rows(batch["context_attention_mask"], rows, "context_attention_mask")
        out = model(input_ids=context, attention_mask=context_mask, decoder_input_ids=input_ids[:, :-1],
                    decoder_attention_mask=batch["attention_mask"][:, :-1], use_cache=False)
        logits = out.logits  # (rows, L, vocab)
    elif kind == "parallel-codes":
        out = model(input_ids=batch["context_input_ids"], attention_mask=batch["context_attention_mask"])
        logits = _tile_rows(out.logits, rows, "context_input_ids")  # (rows, C, K): one history pass for both
    else:
        raise ValueError(f"`kind` ({kind!r}) must be one of {list(MODEL_KINDS)}")
    return token_log_probs(logits, labels, aux_loss=getattr(out, "aux_loss", None))
