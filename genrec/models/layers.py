"""Shared building blocks for the genrec models: a dense feed-forward block and a sparse MoE block.

Every model (P5, RecGPT, BIGRec, OneRec) builds its feed-forward layers from this file, so switching a layer
between dense and sparse is a config flag: both blocks take ``(hidden_states, attention_mask=None)`` and return a
:class:`MoeBlockOutput` (the dense block reports zero auxiliary losses).

The sparse block (:class:`SparseMoeBlock`):

* routes each token with a softmax router to its top-k experts, or, with ``top_p``, to the smallest set of most
  probable experts whose probability mass reaches ``p`` ("Harder Tasks Need More Experts: Dynamic Routing in MoE
  Models", Huang et al. 2024), capped at ``max_experts_per_tok``;
* keeps expert weights stacked, ``(num_experts, hidden, intermediate)``, and dispatches with one grouped matrix
  multiply per projection: the (token, expert) assignments are sorted by expert, the token rows gathered in that
  order, multiplied by ``torch.nn.functional.grouped_mm`` against the stacked weights, and summed back per token with
  ``index_add``. There is no Python loop over tokens (nor over experts, except in the exact fallback used where
  grouped_mm cannot run: float64, or row strides that are not multiples of 16 bytes);
* drops no token by default; with ``capacity_factor`` each expert keeps at most
  ``ceil(capacity_factor * assignments / num_experts)`` assignments, in a deterministic order (all first choices
  before all second choices, then token order), and a dropped assignment contributes nothing to its token;
* optionally adds shared experts (always active, DeepSeek-MoE / Qwen2-MoE style, with an optional sigmoid gate);
* returns the load-balancing loss (Switch Transformer / Qwen2-MoE), the router z-loss (ST-MoE) and optionally the
  router entropy (the "dynamic loss" that keeps top-p routing sharp), their weighted sum ``aux_loss``, and per-expert
  load statistics for logging. Padding positions (``attention_mask == 0``) are not routed and count nowhere.

Example:
    >>> import torch
    >>> from genrec.models.layers import SparseMoeBlock
    >>> block = SparseMoeBlock(hidden_size=32, intermediate_size=64, num_experts=4, num_experts_per_tok=2)
    >>> out = block(torch.randn(2, 5, 32))
    >>> out.hidden_states.shape, out.expert_load.shape
    (torch.Size([2, 5, 32]), torch.Size([4]))
    >>> loss = out.hidden_states.pow(2).mean() + out.aux_loss  # aux_loss is already weighted
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from transformers import initialization as hf_init
from transformers.utils import ModelOutput

from genrec.utils.checks import check_int, is_int

__all__ = [
    "MoeBlockOutput",
    "FeedForwardBlock",
    "SparseMoeBlock",
    "load_balancing_loss",
    "router_z_loss",
    "router_entropy",
    "MOE_LOG_KEYS",
    "MoeStatistics",
    "count_active_parameters",
    "EXPERT_IMPLEMENTATIONS",
]

EXPERT_IMPLEMENTATIONS = ("auto", "grouped_mm", "loop")


# ----------------------------------------------------------------------------------------------------------------
# Outputs and losses
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MoeBlockOutput(ModelOutput):
    """What a feed-forward block (dense or sparse) returns.

    Attributes:
        hidden_states (`torch.FloatTensor` (batch, seq, hidden)): the block output (no residual added).
        aux_loss (`torch.FloatTensor` scalar): ``router_aux_loss_coef * load_balancing_loss + router_z_loss_coef *
            z_loss + router_entropy_loss_coef * router_entropy``; add it to the training loss (or average it over
            layers). Zero for dense blocks, whose routing fields are None.
        load_balancing_loss (`torch.FloatTensor` scalar): unweighted ``num_experts * sum_e f_e * P_e`` (1.0 when
            perfectly balanced).
        z_loss (`torch.FloatTensor` scalar): unweighted ``mean(logsumexp(router_logits) ** 2)``.
        router_entropy (`torch.FloatTensor` scalar): mean entropy (nats) of the router distribution.
        router_logits (`torch.FloatTensor` (batch * seq, num_experts)): router logits of every position, padding
            included (None for dense blocks).
        expert_load (`torch.FloatTensor` (num_experts,)): fraction of the routed (token, expert) assignments that
            went to each expert, before capacity dropping; sums to 1 (all zeros when no token is routed). Detached.
        expert_counts (`torch.LongTensor` (num_experts,)): the same as assignment counts (before dropping).
        tokens_dropped (`torch.LongTensor` scalar): number of (token, expert) assignments dropped by the capacity
            limit (0 without ``capacity_factor``).
        experts_per_token (`torch.FloatTensor` scalar): mean number of experts per routed token (k for top-k;
            varies with top-p). Detached.
    """

    hidden_states: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    load_balancing_loss: torch.FloatTensor | None = None
    z_loss: torch.FloatTensor | None = None
    router_entropy: torch.FloatTensor | None = None
    router_logits: torch.FloatTensor | None = None
    expert_load: torch.FloatTensor | None = None
    expert_counts: torch.LongTensor | None = None
    tokens_dropped: torch.LongTensor | None = None
    experts_per_token: torch.FloatTensor | None = None


def _flat_token_mask(
    attention_mask: torch.Tensor | None, leading_shape: tuple[int, ...], device
) -> torch.Tensor | None:
    """(batch, seq) attention mask -> (batch * seq,) bool, or None when every position is real."""
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != tuple(leading_shape):
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)}; expected {tuple(leading_shape)} "
            "(the leading dimensions of the hidden states, 1 = real token, 0 = padding)"
        )
    return attention_mask.reshape(-1).to(device=device, dtype=torch.bool)


def load_balancing_loss(
    router_logits: torch.Tensor,
    selected_experts: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch-Transformer / Qwen2-MoE load-balancing loss: ``num_experts * sum_e f_e * P_e``.

    ``f_e`` is the fraction of the (token, expert) assignments that go to expert ``e`` (it sums to 1, so a perfectly
    balanced router scores 1.0 for any k), ``P_e`` the mean router probability of expert ``e``. Only ``P`` carries
    gradient. Transformers' ``load_balancing_loss_func`` counts ``f`` per token instead (it sums to k), so its value
    is k times ours for top-k routing.

    Args:
        router_logits (`torch.Tensor` (..., num_experts)): router logits.
        selected_experts (`torch.LongTensor` (..., k)): chosen expert ids per token; negative ids mark unused slots
            (variable-count top-p routing).
        attention_mask (`torch.Tensor` (...), optional): 1 for real tokens, 0 for padding (not counted).

    Returns:
        `torch.Tensor`: scalar float32 loss (0 when no token is counted).
    """
    num_experts = router_logits.shape[-1]
    logits = router_logits.reshape(-1, num_experts).float()
    selected = selected_experts.reshape(logits.shape[0], -1)
    if selected.shape[0] != logits.shape[0]:
        raise ValueError(
            f"`selected_experts` has shape {tuple(selected_experts.shape)}; expected the leading dimensions of "
            f"`router_logits` {tuple(router_logits.shape[:-1])} plus k"
        )
    probs = logits.softmax(dim=-1)  # (N, E)
    valid = selected >= 0  # (N, k)
    if attention_mask is not None:
        token_mask = _flat_token_mask(attention_mask, tuple(router_logits.shape[:-1]), logits.device)
        valid = valid & token_mask[:, None]
        probs = probs[token_mask]
    counts = torch.zeros(num_experts, device=logits.device, dtype=torch.float32)
    counts.index_add_(0, selected[valid], torch.ones_like(selected[valid], dtype=torch.float32))
    return _load_balancing_from_counts(probs, counts)


def _load_balancing_from_counts(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``E * sum_e (counts_e / sum counts) * mean_tokens(probs)_e`` for (n_tokens, E) probs of the counted tokens."""
    num_experts = probs.shape[-1]
    if probs.shape[0] == 0:
        return probs.sum() * 0.0  # keeps the graph connected and the value finite
    fraction = counts.float() / counts.sum().clamp(min=1)  # f_e, no gradient
    mean_prob = probs.mean(dim=0)  # P_e
    return num_experts * torch.sum(fraction * mean_prob)


def router_z_loss(router_logits: torch.Tensor, *, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ST-MoE router z-loss ``mean(logsumexp(router_logits) ** 2)``: keeps the router logits small.

    Args:
        router_logits (`torch.Tensor` (..., num_experts)): router logits.
        attention_mask (`torch.Tensor` (...), optional): 1 for real tokens, 0 for padding (not counted).

    Returns:
        `torch.Tensor`: scalar float32 loss (0 when no token is counted).
    """
    num_experts = router_logits.shape[-1]
    log_z = torch.logsumexp(router_logits.reshape(-1, num_experts).float(), dim=-1)  # (N,)
    if attention_mask is not None:
        log_z = log_z[_flat_token_mask(attention_mask, tuple(router_logits.shape[:-1]), log_z.device)]
    if log_z.numel() == 0:
        return log_z.sum() * 0.0
    return log_z.pow(2).mean()


def router_entropy(router_logits: torch.Tensor, *, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean entropy (nats) of the router distribution, the "dynamic loss" of top-p routing (Huang et al. 2024).

    Minimising it stops a top-p router from spreading its mass evenly to activate (too) many experts.

    Args:
        router_logits (`torch.Tensor` (..., num_experts)): router logits.
        attention_mask (`torch.Tensor` (...), optional): 1 for real tokens, 0 for padding (not counted).

    Returns:
        `torch.Tensor`: scalar float32 (0 when no token is counted).
    """
    num_experts = router_logits.shape[-1]
    log_probs = router_logits.reshape(-1, num_experts).float().log_softmax(dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)  # (N,)
    if attention_mask is not None:
        entropy = entropy[_flat_token_mask(attention_mask, tuple(router_logits.shape[:-1]), entropy.device)]
    if entropy.numel() == 0:
        return entropy.sum() * 0.0
    return entropy.mean()


# ----------------------------------------------------------------------------------------------------------------
# Dense feed-forward
# ----------------------------------------------------------------------------------------------------------------


class _MLP(nn.Module):
    """Plain (or SwiGLU-style gated) two-layer MLP on (..., hidden) tensors."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, gated: bool, bias: bool) -> None:
        super().__init__()
        self.gated = gated
        # gate and up fused into one matmul: one GEMM of width 2*I is faster than two of width I.
        self.up_proj = nn.Linear(hidden_size, (2 if gated else 1) * intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = _activations()[hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        projected = self.up_proj(hidden_states)  # (..., (2)I)
        if self.gated:
            gate, up = projected.chunk(2, dim=-1)
            projected = self.act_fn(gate) * up
        else:
            projected = self.act_fn(projected)
        return self.down_proj(projected)  # (..., H)


def _activations():
    """transformers' ``ACT2FN`` table, imported on first use: ``transformers.activations`` loads transformers'
    modeling stack (kernels hub, accelerate, torch.distributed; ~5 CPU-s), which importing this module must not."""
    from transformers.activations import ACT2FN

    return ACT2FN


def _check_act(hidden_act: str) -> None:
    activations = _activations()
    if hidden_act not in activations:
        raise ValueError(f"`hidden_act` ({hidden_act!r}) is not supported; choose one of {sorted(activations)}")


def _zero_outputs(reference: torch.Tensor) -> dict:
    zero = reference.new_zeros((), dtype=torch.float32)
    return {"aux_loss": zero, "load_balancing_loss": zero, "z_loss": zero, "router_entropy": zero}


class FeedForwardBlock(nn.Module):
    """Dense feed-forward block with the same interface as :class:`SparseMoeBlock` (aux losses are zero).

    Args:
        hidden_size (`int`): model width H.
        intermediate_size (`int`): inner width I.
        hidden_act (`str`, defaults to "silu"): activation name from ``transformers.activations.ACT2FN``.
        gated (`bool`, defaults to True): SwiGLU-style ``down(act(gate(x)) * up(x))``; False: ``down(act(up(x)))``.
        bias (`bool`, defaults to False): biases on the projections.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        intermediate_size: int,
        hidden_act: str = "silu",
        gated: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_int("hidden_size", hidden_size, 1)
        check_int("intermediate_size", intermediate_size, 1)
        _check_act(hidden_act)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.mlp = _MLP(hidden_size, intermediate_size, hidden_act, gated, bias)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> MoeBlockOutput:
        """Args: hidden_states (batch, seq, H); attention_mask ignored (kept for interface parity).

        Returns:
            :class:`MoeBlockOutput` with ``hidden_states`` (batch, seq, H) and zero losses; routing fields None.
        """
        return MoeBlockOutput(hidden_states=self.mlp(hidden_states), **_zero_outputs(hidden_states))


# ----------------------------------------------------------------------------------------------------------------
# Grouped expert matmul
# ----------------------------------------------------------------------------------------------------------------


def _grouped_mm_ok(inputs: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``F.grouped_mm`` can multiply (S, K) rows by (E, K, N) weights here (else the exact loop runs)."""
    if not hasattr(F, "grouped_mm"):
        return False
    if inputs.dtype != weight.dtype:
        return False
    if inputs.device.type == "cpu":
        if inputs.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return False
    elif inputs.device.type == "cuda":
        # The CUDA kernel takes bf16 only (SM80+); fp32 / fp16 training on GPU uses the loop.
        if inputs.dtype != torch.bfloat16 or torch.cuda.get_device_capability(inputs.device) < (8, 0):
            return False
    else:
        return False
    size = inputs.element_size()
    for tensor in (inputs, weight):
        if tensor.data_ptr() % 16:
            return False
        if any(stride != 1 and (stride * size) % 16 for stride in tensor.stride()):
            return False
    # the output rows (width N) and the backward's transposed operands need 16-byte rows as well
    return (weight.shape[-1] * size) % 16 == 0 and (weight.shape[-2] * size) % 16 == 0


def _expert_matmul_loop(inputs: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Rows of ``inputs`` (S, K), sorted by expert with ``counts`` (E,) rows each, times their expert's (K, N) weight.

    The exact fallback (float64, odd sizes, ``expert_implementation="loop"``): one matmul per expert over its
    contiguous slice, through plain autograd. A loop over experts, never over tokens. Returns (S, N).
    """
    pieces = [
        rows @ weight[expert] for expert, rows in enumerate(inputs.split(counts.tolist(), dim=0)) if rows.shape[0]
    ]
    if not pieces:
        return inputs.new_zeros(0, weight.shape[-1])
    return torch.cat(pieces, dim=0)


class _GroupedExpertsFunction(torch.autograd.Function):
    """gather -> grouped up-projection -> (gated) activation -> grouped down-projection -> weight -> scatter-add.

    One autograd node for the whole routed path, with a hand-written backward: it saves only what the backward
    reads (expert inputs, up-projection, activations, unweighted outputs), writes the gate and up gradients
    straight into one buffer (autograd's ``chunk`` backward would ``cat`` them) and runs the weight gradients as 2D
    grouped matmuls. Parity with the autograd loop path is tested on outputs and every gradient. First-order
    gradients only (no ``create_graph`` double backward).
    """

    @staticmethod
    def forward(ctx, tokens, sorted_tokens, weights, gate_up, down, offsets, act_fn, gated):
        # tokens (N, H); sorted_tokens (S,) grouped by expert; weights (S,); gate_up (E, H, (2)I); down (E, I, H)
        expert_inputs = tokens.index_select(0, sorted_tokens)  # (S, H)
        projected = F.grouped_mm(expert_inputs, gate_up, offs=offsets)  # (S, (2)I)
        if gated:
            gate, up = projected.chunk(2, dim=-1)
            activated = act_fn(gate) * up  # (S, I)
        else:
            activated = act_fn(projected)
        outputs = F.grouped_mm(activated, down, offs=offsets)  # (S, H), unweighted
        routed = tokens.new_zeros(tokens.shape).index_add_(0, sorted_tokens, outputs * weights[:, None])
        ctx.save_for_backward(
            sorted_tokens, weights, gate_up, down, offsets, expert_inputs, projected, activated, outputs
        )
        ctx.act_fn, ctx.gated, ctx.num_tokens = act_fn, gated, tokens.shape[0]
        return routed

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_routed):
        sorted_tokens, weights, gate_up, down, offsets, expert_inputs, projected, activated, outputs = ctx.saved_tensors
        grad_outputs = grad_routed.index_select(0, sorted_tokens)  # (S, H), d loss / d (weight * output)
        grad_weights = None
        if ctx.needs_input_grad[2]:
            grad_weights = (grad_outputs * outputs).sum(dim=-1)  # (S,)
        grad_outputs.mul_(weights[:, None])  # d loss / d output
        grad_down = F.grouped_mm(activated.t(), grad_outputs, offs=offsets)  # (E, I, H)
        grad_activated = F.grouped_mm(grad_outputs, down.transpose(1, 2), offs=offsets)  # (S, I)
        grad_projected = torch.empty_like(projected)  # (S, (2)I)
        with torch.enable_grad():
            if ctx.gated:
                width = projected.shape[-1] // 2
                gate = projected[:, :width].detach().requires_grad_(True)
                act_gate = ctx.act_fn(gate)
                torch.mul(grad_activated, act_gate.detach(), out=grad_projected[:, width:])  # d up
                up = projected[:, width:]
                (grad_gate,) = torch.autograd.grad(act_gate, gate, grad_activated * up)
                grad_projected[:, :width] = grad_gate
            else:
                pre = projected.detach().requires_grad_(True)
                (grad_pre,) = torch.autograd.grad(ctx.act_fn(pre), pre, grad_activated)
                grad_projected.copy_(grad_pre)
        grad_gate_up = F.grouped_mm(expert_inputs.t(), grad_projected, offs=offsets)  # (E, H, (2)I)
        grad_tokens = None
        if ctx.needs_input_grad[0]:
            grad_inputs = F.grouped_mm(grad_projected, gate_up.transpose(1, 2), offs=offsets)  # (S, H)
            grad_tokens = grad_routed.new_zeros(ctx.num_tokens, grad_routed.shape[-1])
            grad_tokens.index_add_(0, sorted_tokens, grad_inputs)
        return grad_tokens, None, grad_weights, grad_gate_up, grad_down, None, None, None


# ----------------------------------------------------------------------------------------------------------------
# Sparse MoE
# ----------------------------------------------------------------------------------------------------------------


class SparseMoeBlock(nn.Module):
    """Sparse mixture-of-experts feed-forward block with top-k or dynamic top-p routing.

    Args:
        hidden_size (`int`): model width H.
        intermediate_size (`int`): inner width I of each routed expert.
        num_experts (`int`): number of routed experts E (>= 1).
        num_experts_per_tok (`int`, defaults to 2): k of top-k routing (ignored with ``top_p``).
        top_p (`float`, optional): dynamic routing: per token take experts by decreasing probability until their
            mass reaches ``top_p`` (at least 1, at most ``max_experts_per_tok``). In (0, 1].
        max_experts_per_tok (`int`, optional): cap for top-p routing; defaults to ``num_experts``.
        num_shared_experts (`int`, defaults to 0): always-active experts, fused into one dense MLP of width
            ``num_shared_experts * shared_expert_intermediate_size``.
        shared_expert_intermediate_size (`int`, optional): width of each shared expert; defaults to
            ``intermediate_size``. Only valid with ``num_shared_experts > 0``.
        shared_expert_gate (`bool`, defaults to False): scale the shared output by ``sigmoid(w . x)`` (Qwen2-MoE).
        hidden_act (`str`, defaults to "silu"): activation from ``transformers.activations.ACT2FN``.
        gated (`bool`, defaults to True): SwiGLU experts ``down(act(gate x) * up x)``; False: ``down(act(up x))``.
        norm_topk_prob (`bool`, defaults to True): renormalise the chosen experts' probabilities to sum to 1
            (Mixtral); False keeps the raw softmax probabilities (Qwen2-MoE default).
        router_aux_loss_coef (`float`, defaults to 0.01): weight of the load-balancing loss in ``aux_loss``.
        router_z_loss_coef (`float`, defaults to 0.001): weight of the router z-loss in ``aux_loss``.
        router_entropy_loss_coef (`float`, defaults to 0.0): weight of the router entropy in ``aux_loss``.
        capacity_factor (`float`, optional): None = no token dropping. Else each expert processes at most
            ``ceil(capacity_factor * assignments / num_experts)`` (token, expert) assignments; the rest are dropped
            (they add nothing to their token), keeping first choices before second choices, then token order.
        router_jitter (`float`, defaults to 0.0): in training, multiply the router's input by
            ``uniform(1 - jitter, 1 + jitter)`` noise (Switch Transformer); the experts see the clean input.
        expert_implementation (`str`, defaults to "auto"): "grouped_mm" (``torch.nn.functional.grouped_mm``),
            "loop" (exact per-expert matmuls over sorted slices), or "auto" (grouped_mm where it can run).

    Raises:
        ValueError: an argument is out of range (the message names it, its value and what is allowed).
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        intermediate_size: int,
        num_experts: int,
        num_experts_per_tok: int = 2,
        top_p: float | None = None,
        max_experts_per_tok: int | None = None,
        num_shared_experts: int = 0,
        shared_expert_intermediate_size: int | None = None,
        shared_expert_gate: bool = False,
        hidden_act: str = "silu",
        gated: bool = True,
        norm_topk_prob: bool = True,
        router_aux_loss_coef: float = 0.01,
        router_z_loss_coef: float = 0.001,
        router_entropy_loss_coef: float = 0.0,
        capacity_factor: float | None = None,
        router_jitter: float = 0.0,
        expert_implementation: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (
            ("hidden_size", hidden_size),
            ("intermediate_size", intermediate_size),
            ("num_experts", num_experts),
            ("num_experts_per_tok", num_experts_per_tok),
        ):
            check_int(name, value, 1)
        if num_experts_per_tok > num_experts:
            raise ValueError(f"`num_experts_per_tok` ({num_experts_per_tok}) must be <= `num_experts` ({num_experts})")
        if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
            raise ValueError(f"`top_p` ({top_p!r}) must be None or a float in (0, 1]")
        if max_experts_per_tok is not None:
            if top_p is None:
                raise ValueError(
                    f"`max_experts_per_tok` ({max_experts_per_tok}) only applies to top-p routing; set `top_p` or "
                    "leave it None"
                )
            check_int("max_experts_per_tok", max_experts_per_tok, 1)
            if max_experts_per_tok > num_experts:
                raise ValueError(
                    f"`max_experts_per_tok` ({max_experts_per_tok}) must be <= `num_experts` ({num_experts})"
                )
        if not is_int(num_shared_experts) or num_shared_experts < 0:
            raise ValueError(f"`num_shared_experts` ({num_shared_experts!r}) must be an int >= 0")
        if shared_expert_intermediate_size is not None:
            if num_shared_experts == 0:
                raise ValueError(
                    f"`shared_expert_intermediate_size` ({shared_expert_intermediate_size}) needs "
                    "`num_shared_experts` >= 1 (it is 0)"
                )
            check_int("shared_expert_intermediate_size", shared_expert_intermediate_size, 1)
        if shared_expert_gate and num_shared_experts == 0:
            raise ValueError("`shared_expert_gate` (True) needs `num_shared_experts` >= 1 (it is 0)")
        _check_act(hidden_act)
        for name, value in (
            ("router_aux_loss_coef", router_aux_loss_coef),
            ("router_z_loss_coef", router_z_loss_coef),
            ("router_entropy_loss_coef", router_entropy_loss_coef),
        ):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` ({value!r}) must be a finite float >= 0")
        if capacity_factor is not None and not (
            isinstance(capacity_factor, (int, float)) and math.isfinite(capacity_factor) and capacity_factor > 0
        ):
            raise ValueError(f"`capacity_factor` ({capacity_factor!r}) must be None (no dropping) or a float > 0")
        if not isinstance(router_jitter, (int, float)) or not 0.0 <= router_jitter < 1.0:
            raise ValueError(f"`router_jitter` ({router_jitter!r}) must be a float in [0, 1)")
        if expert_implementation not in EXPERT_IMPLEMENTATIONS:
            raise ValueError(
                f"`expert_implementation` ({expert_implementation!r}) must be one of {list(EXPERT_IMPLEMENTATIONS)}"
            )

        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.top_p = None if top_p is None else float(top_p)
        self.max_experts_per_tok = (max_experts_per_tok or num_experts) if top_p is not None else num_experts_per_tok
        self.gated = gated
        self.norm_topk_prob = norm_topk_prob
        self.router_aux_loss_coef = float(router_aux_loss_coef)
        self.router_z_loss_coef = float(router_z_loss_coef)
        self.router_entropy_loss_coef = float(router_entropy_loss_coef)
        self.capacity_factor = None if capacity_factor is None else float(capacity_factor)
        self.router_jitter = float(router_jitter)
        self.expert_implementation = expert_implementation
        self.act_fn = _activations()[hidden_act]

        self.router = nn.Linear(hidden_size, num_experts, bias=False)
        # Stacked expert weights, laid out (E, in, out) so grouped_mm multiplies rows by them without a transpose.
        # For gated experts the gate and up projections are fused: columns [:I] gate, [I:] up.
        up_width = (2 if gated else 1) * intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, hidden_size, up_width))
        self.down_proj = nn.Parameter(torch.empty(num_experts, intermediate_size, hidden_size))
        self.shared_experts = None
        self.shared_expert_gate = None
        if num_shared_experts:
            shared_width = num_shared_experts * (shared_expert_intermediate_size or intermediate_size)
            self.shared_experts = _MLP(hidden_size, shared_width, hidden_act, gated, bias=False)
            if shared_expert_gate:
                self.shared_expert_gate = nn.Linear(hidden_size, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear-style init (uniform in +-1/sqrt(fan_in)) for the stacked expert weights; router likewise."""
        with torch.no_grad():
            bound_up = 1.0 / math.sqrt(self.hidden_size)
            bound_down = 1.0 / math.sqrt(self.intermediate_size)
            self.gate_up_proj.uniform_(-bound_up, bound_up)
            self.down_proj.uniform_(-bound_down, bound_down)
        self.router.reset_parameters()

    def init_weights(self, std: float) -> None:
        """Normal(0, std) init for a ``PreTrainedModel._init_weights`` hook.

        Uses ``transformers.initialization`` so weights already loaded by ``from_pretrained`` are left alone. The
        router and shared-expert ``nn.Linear`` layers are also covered by transformers' default ``_init_weights``.
        """
        for parameter in (self.gate_up_proj, self.down_proj, self.router.weight):
            hf_init.normal_(parameter, mean=0.0, std=std)
        if self.shared_experts is not None:
            hf_init.normal_(self.shared_experts.up_proj.weight, mean=0.0, std=std)
            hf_init.normal_(self.shared_experts.down_proj.weight, mean=0.0, std=std)
        if self.shared_expert_gate is not None:
            hf_init.normal_(self.shared_expert_gate.weight, mean=0.0, std=std)

    def extra_repr(self) -> str:
        routing = f"top_p={self.top_p}, max_experts_per_tok={self.max_experts_per_tok}" if self.top_p is not None else (
            f"top_k={self.num_experts_per_tok}"
        )
        return (
            f"hidden_size={self.hidden_size}, intermediate_size={self.intermediate_size}, "
            f"num_experts={self.num_experts}, {routing}, capacity_factor={self.capacity_factor}"
        )

    # -- routing ---------------------------------------------------------------------------------------------

    def route(self, router_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Choose experts from (N, E) float32 router probabilities.

        Returns:
            weights (`torch.FloatTensor` (N, K)): combine weight per slot (0 for unused slots),
            experts (`torch.LongTensor` (N, K)): expert id per slot, best first,
            selected (`torch.BoolTensor` (N, K)): which slots are used (all True for top-k),
            with K = ``num_experts_per_tok`` (top-k) or ``max_experts_per_tok`` (top-p).
        """
        top_probs, experts = torch.topk(router_probs, self.max_experts_per_tok, dim=-1)  # (N, K), descending
        if self.top_p is None:
            selected = torch.ones_like(experts, dtype=torch.bool)
            weights = top_probs
        else:
            # Keep expert j while the mass of the better experts before it is still below p: the smallest prefix
            # whose mass reaches p, and always the best expert.
            mass_before = torch.cumsum(top_probs, dim=-1) - top_probs
            selected = mass_before < self.top_p
            selected[:, 0] = True
            weights = top_probs * selected
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, experts, selected

    def _capacity(self, num_assignments: int) -> int:
        return max(1, math.ceil(self.capacity_factor * num_assignments / self.num_experts))

    # -- forward ---------------------------------------------------------------------------------------------

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> MoeBlockOutput:
        """Route every real token to its experts and combine their outputs.

        Args:
            hidden_states (`torch.Tensor` (batch, seq, H)): input (any number of leading dims works).
            attention_mask (`torch.Tensor` (batch, seq), optional): 1 = real token, 0 = padding. Padding positions
                are not routed (their routed output is 0; shared experts still run on them) and count in no loss or
                statistic.

        Returns:
            :class:`MoeBlockOutput`.
        """
        if hidden_states.dim() < 2 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"`hidden_states` has shape {tuple(hidden_states.shape)}; expected (batch, seq, {self.hidden_size})"
            )
        leading_shape = tuple(hidden_states.shape[:-1])
        tokens = hidden_states.reshape(-1, self.hidden_size)  # (N, H)
        num_tokens = tokens.shape[0]
        token_mask = _flat_token_mask(attention_mask, leading_shape, tokens.device)  # (N,) or None

        router_input = tokens
        if self.training and self.router_jitter > 0:
            noise = torch.empty_like(tokens).uniform_(1.0 - self.router_jitter, 1.0 + self.router_jitter)
            router_input = tokens * noise
        router_logits = self.router(router_input)  # (N, E)
        # Routing in float32: bf16 softmax ties and rounding would make top-k unstable. One log_softmax serves the
        # probabilities, the z-loss (logsumexp = logit - log_prob) and the entropy.
        logits32 = router_logits.to(torch.promote_types(router_logits.dtype, torch.float32))  # fp32, or fp64
        log_probs = logits32.log_softmax(dim=-1)  # (N, E)
        router_probs = log_probs.exp()  # (N, E)
        weights, experts, selected = self.route(router_probs)  # (N, K) each
        if token_mask is not None:
            selected = selected & token_mask[:, None]

        # Assignments in rank-major order (every token's first choice, then every second choice, ...): the stable
        # sort by expert below keeps this order inside each expert, which is the capacity-dropping priority.
        num_slots = experts.shape[1]
        expert_ids = experts.t().reshape(-1)  # (K * N,)
        token_ids = torch.arange(num_tokens, device=tokens.device).repeat(num_slots)  # (K * N,)
        slot_weights = weights.t().reshape(-1)  # (K * N,)
        if not bool(selected.all()):
            keep = selected.t().reshape(-1).nonzero().squeeze(1)
            expert_ids, token_ids, slot_weights = expert_ids[keep], token_ids[keep], slot_weights[keep]

        counts = torch.bincount(expert_ids, minlength=self.num_experts)  # (E,) before dropping
        sorted_experts, order = torch.sort(expert_ids, stable=True)
        tokens_dropped = counts.new_zeros(())
        processed_counts = counts
        if self.capacity_factor is not None and expert_ids.numel():
            capacity = self._capacity(expert_ids.numel())
            starts = torch.cumsum(counts, 0) - counts  # first sorted position of each expert
            position = torch.arange(order.numel(), device=order.device) - starts[sorted_experts]
            within = position < capacity
            processed_counts = counts.clamp(max=capacity)
            tokens_dropped = (~within).sum()
            if not bool(within.all()):
                order = order[within]

        sorted_tokens = token_ids[order]  # (S,)
        if sorted_tokens.numel():
            routed = self._run_experts(tokens, sorted_tokens, slot_weights[order], processed_counts)  # (N, H)
        else:
            routed = tokens.new_zeros(num_tokens, self.hidden_size)

        if self.shared_experts is not None:
            shared = self.shared_experts(tokens)  # (N, H)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(tokens)) * shared
            routed = routed + shared

        # Losses and statistics over real tokens only.
        counted_probs = router_probs if token_mask is None else router_probs[token_mask]
        counted_log_probs = log_probs if token_mask is None else log_probs[token_mask]
        counted_logits = logits32 if token_mask is None else logits32[token_mask]
        num_routed_tokens = counted_probs.shape[0]
        balance = _load_balancing_from_counts(counted_probs, counts)
        # A loss whose weight is 0 is still reported, but kept out of the autograd graph (its backward is not free).
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.router_z_loss_coef > 0):
            log_z = counted_logits[:, 0] - counted_log_probs[:, 0]  # logsumexp of each row, (n,)
            z_loss = log_z.pow(2).sum() / max(num_routed_tokens, 1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.router_entropy_loss_coef > 0):
            entropy = -(counted_probs * counted_log_probs).sum() / max(num_routed_tokens, 1)
        aux_loss = (
            self.router_aux_loss_coef * balance
            + self.router_z_loss_coef * z_loss
            + self.router_entropy_loss_coef * entropy
        )
        num_assignments = counts.sum()
        return MoeBlockOutput(
            hidden_states=routed.reshape(*leading_shape, self.hidden_size),
            aux_loss=aux_loss,
            load_balancing_loss=balance,
            z_loss=z_loss,
            router_entropy=entropy,
            router_logits=router_logits,
            expert_load=(counts.float() / num_assignments.clamp(min=1)).detach(),
            expert_counts=counts,
            tokens_dropped=tokens_dropped,
            experts_per_token=(num_assignments.float() / max(num_routed_tokens, 1)).detach(),
        )

    def _run_experts(
        self, tokens: torch.Tensor, sorted_tokens: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """Weighted sum of expert outputs per token.

        Args:
            tokens: (N, H) all tokens. sorted_tokens: (S,) token row of each processed assignment, grouped by expert
            (``counts`` (E,) rows each). weights: (S,) combine weight of each assignment.

        Returns:
            (N, H): ``sum over a token's assignments of weight * expert(token)`` (0 for unrouted tokens).
        """
        gate_up = self.gate_up_proj.to(tokens.dtype)
        down = self.down_proj.to(tokens.dtype)
        weights = weights.to(tokens.dtype)
        if self.expert_implementation == "loop":
            use_grouped = False
        else:
            probe = tokens.new_empty(1, self.hidden_size)  # the kernel reads fresh gathered rows, never `tokens`
            use_grouped = _grouped_mm_ok(probe, gate_up) and _grouped_mm_ok(probe, down)
            if self.expert_implementation == "grouped_mm" and not use_grouped:
                raise ValueError(
                    "`expert_implementation` ('grouped_mm') cannot run here: torch.nn.functional.grouped_mm needs "
                    "float32/bf16/fp16 on CPU (bf16 on CUDA) and sizes whose rows are multiples of 16 bytes; got "
                    f"dtype {tokens.dtype}, hidden {self.hidden_size}, intermediate {self.intermediate_size}. "
                    "Use 'auto' or 'loop'."
                )
        if use_grouped:
            offsets = torch.cumsum(counts, 0, dtype=torch.int32)
            return _GroupedExpertsFunction.apply(
                tokens.contiguous(), sorted_tokens, weights, gate_up, down, offsets, self.act_fn, self.gated
            )
        # Exact fallback through autograd: one matmul per expert over its contiguous slice of the sorted rows.
        expert_inputs = tokens.index_select(0, sorted_tokens)  # (S, H), grouped by expert
        projected = _expert_matmul_loop(expert_inputs, gate_up, counts)  # (S, (2)I)
        if self.gated:
            gate, up = projected.chunk(2, dim=-1)
            activated = self.act_fn(gate) * up
        else:
            activated = self.act_fn(projected)
        outputs = _expert_matmul_loop(activated, down, counts) * weights[:, None]  # (S, H)
        return tokens.new_zeros(tokens.shape).index_add(0, sorted_tokens, outputs)  # (N, H)


# ----------------------------------------------------------------------------------------------------------------
# The one MoE logging schema (every model with SparseMoeBlock layers logs these keys)
# ----------------------------------------------------------------------------------------------------------------

MOE_LOG_KEYS = (
    "moe/aux_loss",
    "moe/load_balancing_loss",
    "moe/z_loss",
    "moe/router_entropy",
    "moe/experts_per_token",
    "moe/dropped_fraction",
    "moe/load_max",
    "moe/load_min",
    "moe/load_cv",
)


class MoeStatistics:
    """Running statistics of a model's :class:`SparseMoeBlock` layers between two logging steps.

    :meth:`attach` hooks every sparse block of a model (any model: P5, OneRec, RecGPT, ...), so the statistics come
    from the blocks' own router outputs (:class:`MoeBlockOutput`) and no model has to collect them. Only forwards
    in training mode count. :meth:`pop` returns genrec's one MoE log schema and resets; layer ``i`` is the ``i``-th
    sparse block in ``model.modules()`` order (for T5 models: encoder layers, then decoder layers).

    Keys (all floats; averaged over the forwards since the last :meth:`pop`):

    * ``moe/aux_loss``: the weighted router losses added to the training loss (sum over the sparse layers, as the
      models add them);
    * ``moe/load_balancing_loss``, ``moe/z_loss``, ``moe/router_entropy``, ``moe/experts_per_token``: unweighted,
      mean over the sparse layers (the balancing loss is 1.0 when perfectly balanced);
    * ``moe/dropped_fraction``: share of the (token, expert) assignments dropped by ``capacity_factor`` (0 without);
    * ``moe/load_max`` / ``moe/load_min``: the most / least loaded (layer, expert) as ``load * num_experts``
      (1.0 = its fair share), ``moe/load_cv``: coefficient of variation of the loads (mean over layers);
    * ``moe/load/layer{i}/expert{j}``: share of layer ``i``'s assignments routed to expert ``j`` (sums to 1 per
      layer that routed any token).

    Example:
        >>> block = SparseMoeBlock(hidden_size=8, intermediate_size=16, num_experts=4, num_experts_per_tok=2)
        >>> statistics = MoeStatistics.attach(block)
        >>> _ = block(torch.randn(2, 3, 8))
        >>> sorted(statistics.pop())[:3]
        ['moe/aux_loss', 'moe/dropped_fraction', 'moe/experts_per_token']
    """

    def __init__(self) -> None:
        self._layers: dict[int, dict[str, torch.Tensor | int]] = {}
        self._handles: list = []

    @classmethod
    def attach(cls, model: nn.Module) -> "MoeStatistics":
        """Record every :class:`SparseMoeBlock` of ``model`` (none: :meth:`pop` stays empty); :meth:`detach` undoes."""
        statistics = cls()
        blocks = [module for module in model.modules() if isinstance(module, SparseMoeBlock)]
        for layer, block in enumerate(blocks):
            def hook(module, args, output, layer=layer):
                if module.training:
                    statistics.update(layer, output)

            statistics._handles.append(block.register_forward_hook(hook))
        return statistics

    @property
    def num_layers(self) -> int:
        """Number of hooked sparse blocks."""
        return len(self._handles)

    def detach(self) -> None:
        """Remove the hooks :meth:`attach` installed."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def update(self, layer: int, output: MoeBlockOutput) -> None:
        """Add one forward of sparse layer ``layer`` (tensors stay on their device: no synchronisation here)."""
        if output.expert_counts is None:  # a dense block: nothing to record
            return
        values = {
            "aux_loss": output.aux_loss.detach().float(),
            "load_balancing_loss": output.load_balancing_loss.detach().float(),
            "z_loss": output.z_loss.detach().float(),
            "router_entropy": output.router_entropy.detach().float(),
            "experts_per_token": output.experts_per_token.detach().float(),
            "expert_counts": output.expert_counts.detach().double(),
            "tokens_dropped": output.tokens_dropped.detach().double(),
        }
        totals = self._layers.get(layer)
        if totals is None:
            self._layers[layer] = {**values, "forwards": 1}
            return
        for key, value in values.items():
            totals[key] = totals[key] + value
        totals["forwards"] += 1

    def pop(self) -> dict[str, float]:
        """The schema above for the forwards since the last call, then reset; ``{}`` when none was recorded."""
        layers, self._layers = self._layers, {}
        if not layers:
            return {}
        means = {layer: {key: float(value) / totals["forwards"] for key, value in totals.items()
                         if key not in ("forwards", "expert_counts", "tokens_dropped")}
                 for layer, totals in layers.items()}
        count = len(layers)
        metrics = {"moe/aux_loss": sum(mean["aux_loss"] for mean in means.values())}
        for key in ("load_balancing_loss", "z_loss", "router_entropy", "experts_per_token"):
            metrics[f"moe/{key}"] = sum(mean[key] for mean in means.values()) / count
        assignments = sum(float(totals["expert_counts"].sum()) for totals in layers.values())
        dropped = sum(float(totals["tokens_dropped"]) for totals in layers.values())
        metrics["moe/dropped_fraction"] = dropped / assignments if assignments else 0.0
        relative, cvs, per_expert = [], [], {}
        for layer in sorted(layers):
            counts = layers[layer]["expert_counts"].cpu()  # (E,)
            total = float(counts.sum())
            load = counts / total if total else torch.zeros_like(counts)
            for expert, value in enumerate(load.tolist()):
                per_expert[f"moe/load/layer{layer}/expert{expert}"] = value
            if total:
                scaled = load * load.numel()  # 1.0 = the expert's fair share
                relative.append(scaled)
                cvs.append(float(scaled.std(unbiased=False)))
        metrics["moe/load_max"] = max(float(scaled.max()) for scaled in relative) if relative else 0.0
        metrics["moe/load_min"] = min(float(scaled.min()) for scaled in relative) if relative else 0.0
        metrics["moe/load_cv"] = sum(cvs) / len(cvs) if cvs else 0.0
        return {**metrics, **per_expert}


def count_active_parameters(model: nn.Module) -> int:
    """Parameters one token runs through: every parameter, minus the routed experts it is not sent to.

    Per :class:`SparseMoeBlock`, ``(E - k) / E`` of the routed expert weights are inactive, with ``k`` =
    ``num_experts_per_tok`` (top-k routing) or ``max_experts_per_tok`` (top-p routing: an upper bound, tokens may
    use fewer). Router and shared experts are always active. A dense model gives its parameter count.
    """
    total = sum(parameter.numel() for parameter in model.parameters())
    for module in model.modules():
        if isinstance(module, SparseMoeBlock):
            routed = module.gate_up_proj.numel() + module.down_proj.numel()
            used = module.max_experts_per_tok if module.top_p is not None else module.num_experts_per_tok
            total -= routed * (module.num_experts - min(used, module.num_experts)) // module.num_experts
    return total
