"""One constrained beam-search step: mask to catalog children, log-softmax, top-k per user across beams.

For each user ``b`` and each of its beams ``k`` (a trie node at depth ``d`` with cumulative score
``beam_scores[b, k]``), the candidates are the node's children in the catalog trie (CSR segment
``child_ptr[node] .. child_ptr[node+1]-1``); a child's log-probability is its token's logit minus a
log-sum-exp, taken over the node's children (``row_lse=None``: the model's distribution renormalised to the
catalog) or given per row (``row_lse``: the model's full-vocabulary distribution, as HF beam search scores).
Children whose items are all banned for the user are dropped. The step returns, per user, the best
``num_beams`` candidates that continue (not leaves) and the best ``num_finished`` that complete an item
(leaves), each sorted best first; ties go to the lower ``(beam, child)`` position.

Files follow the genrec kernel layout: ``_constrained_topk_kernel`` (Triton), ``constrained_topk_triton``
(launcher), ``constrained_topk_reference`` (torch; runs anywhere) and ``constrained_topk`` (dispatcher:
Triton for CUDA tensors when Triton is installed, the reference otherwise). Triton is imported lazily, so
this module imports on machines without it; set ``TRITON_INTERPRET=1`` before the first call to run the
kernel on CPU tensors through Triton's interpreter.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

__all__ = [
    "ConstrainedTopK",
    "constrained_topk",
    "constrained_topk_reference",
    "constrained_topk_triton",
    "triton_available",
]


class ConstrainedTopK(NamedTuple):
    """Result of one step; every tensor has a leading ``batch`` dimension, best candidate first.

    Attributes:
        active_scores: float32 ``(batch, num_beams)``: cumulative scores of the continuing candidates,
            ``-inf`` where there are fewer candidates.
        active_parent: int64 ``(batch, num_beams)``: beam (``0..K_in-1``) each candidate extends, -1 if none.
        active_child: int64 ``(batch, num_beams)``: depth-``d+1`` node id of each candidate, -1 if none.
        finished_scores: float32 ``(batch, num_finished)``: cumulative scores of candidates that are leaves.
        finished_child: int64 ``(batch, num_finished)``: their depth-``d+1`` node ids, -1 if none.
    """

    active_scores: torch.Tensor
    active_parent: torch.Tensor
    active_child: torch.Tensor
    finished_scores: torch.Tensor
    finished_child: torch.Tensor


def _check_inputs(logits, beam_scores, beam_nodes, child_ptr, child_token, child_is_leaf, banned_leaves,
                  child_leaf_lo, child_leaf_hi, row_lse, max_children, num_beams, num_finished):
    if beam_scores.dim() != 2:
        raise ValueError(f"`beam_scores` must be (batch, beams), got shape {tuple(beam_scores.shape)}")
    batch, beams = beam_scores.shape
    if logits.dim() != 2 or logits.shape[0] != batch * beams:
        raise ValueError(
            f"`logits` must be (batch * beams, vocab) = ({batch * beams}, V), got shape {tuple(logits.shape)}"
        )
    if tuple(beam_nodes.shape) != (batch, beams):
        raise ValueError(f"`beam_nodes` must have shape {(batch, beams)}, got {tuple(beam_nodes.shape)}")
    if child_token.shape != child_is_leaf.shape:
        raise ValueError("`child_token` and `child_is_leaf` must have the same shape")
    if max_children < 1:
        raise ValueError(f"`max_children` must be >= 1, got {max_children}")
    if num_beams < 0 or num_finished < 0:
        raise ValueError(f"`num_beams` ({num_beams}) and `num_finished` ({num_finished}) must be >= 0")
    if banned_leaves is not None:
        if banned_leaves.dim() != 2 or banned_leaves.shape[0] != batch:
            raise ValueError(f"`banned_leaves` must be (batch={batch}, M), got shape {tuple(banned_leaves.shape)}")
        if child_leaf_lo is None or child_leaf_hi is None:
            raise ValueError("`banned_leaves` needs `child_leaf_lo` and `child_leaf_hi`")
    if row_lse is not None and row_lse.shape != (batch * beams,):
        raise ValueError(f"`row_lse` must have shape {(batch * beams,)}, got {tuple(row_lse.shape)}")


# ---------------------------------------------------------------------------------------------- reference
def constrained_topk_reference(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    beam_nodes: torch.Tensor,
    child_ptr: torch.Tensor,
    child_token: torch.Tensor,
    child_is_leaf: torch.Tensor,
    *,
    token_lo: int,
    max_children: int,
    num_beams: int,
    num_finished: int,
    row_lse: torch.Tensor | None = None,
    banned_leaves: torch.Tensor | None = None,
    child_leaf_lo: torch.Tensor | None = None,
    child_leaf_hi: torch.Tensor | None = None,
) -> ConstrainedTopK:
    """Torch reference of the constrained step (see module docstring).

    Args:
        logits: ``(batch * K_in, V)`` float; column ``c`` is token ``token_lo + c``.
        beam_scores: float ``(batch, K_in)``; ``-inf`` marks a dead beam (it yields no candidates).
        beam_nodes: int ``(batch, K_in)``: each beam's depth-``d`` node (any value where the beam is dead).
        child_ptr: int ``(num_nodes[d] + 1,)``: CSR offsets of depth ``d``.
        child_token: int ``(num_nodes[d+1],)``: token id of each depth-``d+1`` node.
        child_is_leaf: bool ``(num_nodes[d+1],)``: the node completes an item.
        token_lo: token id of ``logits`` column 0.
        max_children: largest number of children of a depth-``d`` node.
        num_beams: continuing candidates to keep per user.
        num_finished: finished (leaf) candidates to keep per user.
        row_lse: optional float ``(batch * K_in,)``: per-row log-sum-exp to normalise with instead of the
            log-sum-exp over the children.
        banned_leaves: optional int ``(batch, M)``: each user's banned leaf positions, sorted ascending and
            distinct (a child is dropped when its banned count reaches its leaf count), padded with a value past
            every leaf -- what :meth:`genrec.decoding.Catalog.banned_leaves` returns.
        child_leaf_lo, child_leaf_hi: int ``(num_nodes[d+1],)``: leaf range under each child (with bans).

    Returns:
        ConstrainedTopK.
    """
    _check_inputs(logits, beam_scores, beam_nodes, child_ptr, child_token, child_is_leaf, banned_leaves,
                  child_leaf_lo, child_leaf_hi, row_lse, max_children, num_beams, num_finished)
    batch, beams = beam_scores.shape
    device = logits.device
    neg_inf = torch.tensor(float("-inf"), device=device)
    alive = beam_scores > float("-inf")  # (B, K)
    nodes = torch.where(alive, beam_nodes.long(), 0)
    start = child_ptr[nodes].long()  # (B, K)
    count = torch.where(alive, child_ptr[nodes + 1].long() - start, 0)
    offsets = torch.arange(max_children, device=device)
    valid = offsets < count[..., None]  # (B, K, C)
    child = torch.where(valid, start[..., None] + offsets, 0)  # (B, K, C) depth-(d+1) node ids
    column = (child_token[child].long() - token_lo).clamp(0, logits.shape[1] - 1)
    child_logits = logits.float().view(batch, beams, -1).gather(-1, column)
    child_logits = torch.where(valid, child_logits, neg_inf)
    if row_lse is None:
        lse = torch.logsumexp(child_logits, dim=-1)  # (B, K); -inf for beams without children
        lse = torch.where(count > 0, lse, 0.0)
    else:
        lse = row_lse.float().view(batch, beams)
    scores = beam_scores.float()[..., None] + (child_logits - lse[..., None])
    scores = torch.where(valid, scores, neg_inf)
    if banned_leaves is not None and banned_leaves.shape[1] > 0:
        lo = child_leaf_lo[child].long().view(batch, -1)
        hi = child_leaf_hi[child].long().view(batch, -1)
        sorted_bans = banned_leaves.long().contiguous()
        banned_under = torch.searchsorted(sorted_bans, hi) - torch.searchsorted(sorted_bans, lo)
        scores = torch.where((hi - lo > banned_under).view(batch, beams, -1), scores, neg_inf)
    leaf = child_is_leaf[child]
    flat_child = child.view(batch, -1)

    def select(candidate_scores: torch.Tensor, k: int, any_candidate: bool = True):
        flat = candidate_scores.view(batch, -1)
        k_eff = min(k, flat.shape[1]) if any_candidate else 0
        values, order = flat.topk(k_eff, dim=1) if k_eff else (flat[:, :0], flat[:, :0].long())
        # among the selected, equal scores go to the lower (beam, child) position, like the kernel (an exact
        # float tie straddling the k-th place may still pick a different candidate than the kernel)
        order, by_position = order.sort(dim=1)
        values, by_score = values.gather(1, by_position).sort(dim=1, descending=True, stable=True)
        order = order.gather(1, by_score)
        found = values > float("-inf")
        parent = torch.where(found, order // max_children, -1)
        node = torch.where(found, flat_child.gather(1, order), -1)
        if k_eff < k:  # fewer candidates than asked for: pad
            pad = k - k_eff
            values = torch.cat([values, values.new_full((batch, pad), float("-inf"))], 1)
            parent = torch.cat([parent, parent.new_full((batch, pad), -1)], 1)
            node = torch.cat([node, node.new_full((batch, pad), -1)], 1)
        return values, parent, node

    # skip the sorts that cannot select anything (no leaves before the last level of fixed-length codes)
    any_leaf = bool(leaf.any())
    any_inner = not bool(leaf[valid].all()) if num_beams else False
    active_scores, active_parent, active_child = select(torch.where(leaf, neg_inf, scores), num_beams, any_inner)
    finished_scores, _, finished_child = select(torch.where(leaf, scores, neg_inf), num_finished, any_leaf)
    return ConstrainedTopK(active_scores, active_parent, active_child, finished_scores, finished_child)


# ---------------------------------------------------------------------------------------------- triton
@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """Whether Triton can be imported (it is optional: CPU-only installs run the torch reference)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - depends on the install
        return False
    return True


@functools.lru_cache(maxsize=1)
def _kernel():
    """Define the Triton kernel on first use (reads TRITON_INTERPRET at definition time)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _constrained_topk_kernel(
        logits_ptr, logits_stride,  # (B*K_in, V)
        beam_scores_ptr, beam_nodes_ptr,  # (B, K_in)
        child_ptr_ptr, child_token_ptr, child_is_leaf_ptr,
        row_lse_ptr,  # (B*K_in,) or dummy
        banned_ptr, banned_stride, num_banned,  # (B, M) or dummy
        leaf_lo_ptr, leaf_hi_ptr,
        out_active_scores_ptr, out_active_parent_ptr, out_active_child_ptr,  # (B, num_beams)
        out_finished_scores_ptr, out_finished_child_ptr,  # (B, num_finished)
        beams, vocab, token_lo, max_children, num_beams, num_finished,
        HAS_LSE: tl.constexpr, HAS_BANS: tl.constexpr,
        BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        # one program per user: its K_in beams x max_children candidates fit in one (BLOCK_K, BLOCK_C) tile
        user = tl.program_id(0).to(tl.int64)
        offs_k = tl.arange(0, BLOCK_K)
        offs_c = tl.arange(0, BLOCK_C)
        beam_mask = offs_k < beams
        beam_score = tl.load(beam_scores_ptr + user * beams + offs_k, mask=beam_mask, other=float("-inf"))
        alive = beam_mask & (beam_score > float("-inf"))
        node = tl.load(beam_nodes_ptr + user * beams + offs_k, mask=alive, other=0).to(tl.int64)
        start = tl.load(child_ptr_ptr + node, mask=alive, other=0).to(tl.int64)
        end = tl.load(child_ptr_ptr + node + 1, mask=alive, other=0).to(tl.int64)
        count = tl.where(alive, end - start, 0)
        valid = (offs_c[None, :] < count[:, None]) & (offs_c[None, :] < max_children)  # (BLOCK_K, BLOCK_C)
        child = tl.where(valid, start[:, None] + offs_c[None, :], 0)
        token = tl.load(child_token_ptr + child, mask=valid, other=0).to(tl.int64)
        column = tl.minimum(tl.maximum(token - token_lo, 0), vocab - 1)
        rows = user * beams + offs_k
        logit = tl.load(logits_ptr + rows[:, None] * logits_stride + column, mask=valid, other=float("-inf"))
        logit = tl.where(valid, logit.to(tl.float32), float("-inf"))
        if HAS_LSE:
            lse = tl.load(row_lse_ptr + rows, mask=beam_mask, other=0.0).to(tl.float32)
        else:
            # log-sum-exp over each beam's children (fp32), 0 for beams without children
            row_max = tl.max(logit, axis=1)
            safe_max = tl.where(count > 0, row_max, 0.0)
            total = tl.sum(tl.where(valid, tl.exp(logit - safe_max[:, None]), 0.0), axis=1)
            lse = tl.where(count > 0, safe_max + tl.log(tl.where(count > 0, total, 1.0)), 0.0)
        score = tl.where(valid, beam_score[:, None] + (logit - lse[:, None]), float("-inf"))
        if HAS_BANS:
            lo = tl.load(leaf_lo_ptr + child, mask=valid, other=0).to(tl.int64)
            hi = tl.load(leaf_hi_ptr + child, mask=valid, other=0).to(tl.int64)
            banned_under = tl.zeros((BLOCK_K, BLOCK_C), dtype=tl.int64)
            for m in range(num_banned):
                position = tl.load(banned_ptr + user * banned_stride + m).to(tl.int64)
                banned_under += ((position >= lo) & (position < hi)).to(tl.int64)
            score = tl.where(hi - lo > banned_under, score, float("-inf"))
        is_leaf = tl.load(child_is_leaf_ptr + child, mask=valid, other=0) != 0
        flat = offs_k[:, None] * BLOCK_C + offs_c[None, :]
        big = BLOCK_K * BLOCK_C

        # iterative selection (num_beams, num_finished are small): max, then the lowest position holding it
        active = tl.where(is_leaf, float("-inf"), score)
        for i in range(num_beams):
            best = tl.max(tl.max(active, axis=1), axis=0)
            position = tl.min(tl.min(tl.where(active == best, flat, big), axis=1), axis=0)
            found = best > float("-inf")
            picked = flat == position
            best_child = tl.sum(tl.sum(tl.where(picked, child, 0), axis=1), axis=0)
            tl.store(out_active_scores_ptr + user * num_beams + i, best)
            tl.store(out_active_parent_ptr + user * num_beams + i, tl.where(found, position // BLOCK_C, -1))
            tl.store(out_active_child_ptr + user * num_beams + i, tl.where(found, best_child, -1))
            active = tl.where(picked, float("-inf"), active)
        finished = tl.where(is_leaf, score, float("-inf"))
        for i in range(num_finished):
            best = tl.max(tl.max(finished, axis=1), axis=0)
            position = tl.min(tl.min(tl.where(finished == best, flat, big), axis=1), axis=0)
            found = best > float("-inf")
            picked = flat == position
            best_child = tl.sum(tl.sum(tl.where(picked, child, 0), axis=1), axis=0)
            tl.store(out_finished_scores_ptr + user * num_finished + i, best)
            tl.store(out_finished_child_ptr + user * num_finished + i, tl.where(found, best_child, -1))
            finished = tl.where(picked, float("-inf"), finished)

    return triton, _constrained_topk_kernel


def constrained_topk_triton(
    logits: torch.Tensor,
    beam_scores: torch.Tensor,
    beam_nodes: torch.Tensor,
    child_ptr: torch.Tensor,
    child_token: torch.Tensor,
    child_is_leaf: torch.Tensor,
    *,
    token_lo: int,
    max_children: int,
    num_beams: int,
    num_finished: int,
    row_lse: torch.Tensor | None = None,
    banned_leaves: torch.Tensor | None = None,
    child_leaf_lo: torch.Tensor | None = None,
    child_leaf_hi: torch.Tensor | None = None,
) -> ConstrainedTopK:
    """Launch the Triton kernel; same arguments and result as :func:`constrained_topk_reference`.

    Raises:
        RuntimeError: Triton is not installed.
    """
    _check_inputs(logits, beam_scores, beam_nodes, child_ptr, child_token, child_is_leaf, banned_leaves,
                  child_leaf_lo, child_leaf_hi, row_lse, max_children, num_beams, num_finished)
    if not triton_available():
        raise RuntimeError("constrained_topk_triton needs Triton; use constrained_topk_reference instead")
    triton, kernel = _kernel()
    batch, beams = beam_scores.shape
    device = logits.device
    logits = logits if logits.stride(1) == 1 else logits.contiguous()
    block_k = triton.next_power_of_2(max(beams, 1))
    block_c = triton.next_power_of_2(max(max_children, 1))
    active_scores = torch.empty((batch, num_beams), dtype=torch.float32, device=device)
    active_parent = torch.empty((batch, num_beams), dtype=torch.int64, device=device)
    active_child = torch.empty((batch, num_beams), dtype=torch.int64, device=device)
    finished_scores = torch.empty((batch, num_finished), dtype=torch.float32, device=device)
    finished_child = torch.empty((batch, num_finished), dtype=torch.int64, device=device)
    has_bans = banned_leaves is not None and banned_leaves.shape[1] > 0
    dummy = child_ptr
    bans = banned_leaves.contiguous() if has_bans else dummy
    kernel[(batch,)](
        logits, logits.stride(0),
        beam_scores.contiguous().float(), beam_nodes.contiguous(),
        child_ptr.contiguous(), child_token.contiguous(), child_is_leaf.contiguous().to(torch.int8),
        row_lse.contiguous().float() if row_lse is not None else beam_scores,
        bans, bans.stride(0) if has_bans else 0, banned_leaves.shape[1] if has_bans else 0,
        child_leaf_lo if has_bans else dummy, child_leaf_hi if has_bans else dummy,
        active_scores, active_parent, active_child, finished_scores, finished_child,
        beams, logits.shape[1], token_lo, max_children, num_beams, num_finished,
        HAS_LSE=row_lse is not None, HAS_BANS=has_bans,
        BLOCK_K=block_k, BLOCK_C=block_c,
        num_warps=4 if block_k * block_c <= 2048 else 8,
    )
    return ConstrainedTopK(active_scores, active_parent, active_child, finished_scores, finished_child)


def constrained_topk(*args, **kwargs) -> ConstrainedTopK:
    """Dispatch one constrained step: the Triton kernel for CUDA tensors (Triton installed), else the torch
    reference. Same arguments and result as :func:`constrained_topk_reference`."""
    logits = args[0] if args else kwargs["logits"]
    if logits.is_cuda and triton_available():
        return constrained_topk_triton(*args, **kwargs)
    return constrained_topk_reference(*args, **kwargs)
