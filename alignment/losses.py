"""Preference losses over sequence log-probabilities: every ``trl.DPOConfig.loss_type``, written out once.

:class:`~genrec.alignment.dpo.GenRecDPOTrainer` (P5 / OneRec / RecGPT) computes its DPO objective here, configured
by the same ``DPOConfig`` fields TRL reads (``loss_type`` list + ``loss_weights``, ``beta``, ``label_smoothing``,
``f_divergence_type`` / ``f_alpha_divergence_coef``, ``discopop_tau``, ``ld_alpha``, ``use_weighting``), so a preset
means the same thing for BIGRec (TRL's own ``DPOTrainer``) and for genrec's models. The formulas follow the papers
and TRL 1.x's definitions (the per-loss comments name the paper); the tests check each against a hand computation.

Notation per preference pair: ``c = log pi(chosen) - log ref(chosen)``, ``r = log pi(rejected) - log ref(rejected)``
(the log-ratios), ``delta = f(c) - f(r)`` with ``f`` the f-divergence score (identity for reverse KL = DPO).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "F_DIVERGENCE_LOSS_TYPES",
    "F_DIVERGENCE_TYPES",
    "PREFERENCE_LOSS_TYPES",
    "check_preference_args",
    "preference_loss",
    "sequence_log_probs",
]

PREFERENCE_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                         "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
F_DIVERGENCE_TYPES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# the loss types built on the chosen-rejected score difference (the only ones with an f-divergence generalisation)
F_DIVERGENCE_LOSS_TYPES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft")


def check_preference_args(args: Any) -> tuple[list[str], list[float]]:
    """Validate the loss fields of a ``DPOConfig``; return ``(loss_types, loss_weights)``.

    Raises:
        ValueError: an unknown loss or f-divergence type, mismatched weights, or an out-of-range value (named).
    """
    loss_types = [args.loss_type] if isinstance(args.loss_type, str) else list(args.loss_type)
    if not loss_types:
        raise ValueError(f"`loss_type` must name at least one of {list(PREFERENCE_LOSS_TYPES)}")
    unknown = [name for name in loss_types if name not in PREFERENCE_LOSS_TYPES]
    if unknown:
        raise ValueError(f"`loss_type` {unknown} unknown; allowed: {list(PREFERENCE_LOSS_TYPES)}")
    weights = [1.0] * len(loss_types) if args.loss_weights is None else [float(w) for w in args.loss_weights]
    if len(weights) != len(loss_types):
        raise ValueError(f"`loss_weights` ({args.loss_weights}) must have one weight per `loss_type` ({loss_types})")
    if args.f_divergence_type not in F_DIVERGENCE_TYPES:
        raise ValueError(f"`f_divergence_type` ({args.f_divergence_type!r}) must be one of {list(F_DIVERGENCE_TYPES)}")
    if args.f_divergence_type != "reverse_kl":
        bad = [name for name in loss_types if name not in F_DIVERGENCE_LOSS_TYPES]
        if bad:
            raise ValueError(f"`f_divergence_type` ({args.f_divergence_type!r}) is only defined for loss types "
                             f"{list(F_DIVERGENCE_LOSS_TYPES)}; got {bad}")
    if not args.beta > 0:
        raise ValueError(f"`beta` ({args.beta}) must be > 0")
    if "robust" in loss_types and not 0 <= args.label_smoothing < 0.5:
        raise ValueError(f"`label_smoothing` ({args.label_smoothing}) must be in [0, 0.5) for loss_type 'robust'")
    if "exo_pair" in loss_types and not 0 < args.label_smoothing < 1:
        raise ValueError(f"`label_smoothing` ({args.label_smoothing}) must be in (0, 1) for loss_type 'exo_pair' "
                         "(the paper's epsilon, e.g. 1e-3)")
    if args.ld_alpha is not None and not 0 <= args.ld_alpha <= 1:
        raise ValueError(f"`ld_alpha` ({args.ld_alpha}) must be in [0, 1] or None")
    return loss_types, weights


def sequence_log_probs(token_log_probs: torch.Tensor, mask: torch.Tensor, ld_alpha: float | None = None
                       ) -> torch.Tensor:
    """``log p(sequence)`` = sum of its tokens' log-probabilities; LD-DPO down-weights the tokens past the shorter
    sequence of each pair by ``ld_alpha``.

    Args:
        token_log_probs: ``(2P, T)`` in ``[chosen; rejected]`` order, 0 outside ``mask``.
        mask: ``(2P, T)`` bool, the scored tokens (a prefix of each row, as the collator pads on the right).
        ld_alpha: None = plain sum.

    Returns:
        ``(2P,)``.
    """
    if ld_alpha is None:
        return token_log_probs.sum(-1)
    position = mask.long().cumsum(-1)  # (2P, T): 1-based index of each scored token
    chosen_lengths, rejected_lengths = mask.sum(-1).chunk(2)
    shared = torch.minimum(chosen_lengths, rejected_lengths).repeat(2)[:, None]  # (2P, 1)
    shared_mask = mask & (position <= shared)
    tail_mask = mask & (position > shared)
    return (token_log_probs * shared_mask).sum(-1) + ld_alpha * (token_log_probs * tail_mask).sum(-1)


def _scores(logratios: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """f'(exp(logratio)) of the f-DPO paper (Wang et al. 2023); reverse KL = the log-ratio itself (DPO)."""
    if kind == "reverse_kl" or (kind == "alpha_divergence" and abs(alpha - 1.0) < 1e-6):
        return logratios
    if kind == "forward_kl":  # f'(t) = 1 - 1/t
        return 1 - torch.exp(-logratios)
    if kind == "js_divergence":  # f'(t) = log(2t / (t + 1))
        return math.log(2) + F.logsigmoid(logratios)
    # alpha divergence: f'(t) = (t^(alpha - 1) - 1) / (alpha - 1), exponent clamped to stay finite
    exponent = torch.clamp((alpha - 1.0) * logratios.float(), max=80.0)
    return ((torch.exp(exponent) - 1.0) / (alpha - 1.0)).to(logratios.dtype)


def preference_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    loss_types: Sequence[str],
    loss_weights: Sequence[float],
    beta: float,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    chosen_token_log_probs: torch.Tensor | None = None,
    chosen_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    discopop_tau: float = 0.05,
    pair_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_k loss_weights[k] * mean over pairs of loss_k`` (a scalar).

    Args:
        chosen_logps / rejected_logps / ref_chosen_logps / ref_rejected_logps: ``(P,)`` sequence log-probabilities.
        loss_types / loss_weights: from :func:`check_preference_args`.
        beta: the DPO temperature (IPO's tau).
        chosen_lengths / rejected_lengths: ``(P,)`` scored tokens per sequence (IPO and ``sigmoid_norm`` average
            per token).
        chosen_token_log_probs / chosen_mask: ``(P, T)`` policy token log-probabilities of the chosen sequences and
            their mask (``sft`` only: mean token NLL of the chosen sequences).
        label_smoothing: robust DPO's flip probability / EXO's epsilon / AOT's smoothing.
        f_divergence_type / f_alpha_divergence_coef: the regulariser (f-DPO).
        discopop_tau: DiscoPOP's temperature.
        pair_weights: ``(P,)`` WPO weights multiplying every per-pair loss (``use_weighting``), or None.
    """
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    chosen_scores = _scores(chosen_logratios, f_divergence_type, f_alpha_divergence_coef)
    rejected_scores = _scores(rejected_logratios, f_divergence_type, f_alpha_divergence_coef)
    delta = chosen_scores - rejected_scores
    eps = label_smoothing
    total = chosen_logps.new_zeros(())
    for loss_type, weight in zip(loss_types, loss_weights, strict=True):
        if loss_type == "sigmoid":  # DPO (Rafailov et al. 2023)
            losses = -F.logsigmoid(beta * delta)
        elif loss_type == "hinge":  # SLiC (Zhao et al. 2023)
            losses = torch.relu(1 - beta * delta)
        elif loss_type == "ipo":  # IPO eq. 17 (Azar et al. 2023), log-ratios averaged per token
            per_token = chosen_scores / chosen_lengths.clamp(min=1) - rejected_scores / rejected_lengths.clamp(min=1)
            losses = (per_token - 1 / (2 * beta)) ** 2
        elif loss_type == "exo_pair":  # EXO eq. 16 (Ji et al. 2024): KL(softmax(beta * scores) || [1 - eps, eps])
            losses = (torch.sigmoid(beta * delta) * (F.logsigmoid(beta * delta) - math.log1p(-eps))
                      + torch.sigmoid(-beta * delta) * (F.logsigmoid(-beta * delta) - math.log(eps)))
        elif loss_type == "nca_pair":  # NCA (Chen et al. 2024)
            losses = (-F.logsigmoid(beta * chosen_logratios) - 0.5 * F.logsigmoid(-beta * chosen_logratios)
                      - 0.5 * F.logsigmoid(-beta * rejected_logratios))
        elif loss_type == "robust":  # robust DPO (Chowdhury et al. 2024): unbiased under flipped labels
            losses = ((1 - eps) * -F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
        elif loss_type == "bco_pair":  # BCO on pairs (Jung et al. 2024), no running reward shift
            losses = -F.logsigmoid(beta * chosen_logratios) - F.logsigmoid(-beta * rejected_logratios)
        elif loss_type == "sppo_hard":  # SPPO eq. 4.7 with hard win probabilities (Wu et al. 2024)
            losses = (chosen_logratios - 0.5 / beta) ** 2 + (rejected_logratios + 0.5 / beta) ** 2
        elif loss_type in ("aot", "aot_unpaired"):  # AOT (Melnyk et al. 2024): sorted distributions over the batch
            if loss_type == "aot":
                sorted_delta = (torch.sort(chosen_logps - rejected_logps).values
                                - torch.sort(ref_chosen_logps - ref_rejected_logps).values)
            else:
                sorted_delta = torch.sort(chosen_logratios).values - torch.sort(rejected_logratios).values
            losses = (-F.logsigmoid(beta * sorted_delta) * (1 - eps) - F.logsigmoid(-beta * sorted_delta) * eps)
        elif loss_type == "apo_zero":  # APO-zero eq. 7 (D'Oosterlinck et al. 2024)
            losses = (1 - torch.sigmoid(beta * chosen_logratios)) + torch.sigmoid(beta * rejected_logratios)
        elif loss_type == "apo_down":  # APO-down eq. 8
            losses = torch.sigmoid(beta * chosen_logratios) + (
                1 - torch.sigmoid(beta * (chosen_logratios - rejected_logratios)))
        elif loss_type == "discopop":  # DiscoPOP eq. 5 (Chris Lu et al. 2024): log-ratio modulated loss
            logits = beta * delta
            modulation = torch.sigmoid(logits / discopop_tau)
            losses = -F.logsigmoid(logits) * (1 - modulation) + torch.exp(-logits) * modulation
        elif loss_type == "sft":  # mean token NLL of the chosen sequences (RPO / MPO mixes)
            if chosen_token_log_probs is None or chosen_mask is None:
                raise ValueError("loss_type 'sft' needs `chosen_token_log_probs` and `chosen_mask`")
            losses = (-chosen_token_log_probs[chosen_mask].mean()).expand(chosen_logps.shape[0])
        elif loss_type == "sigmoid_norm":  # DPO on per-token averaged scores
            per_token = chosen_scores / chosen_lengths.clamp(min=1) - rejected_scores / rejected_lengths.clamp(min=1)
            losses = -F.logsigmoid(beta * per_token)
        else:
            raise ValueError(f"`loss_type` {loss_type!r} unknown; allowed: {list(PREFERENCE_LOSS_TYPES)}")
        if pair_weights is not None:  # WPO eq. 2 (Zhou et al. 2024)
            losses = losses * pair_weights
        total = total + losses.mean() * weight
    return total
