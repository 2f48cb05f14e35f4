"""Full-ranking metrics for next-item recommendation: Recall/HR, NDCG and MRR at cut-offs.

Every sample has exactly one target (leave-one-out), so ``recall@k == hr@k`` (both are returned).
With the 0-based rank ``r`` of the target:

* ``recall@k = hr@k = 1[r < k]``
* ``ndcg@k = 1[r < k] / log2(r + 2)`` (the ideal DCG of one relevant item is 1)
* ``mrr@k = 1[r < k] / (r + 1)``

Two entry points:

* ``evaluate_scores``: a score matrix over every catalog item (e.g. a SASRec softmax). Ties are
  broken *pessimistically*: the target's rank counts every other item with a score ``>=`` the
  target's, so a constant model scores ~0, not 1. ``exclude`` (optional boolean mask) sets items to
  ``-inf`` before ranking — default None: no exclusion, because the S3-Rec/TIGER protocol ranks the
  full catalog and Yelp users do repeat items. An excluded target counts as a miss.
* ``evaluate_rankings``: ranked lists from generative decoding, ``(n, K)`` catalog rows with
  ``-1`` = a generated code sequence that is no catalog item. Invalid entries and repeats of an
  earlier entry keep their rank slot but can never hit; ``invalid_rate`` / ``duplicate_rate`` are
  the shares of all ``n * K`` entries.

Collisions (several items sharing one code sequence, ``item_group``): following CollisionGenRec, a
collided group is ONE guess — it occupies one rank slot, and a later entry of the same group is a
duplicate. How much a group guess is worth is ``collision_credit``:

* ``"uniform"`` (default): weight ``1/k`` for a group of ``k`` items containing the target — the
  expected hit rate of resolving the group to one of its items uniformly at random.
* ``"exact"``: a hit only if the entry's own row is the target (the decoder resolved the group).
* ``"any"``: full credit if the target is anywhere in the group (code-level; optimistic).

``summarize`` / ``MetricAccumulator`` turn per-sample values into flat ``{"test/recall@10": ...}``
dicts.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import torch

__all__ = [
    "DEFAULT_KS",
    "target_ranks",
    "metrics_from_ranks",
    "evaluate_scores",
    "evaluate_rankings",
    "history_mask",
    "summarize",
    "MetricAccumulator",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
COLLISION_CREDITS = ("uniform", "exact", "any")


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"`ks` ({ks!r}) must be a non-empty sequence of integers >= 1")
    return tuple(sorted(set(ks)))


def _check_targets(targets: torch.Tensor, n: int, num_items: int | None) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor):
        targets = torch.as_tensor(targets)
    if targets.dim() != 1 or targets.shape[0] != n:
        raise ValueError(f"`targets` must have shape ({n},), got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"`targets` must be an integer tensor of catalog rows, got {targets.dtype}")
    targets = targets.long()
    if n and (targets.min() < 0 or (num_items is not None and targets.max() >= num_items)):
        bad = targets[(targets < 0) | (targets >= (num_items or 2**62))][0].item()
        raise ValueError(f"`targets` holds row {bad}; rows must be in [0, {num_items})")
    return targets


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based rank of each target under ``scores`` (pessimistic ties), as float (inf = excluded).

    Args:
        scores (Tensor): ``(n, num_items)`` float scores, higher is better; no NaN.
        targets (LongTensor): ``(n,)`` target catalog rows.
        exclude (BoolTensor | None): ``(n, num_items)``, True = remove the item from the ranking.

    Returns:
        Tensor: ``(n,)`` float64 ranks; ``inf`` where the target itself is excluded.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"`scores` must be a 2-D tensor (n, num_items), got {getattr(scores, 'shape', type(scores))}")
    if not scores.is_floating_point():
        scores = scores.float()
    n, num_items = scores.shape
    targets = _check_targets(targets, n, num_items).to(scores.device)
    # Cheap NaN screen: a row sum is NaN if the row has a NaN (or both +inf and -inf); only then
    # run the exact elementwise check.
    if torch.isnan(scores.sum(dim=1)).any() and torch.isnan(scores).any():
        row = int(torch.isnan(scores).any(dim=1).nonzero()[0])
        raise ValueError(f"`scores` contains NaN (first in sample {row}); scores must be finite or -inf")
    if exclude is not None:
        if not isinstance(exclude, torch.Tensor) or exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError(
                f"`exclude` must be a bool tensor of shape {tuple(scores.shape)}, got "
                f"{getattr(exclude, 'dtype', type(exclude))} {tuple(getattr(exclude, 'shape', ()))}"
            )
        exclude = exclude.to(scores.device)
    target_scores = scores.gather(1, targets[:, None])  # (n, 1)
    # Pessimistic ties: every other item scoring >= the target ranks above it.
    ranks_above = scores >= target_scores  # (n, num_items), includes the target itself
    if exclude is not None:
        ranks_above &= ~exclude
    ranks = (ranks_above.sum(dim=1, dtype=torch.int32) - 1).double()  # (n,); int32 sum is faster
    if exclude is not None:
        ranks[exclude.gather(1, targets[:, None]).squeeze(1)] = math.inf
    return ranks.cpu()


def metrics_from_ranks(
    ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS, weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-sample metrics from 0-based target ranks.

    Args:
        ranks (Tensor): ``(n,)`` 0-based ranks (float; ``inf`` = never found).
        ks (Sequence[int]): cut-offs.
        weights (Tensor | None): ``(n,)`` credit of a hit in [0, 1] (collision credit); default 1.

    Returns:
        dict[str, Tensor]: ``recall@k``, ``hr@k``, ``ndcg@k``, ``mrr@k`` -> ``(n,)`` float64.
    """
    ks = _check_ks(ks)
    ranks = ranks.double()
    weights = torch.ones_like(ranks) if weights is None else weights.double()
    finite = torch.isfinite(ranks)
    safe = torch.where(finite, ranks, torch.zeros_like(ranks))
    gain = weights / torch.log2(safe + 2.0)
    reciprocal = weights / (safe + 1.0)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = finite & (ranks < k)
        out[f"recall@{k}"] = torch.where(hit, weights, torch.zeros_like(weights))
        out[f"hr@{k}"] = out[f"recall@{k}"]
        out[f"ndcg@{k}"] = torch.where(hit, gain, torch.zeros_like(gain))
        out[f"mrr@{k}"] = torch.where(hit, reciprocal, torch.zeros_like(reciprocal))
    return out


def _mean(per_sample: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {key: float(value.double().mean()) if value.numel() else 0.0 for key, value in per_sample.items()}


def evaluate_scores(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    exclude: torch.Tensor | None = None,
    *,
    reduce: bool = True,
) -> dict[str, float] | dict[str, torch.Tensor]:
    """Full-ranking metrics from a score matrix over all catalog items.

    Args:
        scores (Tensor): ``(n, num_items)`` higher = better; column ``i`` = ``catalog.item_ids[i]``.
        targets (LongTensor): ``(n,)`` target rows.
        ks (Sequence[int], default (1, 5, 10, 20)): cut-offs.
        exclude (BoolTensor | None, default None): ``(n, num_items)`` items to drop from the
            ranking (e.g. ``history_mask(...)``); None = rank every item.
        reduce (bool, default True): mean over samples (floats) or per-sample tensors ``(n,)``.

    Returns:
        dict: ``recall@k``, ``hr@k``, ``ndcg@k``, ``mrr@k`` for every k.

    Example:
        >>> evaluate_scores(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([2]), ks=(1, 2))["ndcg@2"]
        0.6309297535714575
    """
    ranks = target_ranks(scores, targets, exclude)
    per_sample = metrics_from_ranks(ranks.cpu(), ks)
    return _mean(per_sample) if reduce else per_sample


def evaluate_rankings(
    ranked: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    item_group: torch.Tensor | None = None,
    *,
    num_items: int | None = None,
    collision_credit: str = "uniform",
    reduce: bool = True,
) -> dict[str, float] | dict[str, torch.Tensor]:
    """Metrics from ranked item lists produced by generative decoding.

    Args:
        ranked (LongTensor): ``(n, K)`` catalog rows, best first; ``-1`` = invalid generation.
        targets (LongTensor): ``(n,)`` target rows.
        ks (Sequence[int], default (1, 5, 10, 20)): cut-offs, each ``<= K``.
        item_group (LongTensor | None): ``(num_items,)`` group id per item; items with the same
            code sequence share a group. None = every item is its own group.
        num_items (int | None): catalog size for range checks (default ``len(item_group)``).
        collision_credit (str, default "uniform"): ``"uniform"`` | ``"exact"`` | ``"any"`` (module
            docstring).
        reduce (bool, default True): means (floats) or per-sample tensors.

    Returns:
        dict: the metrics of ``evaluate_scores`` plus ``invalid_rate`` and ``duplicate_rate``
        (shares of the ``n * K`` entries; with ``reduce=False`` per-sample shares ``(n,)``).

    Raises:
        ValueError: bad shapes, rows outside ``[-1, num_items)``, ``max(ks) > K``, unknown
            ``collision_credit``.
    """
    ks = _check_ks(ks)
    if collision_credit not in COLLISION_CREDITS:
        raise ValueError(f"`collision_credit` ({collision_credit!r}) must be one of {list(COLLISION_CREDITS)}")
    if not isinstance(ranked, torch.Tensor) or ranked.dim() != 2:
        raise ValueError(f"`ranked` must be a 2-D LongTensor (n, K), got {getattr(ranked, 'shape', type(ranked))}")
    if ranked.is_floating_point() or ranked.dtype == torch.bool:
        raise ValueError(f"`ranked` must hold integer catalog rows, got {ranked.dtype}")
    ranked = ranked.long().cpu()
    n, width = ranked.shape
    if ks[-1] > width:
        raise ValueError(
            f"`ks` contains {ks[-1]} but `ranked` has only {width} entries per sample; decode at "
            f"least {ks[-1]} items or pass ks up to {width}"
        )
    if item_group is not None:
        item_group = torch.as_tensor(item_group).long().cpu()
        if item_group.dim() != 1:
            raise ValueError(f"`item_group` must be 1-D (num_items,), got {tuple(item_group.shape)}")
        if num_items is not None and item_group.numel() != num_items:
            raise ValueError(f"`item_group` has {item_group.numel()} entries but `num_items` is {num_items}")
        num_items = item_group.numel()
    if n and ranked.numel() and ranked.min() < -1:
        raise ValueError(f"`ranked` holds {int(ranked.min())}; entries must be catalog rows or -1 (invalid)")
    if num_items is not None and ranked.numel() and ranked.max() >= num_items:
        raise ValueError(f"`ranked` holds row {int(ranked.max())}; rows must be < num_items ({num_items})")
    targets = _check_targets(targets, n, num_items).cpu()

    valid = ranked >= 0  # (n, K)
    safe = ranked.clamp(min=0)
    if item_group is not None:
        entry_group = torch.where(valid, item_group[safe], torch.full_like(ranked, -1))
        target_group = item_group[targets]  # (n,)
    else:
        entry_group = ranked
        target_group = targets
    # Duplicate: a valid entry whose group appeared at an earlier rank of the same list.
    earlier = torch.ones(width, width, dtype=torch.bool).tril(diagonal=-1)  # [j, i]: i < j
    same = entry_group[:, :, None] == entry_group[:, None, :]  # (n, K, K)
    duplicate = valid & (same & earlier & valid[:, None, :]).any(dim=2)
    counted = valid & ~duplicate  # entries that are a fresh guess

    if collision_credit == "exact":
        hit = counted & (ranked == targets[:, None])
        weight_of_hit = torch.ones(n, dtype=torch.float64)
    else:
        hit = counted & (entry_group == target_group[:, None])
        if collision_credit == "uniform" and item_group is not None:
            group_size = torch.bincount(item_group)  # group id -> number of items
            weight_of_hit = 1.0 / group_size[target_group].double()
        else:
            weight_of_hit = torch.ones(n, dtype=torch.float64)
    any_hit = hit.any(dim=1)
    first = torch.where(any_hit, hit.double().argmax(dim=1).double(), torch.full((n,), math.inf, dtype=torch.float64))
    per_sample = metrics_from_ranks(first, ks, weights=weight_of_hit)
    per_sample["invalid_rate"] = (~valid).double().mean(dim=1) if width else torch.zeros(n, dtype=torch.float64)
    per_sample["duplicate_rate"] = duplicate.double().mean(dim=1) if width else torch.zeros(n, dtype=torch.float64)
    return _mean(per_sample) if reduce else per_sample


def history_mask(histories: Sequence[Sequence[int]], num_items: int, *, device=None) -> torch.Tensor:
    """Boolean exclusion mask for ``evaluate_scores(exclude=...)`` from history catalog rows.

    Args:
        histories (Sequence[Sequence[int]]): per sample, the catalog rows already seen.
        num_items (int): catalog size.

    Returns:
        BoolTensor: ``(n, num_items)``, True where the item is in the sample's history.
    """
    mask = torch.zeros(len(histories), num_items, dtype=torch.bool, device=device)
    lengths = torch.tensor([len(h) for h in histories], dtype=torch.long)
    if int(lengths.sum()) == 0:
        return mask
    rows = torch.repeat_interleave(torch.arange(len(histories)), lengths)
    cols = torch.tensor([i for h in histories for i in h], dtype=torch.long)
    if cols.min() < 0 or cols.max() >= num_items:
        raise ValueError(f"`histories` holds a row outside [0, {num_items})")
    mask[rows.to(mask.device), cols.to(mask.device)] = True
    return mask


def summarize(metrics: Mapping[str, torch.Tensor | float | Sequence[float]], prefix: str = "") -> dict[str, float]:
    """Flatten per-sample (or already averaged) metrics into ``{"<prefix>/<name>": mean}``.

    Args:
        metrics: name -> per-sample tensor/list ``(n,)`` or a float.
        prefix (str): e.g. ``"test"`` -> ``"test/recall@10"``; ``""`` keeps the names.

    Returns:
        dict[str, float]: sorted by name for stable logs.
    """
    lead = f"{prefix.rstrip('/')}/" if prefix else ""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            mean = float(value)
        else:
            tensor = torch.as_tensor(value, dtype=torch.float64)
            mean = float(tensor.mean()) if tensor.numel() else 0.0
        out[f"{lead}{name}"] = mean
    return dict(sorted(out.items()))


class MetricAccumulator:
    """Accumulates per-sample metrics over batches; ``compute`` gives sample-weighted means.

    Example:
        >>> acc = MetricAccumulator()
        >>> acc.update(evaluate_scores(torch.tensor([[0.1, 0.9]]), torch.tensor([1]), ks=(1,), reduce=False))
        >>> acc.compute(prefix="valid")["valid/recall@1"]
        1.0
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self.count = 0

    def update(self, per_sample: Mapping[str, torch.Tensor]) -> None:
        """Add a batch of per-sample metrics (``reduce=False`` output); all must have the same length."""
        sizes = {int(torch.as_tensor(v).numel()) for v in per_sample.values()}
        if len(sizes) > 1:
            raise ValueError(f"per-sample metrics must all have the same length, got {sorted(sizes)}")
        if not sizes:
            return
        if self._sums and set(per_sample) != set(self._sums):
            raise ValueError(f"metric names changed between batches: {sorted(per_sample)} vs {sorted(self._sums)}")
        for name, value in per_sample.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(torch.as_tensor(value, dtype=torch.float64).sum())
        self.count += sizes.pop()

    def compute(self, prefix: str = "") -> dict[str, float]:
        """Means over every sample seen, as a flat dict (``prefix`` as in ``summarize``)."""
        if self.count == 0:
            raise ValueError("MetricAccumulator.compute() called before any update()")
        return summarize({k: v / self.count for k, v in self._sums.items()}, prefix)

    def reset(self) -> None:
        self._sums.clear()
        self.count = 0
