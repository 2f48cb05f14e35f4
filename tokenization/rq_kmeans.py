"""Residual k-means item tokenizer (``rq-kmeans``), optionally balanced as in OneRec.

Level 1 clusters the item embeddings into ``codebook_size`` clusters; every later level clusters the
residuals ``x - sum(centroids chosen so far)``. An item's code is its cluster index at each level.

``balanced=True`` follows OneRec Algorithm 1: every cluster holds exactly ``|V| / K`` items (the first
``|V| mod K`` clusters one more). Each pass computes the item-centroid distance matrix once, then visits
the clusters in order and gives cluster k the ``|V|/K`` nearest items not yet taken; centroids become the
means of their items; passes repeat until the assignment stops changing or ``num_iters`` is reached.

Everything is vectorised torch on float32 with chunked distance computation, deterministic on CPU for a
fixed seed (every random choice draws from a seeded ``torch.Generator``). Large catalogs: centroids are fitted on a
seeded subsample of at most ``max_fit_samples`` rows, then *all* rows are assigned (balanced: one greedy
balanced pass over all rows with the fitted centroids, so the exact equal sizes hold for the full set;
its (n, K) float32 distance matrix is 1 GB for 1M items × 256 clusters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from genrec.tokenization.base import register_tokenizer
from genrec.tokenization.config import check_bool, check_choice, check_float, check_int
from genrec.tokenization.embeddings import EmbeddingItemTokenizer, EmbeddingTokenizerConfig

logger = logging.get_logger(__name__)

__all__ = [
    "RQKMeansConfig",
    "RQKMeansTokenizer",
    "KMeansResult",
    "assign_nearest",
    "balanced_assign",
    "kmeans",
    "kmeans_plusplus_init",
    "residual_encode",
    "residual_kmeans",
]

_CHUNK = 32768  # rows per distance block: 32768 × 256 float32 = 32 MB


# --------------------------------------------------------------------------------------------------
# k-means building blocks
# --------------------------------------------------------------------------------------------------


@dataclass
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes:
        centroids: (K, d) float32.
        labels: (n,) int64 cluster of each row.
        inertia: sum of squared distances of rows to their centroid.
        num_iters: Lloyd (or balanced) passes run.
    """

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float
    num_iters: int


def _sq_norms(x: torch.Tensor, chunk_size: int = _CHUNK) -> torch.Tensor:
    """Squared row norms (n,), in row chunks so no (n, d) temporary is made (1.5 GB for 1M × 384)."""
    if x.shape[0] <= chunk_size:
        return (x * x).sum(dim=1)
    return torch.cat([(block * block).sum(dim=1) for block in x.split(chunk_size)])


def _distances(
    x: torch.Tensor, centroids: torch.Tensor, c_sq: torch.Tensor, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distances (n, K) = |x|² - 2 x·c + |c|² (clamped at 0 against round-off)."""
    d = torch.addmm(c_sq.unsqueeze(0), x, centroids.T, beta=1.0, alpha=-2.0)  # (n, K)
    d += (_sq_norms(x) if x_sq is None else x_sq).unsqueeze(1)
    return d.clamp_min_(0.0)


def assign_nearest(
    x: torch.Tensor, centroids: torch.Tensor, chunk_size: int = _CHUNK, x_sq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row, computed in row chunks.

    Args:
        x: (n, d) float32.
        centroids: (K, d) float32.
        chunk_size: rows per distance block (bounds memory at chunk_size × K floats).
        x_sq: (n,) precomputed squared row norms (optional).

    Returns:
        labels (n,) int64 and squared distance to that centroid (n,) float32.
    """
    n = x.shape[0]
    labels = torch.empty(n, dtype=torch.int64)
    dists = torch.empty(n, dtype=torch.float32)
    c_sq = _sq_norms(centroids)
    x_sq = _sq_norms(x) if x_sq is None else x_sq
    for start in range(0, n, chunk_size):
        block = _distances(x[start : start + chunk_size], centroids, c_sq, x_sq[start : start + chunk_size])
        dists[start : start + chunk_size], labels[start : start + chunk_size] = block.min(dim=1)
    return labels, dists


def kmeans_plusplus_init(x: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centroid is a row drawn with probability ∝ squared distance.

    Args:
        x: (n, d) float32, n >= num_clusters.
        num_clusters: K.
        generator: seeded torch generator (determinism).

    Returns:
        (K, d) float32 centroids (copies of rows of ``x``).
    """
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    x_sq = _sq_norms(x)
    min_d = (x_sq - 2 * (x @ x[first]) + x_sq[first]).clamp_min_(0.0)  # (n,)
    for _ in range(1, num_clusters):
        total = float(min_d.sum())
        if total <= 0.0:  # fewer distinct points than clusters: take any row not chosen yet
            taken = torch.zeros(n, dtype=torch.bool)
            taken[chosen] = True
            nxt = int(torch.nonzero(~taken)[0])
        else:
            nxt = int(torch.multinomial(min_d / total, 1, generator=generator))
        chosen.append(nxt)
        d_new = (x_sq - 2 * (x @ x[nxt]) + x_sq[nxt]).clamp_min_(0.0)
        torch.minimum(min_d, d_new, out=min_d)
    return x[chosen].clone()


def _cluster_sizes(n: int, num_clusters: int) -> torch.Tensor:
    """Exact balanced sizes: ``n // K`` each, the first ``n % K`` clusters one more."""
    sizes = torch.full((num_clusters,), n // num_clusters, dtype=torch.int64)
    sizes[: n % num_clusters] += 1
    return sizes


def balanced_assign(
    x: torch.Tensor,
    centroids: torch.Tensor,
    sizes: torch.Tensor | None = None,
    chunk_size: int = _CHUNK,
    x_sq: torch.Tensor | None = None,
    return_distances: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """OneRec Alg. 1 assignment step: cluster k takes its ``sizes[k]`` nearest unassigned rows, k = 0..K-1.

    Args:
        x: (n, d) float32.
        centroids: (K, d) float32.
        sizes: (K,) int64 summing to n (default: exact balanced sizes).
        chunk_size: rows per distance block.
        x_sq: (n,) precomputed squared row norms (optional).
        return_distances: also return each row's squared distance to its assigned centroid.

    Returns:
        labels (n,) int64 with ``bincount(labels) == sizes`` (and distances (n,) float32 if asked).
    """
    n, num_clusters = x.shape[0], centroids.shape[0]
    sizes = _cluster_sizes(n, num_clusters) if sizes is None else sizes
    if int(sizes.sum()) != n:
        raise ValueError(f"balanced cluster sizes sum to {int(sizes.sum())}, expected n={n}")
    c_sq = _sq_norms(centroids)
    x_sq = _sq_norms(x) if x_sq is None else x_sq
    dist = torch.empty(num_clusters, n, dtype=torch.float32)  # (K, n): a cluster's row is contiguous
    for start in range(0, n, chunk_size):
        end = start + chunk_size
        dist[:, start:end] = _distances(x[start:end], centroids, c_sq, x_sq[start:end]).T
    labels = torch.full((n,), -1, dtype=torch.int64)
    inf = torch.tensor(float("inf"))
    for k in range(num_clusters):
        size = int(sizes[k])
        if size == 0:
            continue
        row = dist[k]
        # Rows taken by earlier clusters are out of the race: mask them to +inf.
        masked = torch.where(labels >= 0, inf, row)
        take = torch.topk(masked, size, largest=False, sorted=False).indices
        labels[take] = k
    if return_distances:
        return labels, dist.gather(0, labels.unsqueeze(0)).squeeze(0)
    return labels


def _update_centroids(
    x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, min_dist: torch.Tensor | None
) -> tuple[torch.Tensor, int]:
    """Means of the clusters; an empty cluster is re-seeded with the row farthest from its centroid."""
    num_clusters, dim = centroids.shape
    sums = torch.zeros(num_clusters, dim, dtype=torch.float32).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=num_clusters)
    new = sums / counts.clamp_min(1).unsqueeze(1).to(torch.float32)
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) and min_dist is not None:
        far = torch.topk(min_dist, min(len(empty), x.shape[0])).indices
        new[empty[: len(far)]] = x[far]
    elif len(empty):
        new[empty] = centroids[empty]
    return new, int(len(empty))


def kmeans(
    x: torch.Tensor | np.ndarray,
    num_clusters: int,
    *,
    num_iters: int = 50,
    tol: float = 1e-3,
    seed: int = 0,
    init: str = "kmeans++",
    balanced: bool = False,
    chunk_size: int = _CHUNK,
) -> KMeansResult:
    """Lloyd's k-means (or OneRec's balanced k-means) on float32 rows.

    Args:
        x: (n, d) data; n >= num_clusters.
        num_clusters: K >= 1.
        num_iters: maximum passes (>= 1).
        tol: stop when the relative decrease of the inertia falls below ``tol`` (or labels stop changing).
        seed: seed of the initialisation.
        init: ``"kmeans++"`` or ``"random"`` (K distinct random rows).
        balanced: exact equal cluster sizes (OneRec Alg. 1 assignment each pass).
        chunk_size: rows per distance block.

    Returns:
        :class:`KMeansResult`.

    Raises:
        ValueError: n < num_clusters, bad ``init``/``num_iters``/``num_clusters``.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    n = x.shape[0]
    if num_clusters < 1:
        raise ValueError(f"`num_clusters` ({num_clusters}) must be >= 1")
    if n < num_clusters:
        raise ValueError(f"k-means needs at least `num_clusters` ({num_clusters}) rows, got {n}")
    if num_iters < 1:
        raise ValueError(f"`num_iters` ({num_iters}) must be >= 1")
    if init not in ("kmeans++", "random"):
        raise ValueError(f"`init` ({init!r}) must be 'kmeans++' or 'random'")
    generator = torch.Generator().manual_seed(int(seed))
    if init == "kmeans++":
        # Seeding costs K sequential passes over its rows; a seeded subsample of 16·K rows (at least
        # 4,096) seeds as well in practice and keeps this step well under the Lloyd passes' cost.
        init_rows = max(16 * num_clusters, 4096)
        pool = x if n <= init_rows else x[torch.randperm(n, generator=generator)[:init_rows]]
        centroids = kmeans_plusplus_init(pool, num_clusters, generator)
    else:
        centroids = x[torch.randperm(n, generator=generator)[:num_clusters]].clone()
    sizes = _cluster_sizes(n, num_clusters) if balanced else None
    x_sq = _sq_norms(x)
    labels = torch.full((n,), -1, dtype=torch.int64)
    prev_inertia = math.inf
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    iteration = 0
    for iteration in range(1, num_iters + 1):  # noqa: B007 (the count is returned after the loop)
        # Assignment step with the current centroids.
        if balanced:
            new_labels, row_dist = balanced_assign(x, centroids, sizes, chunk_size, x_sq, return_distances=True)
            min_dist = None
        else:
            new_labels, row_dist = assign_nearest(x, centroids, chunk_size, x_sq)
            min_dist = row_dist
        inertia = float(row_dist.sum(dtype=torch.float64))
        if best is None or inertia < best[0]:
            # Lloyd's inertia never increases; the greedy balanced pass can, so keep its best state.
            best = (inertia, centroids, new_labels)
        converged = bool((new_labels == labels).all()) or (
            math.isfinite(prev_inertia) and prev_inertia - inertia <= tol * prev_inertia
        )
        labels, prev_inertia = new_labels, inertia
        if converged:
            break
        # Update step; the labels above stay consistent with `best`'s centroids.
        centroids, _ = _update_centroids(x, labels, centroids, min_dist)
    inertia, centroids, labels = best
    return KMeansResult(centroids=centroids, labels=labels, inertia=inertia, num_iters=iteration)


# --------------------------------------------------------------------------------------------------
# Residual k-means
# --------------------------------------------------------------------------------------------------


def residual_kmeans(
    x: torch.Tensor | np.ndarray,
    codebook_sizes: list[int],
    *,
    balanced: bool = False,
    num_iters: int = 50,
    tol: float = 1e-3,
    seed: int = 0,
    init: str = "kmeans++",
    max_fit_samples: int | None = None,
    chunk_size: int = _CHUNK,
) -> tuple[np.ndarray, list[torch.Tensor], dict[str, Any]]:
    """Fit residual k-means codebooks and code every row.

    Args:
        x: (n, d) embeddings.
        codebook_sizes: K per level, e.g. ``[256, 256, 256]``.
        balanced: equal-size clusters at every level (OneRec).
        num_iters, tol, init: see :func:`kmeans`.
        seed: level ℓ uses ``seed + ℓ`` (levels differ, runs repeat).
        max_fit_samples: fit centroids on at most this many seeded random rows, then assign all rows
            (``None``: fit on all rows).
        chunk_size: rows per distance block.

    Returns:
        codes (n, L) int64; codebooks, one (K_ℓ, d) float32 tensor per level; stats with per-level
        ``mse`` (mean squared norm of the residual left after the level), ``relative_error`` (that over
        the mean squared norm of ``x``) and ``kmeans_iters``.
    """
    x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32) if isinstance(x, np.ndarray) else x)
    x = x.to(torch.float32)
    n = x.shape[0]
    residual = x.clone()  # (n, d) updated in place level by level
    total_sq = float(_sq_norms(x).sum(dtype=torch.float64)) / max(n, 1)
    codes = np.empty((n, len(codebook_sizes)), dtype=np.int64)
    codebooks: list[torch.Tensor] = []
    stats: dict[str, Any] = {"mse": [], "relative_error": [], "kmeans_iters": []}
    sample = None
    if max_fit_samples is not None and n > max_fit_samples:
        sample = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 7919))[:max_fit_samples]
        sample = sample.sort().values
    for level, size in enumerate(codebook_sizes):
        fit_rows = residual if sample is None else residual[sample]
        result = kmeans(
            fit_rows, size, num_iters=num_iters, tol=tol, seed=int(seed) + level, init=init,
            balanced=balanced, chunk_size=chunk_size,
        )
        centroids = result.centroids
        if sample is None:
            labels = result.labels
        elif balanced:
            labels = balanced_assign(residual, centroids, None, chunk_size)
        else:
            labels, _ = assign_nearest(residual, centroids, chunk_size)
        for start in range(0, n, chunk_size):  # residual -= chosen centroid, chunked to bound temporaries
            residual[start : start + chunk_size] -= centroids[labels[start : start + chunk_size]]
        codes[:, level] = labels.numpy()
        codebooks.append(centroids)
        mse = float(_sq_norms(residual).sum(dtype=torch.float64)) / max(n, 1)
        stats["mse"].append(mse)
        stats["relative_error"].append(mse / total_sq if total_sq > 0 else 0.0)
        stats["kmeans_iters"].append(result.num_iters)
        logger.info(f"rq-kmeans level {level}: K={size} iters={result.num_iters} residual mse={mse:.5f}")
    return codes, codebooks, stats


def residual_encode(
    x: torch.Tensor | np.ndarray, codebooks: list[torch.Tensor], chunk_size: int = _CHUNK
) -> np.ndarray:
    """Code new rows with fitted residual codebooks (nearest centroid per level, no balancing).

    Args:
        x: (n, d) embeddings.
        codebooks: one (K_ℓ, d) tensor per level.

    Returns:
        codes (n, L) int64.
    """
    residual = torch.as_tensor(np.asarray(x, dtype=np.float32)).clone()
    if residual.ndim != 2 or (codebooks and residual.shape[1] != codebooks[0].shape[1]):
        raise ValueError(
            f"embeddings of shape {tuple(residual.shape)} do not match codebook dimension "
            f"{codebooks[0].shape[1] if codebooks else '?'}"
        )
    codes = np.empty((residual.shape[0], len(codebooks)), dtype=np.int64)
    for level, centroids in enumerate(codebooks):
        labels, _ = assign_nearest(residual, centroids, chunk_size)
        residual -= centroids[labels]
        codes[:, level] = labels.numpy()
    return codes


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


@dataclass
class RQKMeansConfig(EmbeddingTokenizerConfig):
    """Config of the ``rq-kmeans`` tokenizer (residual k-means on item text embeddings).

    Args:
        num_levels (int, default 3): residual levels L (>= 1).
        codebook_size (int, default 256): clusters per level K (>= 2, < number of items).
        balanced (bool, default False): OneRec balanced k-means (every cluster holds |V|/K items).
        num_iters (int, default 50): maximum k-means passes per level.
        tol (float, default 1e-3): stop when the relative inertia decrease is below this.
        init (str, default "kmeans++"): ``"kmeans++"`` or ``"random"``.
        max_fit_samples (int | None, default 100000): fit centroids on at most this many seeded random
            items, then assign every item (``None`` = always fit on all items).
        (plus the embedding fields of :class:`EmbeddingTokenizerConfig` and ``seed``)
    """

    num_levels: int = 3
    codebook_size: int = 256
    balanced: bool = False
    num_iters: int = 50
    tol: float = 1e-3
    init: str = "kmeans++"
    max_fit_samples: int | None = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("num_levels", self.num_levels, minimum=1)
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_bool("balanced", self.balanced)
        check_int("num_iters", self.num_iters, minimum=1)
        check_float("tol", self.tol, minimum=0.0)
        check_choice("init", self.init, ("kmeans++", "random"))
        if self.max_fit_samples is not None:
            check_int("max_fit_samples", self.max_fit_samples, minimum=self.codebook_size)


@register_tokenizer("rq-kmeans")
class RQKMeansTokenizer(EmbeddingItemTokenizer):
    """Residual k-means semantic ids (OneRec / MiniOneRec style), optionally balanced.

    Example:
        >>> tok = RQKMeansTokenizer(num_levels=3, codebook_size=256, balanced=True)   # doctest: +SKIP
        >>> tok.fit(catalog)          # embeds the catalog text (cached), clusters, fixes collisions
        >>> tok.encode("42"), tok.stats["relative_error"], tok.encode_embeddings(new_item_vectors)
    """

    config_class = RQKMeansConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._codebooks: list[torch.Tensor] = []

    def _fit_embedding_codes(self, embeddings: np.ndarray) -> tuple[np.ndarray, list[int]]:
        cfg = self.config
        n = embeddings.shape[0]
        if cfg.codebook_size >= n:
            raise ValueError(
                f"`codebook_size` ({cfg.codebook_size}) must be smaller than the number of items ({n}): "
                "k-means needs more items than clusters; use a smaller codebook_size"
            )
        codes, codebooks, stats = residual_kmeans(
            embeddings,
            [cfg.codebook_size] * cfg.num_levels,
            balanced=cfg.balanced,
            num_iters=cfg.num_iters,
            tol=cfg.tol,
            seed=cfg.seed,
            init=cfg.init,
            max_fit_samples=cfg.max_fit_samples,
        )
        self._codebooks = codebooks
        self._extra_stats.update(
            {
                "reconstruction_mse": stats["mse"][-1],
                "relative_error": stats["relative_error"][-1],
                "mse_per_level": stats["mse"],
                "relative_error_per_level": stats["relative_error"],
                "kmeans_iters": stats["kmeans_iters"],
            }
        )
        return codes, [cfg.codebook_size] * cfg.num_levels

    def encode_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes (n, num_levels) of new embeddings: nearest centroid per level (never balanced).

        For a non-balanced fit this reproduces the fitted codes of the training items (before the
        disambiguation level); a balanced fit may have moved an item away from its nearest centroid.

        Raises:
            ValueError: not fitted, or embeddings of the wrong dimension.
        """
        if not self._codebooks:
            raise ValueError("this RQKMeansTokenizer has no codebooks: fit it or load it with from_pretrained")
        array = self._check_new_embeddings(embeddings, int(self._codebooks[0].shape[1]))
        return residual_encode(array, self._codebooks)

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"codebook.{level}": centroids for level, centroids in enumerate(self._codebooks)}

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        names = [f"codebook.{level}" for level in range(self.config.num_levels)]
        if sorted(tensors) != sorted(names):
            raise ValueError(f"rq-kmeans state must hold {names}, found {sorted(tensors)}")
        self._codebooks = [tensors[name].to(torch.float32) for name in names]
