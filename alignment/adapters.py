"""Per-token log-probabilities of genrec recommenders in the layout TRL's ``DPOTrainer`` reads.

TRL (>= 1.x) computes every DPO loss from ``model(input_ids=..., attention_mask=..., labels=..., fused_lm_head=True)``,
which must return a :class:`trl.trainer.utils.FusedCausalLMOutput` whose per-token fields (``log_probs``,
``entropy``, ``mean_logits``, ``is_top1``, ``log_sum_sq_probs``; shape ``(rows, seq - 1)``) score
``labels[:, 1:]``, i.e. the causal-LM shift. TRL installs that forward on causal LMs itself
(``trl.trainer.utils.add_fused_lm_head``); genrec's recommenders are not causal LMs, so this module provides the
same contract for them:

* **T5 family** (P5, OneRec; :class:`~genrec.models.generative.GenerativeT5Model`): ``input_ids`` is the *decoder*
  sequence ``[decoder_start, t_1, ..., t_L]`` of a session (the concatenated code tokens of its items) and
  ``context_input_ids`` the encoder tokens of the history. The decoder is causal, so ``decoder_input_ids =
  input_ids[:, :-1]`` gives at position ``j`` the distribution of ``t_{j+1}`` -- exactly TRL's shift.
  ``log p(session) = sum_j log p(t_j | history, t_<j)``.
* **RecGPT** (:class:`~genrec.models.recgpt.RecGPTForCausalLM`): one forward over the history gives the ``C``
  code distributions of the next item in parallel; ``input_ids = [0, code_0, ..., code_{C-1}]`` and
  ``log p(item) = sum_c log_softmax(logits[:, c])[code_c]``. Chosen and rejected share the history, so the
  history is encoded once and its logits reused for both.

The forward is installed on the model *instance* only inside :func:`genrec_fused_forward` (a context manager
that restores the previous ``forward`` on exit), so a model never keeps a patched forward after a loss
computation, and ``copy.deepcopy`` of a model stays safe.

Example:
    >>> with genrec_fused_forward(model):                       # doctest: +SKIP
    ...     out = model(input_ids=seq, attention_mask=mask, labels=labels, fused_lm_head=True,
    ...                 context_input_ids=history, context_attention_mask=history_mask)
    >>> out.log_probs.shape                                      # (rows, seq - 1)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn
from trl.trainer.utils import FusedCausalLMOutput

__all__ = ["MODEL_KINDS", "genrec_fused_forward", "model_kind", "per_token_outputs"]

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


def per_token_outputs(logits: torch.Tensor, labels: torch.Tensor,
                      aux_loss: torch.Tensor | None = None) -> FusedCausalLMOutput:
    """TRL's per-token fields from logits aligned with their labels.

    Args:
        logits: ``(rows, T, vocab)``; ``logits[:, j]`` is the distribution of ``labels[:, j]``.
        labels: ``(rows, T)`` token ids, ``-100`` = not scored.
        aux_loss: the forward's MoE auxiliary loss (scalar), passed through.

    Returns:
        :class:`~trl.trainer.utils.FusedCausalLMOutput`: ``log_probs`` (with gradient), ``entropy``,
        ``log_sum_sq_probs``, ``mean_logits``, ``is_top1`` (no gradient), all ``(rows, T)`` and 0 where the label is
        -100; ``loss`` = mean token NLL (+ ``aux_loss``).
    """
    mask = labels != -100
    safe_labels = labels.clamp(min=0)
    log_softmax = logits.float().log_softmax(-1)  # fp32: sums of many log-probs are compared across models
    log_probs = log_softmax.gather(-1, safe_labels[..., None]).squeeze(-1).masked_fill(~mask, 0.0)
    with torch.no_grad():
        entropy = -(log_softmax.exp() * log_softmax).sum(-1).masked_fill(~mask, 0.0)
        log_sum_sq_probs = torch.logsumexp(2.0 * log_softmax, dim=-1).masked_fill(~mask, 0.0)
        mean_logits = logits.float().mean(-1).masked_fill(~mask, 0.0)
        is_top1 = (logits.argmax(-1) == safe_labels) & mask
    loss = -log_probs.sum() / mask.sum().clamp(min=1)
    if aux_loss is not None:
        loss = loss + aux_loss
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq_probs,
                               mean_logits=mean_logits, is_top1=is_top1, label_mask=mask, aux_loss=aux_loss)


def _tile_rows(tensor: torch.Tensor, rows: int, name: str) -> torch.Tensor:
    """Repeat a ``(P, ...)`` context to ``rows = k * P`` rows in TRL's ``[chosen; rejected]`` order."""
    if tensor.shape[0] == rows:
        return tensor
    if tensor.shape[0] == 0 or rows % tensor.shape[0]:
        raise ValueError(f"`{name}` has {tensor.shape[0]} rows; the scored sequences have {rows} (must be a multiple)")
    return tensor.repeat(rows // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def _seq2seq_fused_forward(self, input_ids=None, attention_mask=None, labels=None, *, fused_lm_head=False,
                           context_input_ids=None, context_attention_mask=None, use_cache=None,
                           output_router_logits=None, **kwargs):
    """P5 / OneRec forward; with ``fused_lm_head=True`` the per-token fields of the decoder sequence ``input_ids``.

    Args (fused):
        input_ids: ``(rows, 1 + L)`` decoder sequences ``[decoder_start, t_1..t_L]`` (right-padded).
        attention_mask: ``(rows, 1 + L)``; labels: ``(rows, 1 + L)``, -100 outside the scored tokens.
        context_input_ids / context_attention_mask: ``(P, S)`` encoder tokens, ``rows = k * P``.
    """
    if not fused_lm_head:
        if use_cache is not None:
            kwargs["use_cache"] = use_cache
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
    if context_input_ids is None:
        raise ValueError("the fused genrec forward needs `context_input_ids` (the encoder tokens of the history)")
    rows = input_ids.shape[0]
    context = _tile_rows(context_input_ids, rows, "context_input_ids")
    context_mask = None if context_attention_mask is None else _tile_rows(
        context_attention_mask, rows, "context_attention_mask")
    decoder_mask = None if attention_mask is None else attention_mask[:, :-1]
    out = type(self).forward(self, input_ids=context, attention_mask=context_mask, decoder_input_ids=input_ids[:, :-1],
                             decoder_attention_mask=decoder_mask, use_cache=False)
    return per_token_outputs(out.logits, labels[:, 1:], aux_loss=out.aux_loss)


def _recgpt_fused_forward(self, input_ids=None, attention_mask=None, labels=None, *, fused_lm_head=False,
                          context_input_ids=None, context_attention_mask=None, use_cache=None,
                          output_router_logits=None, **kwargs):
    """RecGPT forward; with ``fused_lm_head=True`` the per-code fields of the next item ``labels[:, 1:]``.

    Args (fused):
        input_ids / attention_mask / labels: ``(rows, 1 + C)``; ``labels[:, 1:]`` are the item's C codes.
        context_input_ids: ``(P, n)`` left-padded history rows + 1; context_attention_mask ``(P, n)``.
    """
    if not fused_lm_head:
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
    if context_input_ids is None:
        raise ValueError("the fused genrec forward needs `context_input_ids` (the history's catalog rows + 1)")
    rows = input_ids.shape[0]
    out = type(self).forward(self, input_ids=context_input_ids, attention_mask=context_attention_mask)
    logits = _tile_rows(out.logits, rows, "context_input_ids")  # (rows, C, K): one history pass for both
    return per_token_outputs(logits, labels[:, 1:], aux_loss=out.aux_loss)


_FUSED_FORWARDS = {"seq2seq": _seq2seq_fused_forward, "parallel-codes": _recgpt_fused_forward}
_MISSING = object()


@contextlib.contextmanager
def genrec_fused_forward(*models: nn.Module | None) -> Iterator[None]:
    """Give each genrec model (None entries skipped) the fused forward for the duration of the block.

    Re-entrant: a model that already has it is left alone. On exit each model gets back exactly the instance
    ``forward`` it had (none, or e.g. one TRL installed).

    Raises:
        TypeError: a model that is neither P5/OneRec nor RecGPT.
    """
    restore = []
    try:
        for model in models:
            if model is None:
                continue
            fused = _FUSED_FORWARDS[model_kind(model)]
            current = model.__dict__.get("forward", _MISSING)
            if getattr(current, "__func__", None) is fused:
                continue
            restore.append((model, current))
            model.forward = types.MethodType(fused, model)
        yield
    finally:
        for model, previous in reversed(restore):
            if previous is _MISSING:
                model.__dict__.pop("forward", None)
            else:
                model.forward = previous
