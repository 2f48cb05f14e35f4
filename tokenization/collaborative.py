"""Collaborative indexing (Hua et al. 2023): hierarchical spectral clustering of item co-occurrence.

1. Co-occurrence graph, built sparse (``scipy.sparse``) from the TRAINING histories: items ``i`` and
   ``j`` are linked with weight = the number of times they appear within ``window`` positions of each
   other in one history (``window=0``: anywhere in the same history). Memory is O(number of
   co-occurring pairs), never a dense ``num_items x num_items`` matrix (OpenP5 builds a dense one).
2. Recursive spectral clustering: a cluster with more than ``leaf_size`` items is split into
   ``num_clusters`` children. Split = the top ``num_clusters`` eigenvectors of the normalised adjacency
   ``D^-1/2 A D^-1/2`` of the cluster's subgraph (equivalently the bottom of the normalised Laplacian;
   ARPACK ``eigsh`` on sparse matrices, dense ``eigh`` for small clusters), rows scaled to unit length
   (Ng, Jordan & Weiss), then k-means. With ``balanced=True`` every child holds at most
   ``ceil(n / num_clusters * (1 + capacity_slack))`` items (greedy nearest-centre assignment under
   that capacity), so the tree depth stays ``~log_{num_clusters}(num_items / leaf_size)``.
   Items without any co-occurrence in the cluster (cold items, items only seen in test) carry no
   collaborative signal; they fill the smallest children, in catalog order.
3. The id is the path of child indices from the root, then the item's index inside its leaf (catalog
   order). Leaves reached early are padded with child index 0 at the levels below them (unique: an
   unsplit cluster has no children that could use those codes), so every id has the same length.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from transformers.utils import logging

from genrec.tokenization.base import ItemTokenizer, register_tokenizer
from genrec.tokenization.config import ItemTokenizerConfig, check_bool, check_float, check_int

logger = logging.get_logger(__name__)

__all__ = [
    "CollaborativeTokenizer", "CollaborativeTokenizerConfig", "cooccurrence_matrix", "kmeans", "spectral_item_embeddings",
    "spectral_split",
]

# Below this many connected nodes a dense eigendecomposition is faster and exact.
_DENSE_EIGH_MAX = 400


@dataclass
class CollaborativeTokenizerConfig(ItemTokenizerConfig):
    """Config of collaborative (spectral clustering) indexing.

    Args:
        num_clusters (int, default 10): children per split (codebook size of the cluster levels), >= 2.
        leaf_size (int, default 20): clusters with at most this many items are not split further, >= 1.
        window (int, default 0): co-occurrence window in positions; 0 = the whole history.
        balanced (bool, default True): cap child sizes (see ``capacity_slack``).
        capacity_slack (float, default 0.1): a child may hold ``(1 + slack) * n / num_clusters`` items.
        max_depth (int, default 8): cluster levels at most; a deeper cluster becomes a leaf (its leaf
            index may then exceed ``leaf_size``).
        kmeans_n_init (int, default 3): k-means restarts per split.
    """

    num_clusters: int = 10
    leaf_size: int = 20
    window: int = 0
    balanced: bool = True
    capacity_slack: float = 0.1
    max_depth: int = 8
    kmeans_n_init: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("num_clusters", self.num_clusters, minimum=2)
        check_int("leaf_size", self.leaf_size, minimum=1)
        check_int("window", self.window, minimum=0)
        check_bool("balanced", self.balanced)
        check_float("capacity_slack", self.capacity_slack, minimum=0.0)
        check_int("max_depth", self.max_depth, minimum=1)
        check_int("kmeans_n_init", self.kmeans_n_init, minimum=1)


def cooccurrence_matrix(rows_per_sequence: list[np.ndarray], num_items: int, window: int = 0) -> sp.csr_matrix:
    """Symmetric sparse co-occurrence counts.

    Args:
        rows_per_sequence (list[np.ndarray]): each history as catalog rows (int64), oldest first.
        num_items (int): matrix size.
        window (int): count pairs at most ``window`` positions apart; 0 = any distance in the history.

    Returns:
        scipy.sparse.csr_matrix: ``(num_items, num_items)`` float64, zero diagonal (an item repeated in
        one history does not link to itself).
    """
    if not rows_per_sequence:
        return sp.csr_matrix((num_items, num_items), dtype=np.float64)
    flat = np.concatenate(rows_per_sequence).astype(np.int64)  # (total,)
    owner = np.repeat(np.arange(len(rows_per_sequence)), [len(r) for r in rows_per_sequence])
    longest = max(len(r) for r in rows_per_sequence)
    reach = longest - 1 if window == 0 else min(window, longest - 1)
    heads, tails = [], []
    for offset in range(1, reach + 1):
        same = owner[:-offset] == owner[offset:]  # pairs inside one history, `offset` apart
        heads.append(flat[:-offset][same])
        tails.append(flat[offset:][same])
    if not heads:
        return sp.csr_matrix((num_items, num_items), dtype=np.float64)
    head = np.concatenate(heads)
    tail = np.concatenate(tails)
    keep = head != tail
    head, tail = head[keep], tail[keep]
    data = np.ones(2 * len(head), dtype=np.float64)
    matrix = sp.coo_matrix(
        (data, (np.concatenate([head, tail]), np.concatenate([tail, head]))), shape=(num_items, num_items)
    ).tocsr()
    matrix.sum_duplicates()
    return matrix


def _capacity_assign(distances: np.ndarray, capacity: int) -> np.ndarray:
    """Assign rows to columns by increasing distance, no column taking more than ``capacity`` rows.

    Args:
        distances (np.ndarray): ``(n, k)`` squared distances to the k-means centres.
        capacity (int): maximum rows per column (``capacity * k >= n``).

    Returns:
        np.ndarray: ``(n,)`` int64 column of every row.
    """
    n, k = distances.shape
    labels = np.full(n, -1, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    order = np.argsort(distances, axis=None, kind="stable")  # flat (row, column) pairs, nearest first
    for flat in order.tolist():
        row, column = divmod(flat, k)
        if labels[row] < 0 and load[column] < capacity:
            labels[row] = column
            load[column] += 1
    return labels


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``(n, d)`` x ``(k, d)`` -> ``(n, k)`` squared Euclidean distances (clipped at 0)."""
    sq = (points**2).sum(1)[:, None] - 2.0 * points @ centres.T + (centres**2).sum(1)[None, :]
    return np.maximum(sq, 0.0)


def kmeans(
    points: np.ndarray, k: int, *, rng: np.random.Generator, n_init: int = 3, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` runs by inertia.

    A small numpy implementation: the clusters split here are small (tens to a few thousand points in
    ``k`` dimensions), where the thread start-up of library k-means dominates.

    Args:
        points (np.ndarray): ``(n, d)`` float64, ``n >= k``.
        k (int): number of centres.
        rng (np.random.Generator): seeds the initialisations.
        n_init (int): restarts. max_iter (int): Lloyd iterations per restart.

    Returns:
        tuple: ``centres`` ``(k, d)`` and ``labels`` ``(n,)`` int64.
    """
    n = len(points)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        centres = np.empty((k, points.shape[1]))
        centres[0] = points[rng.integers(n)]
        closest = _squared_distances(points, centres[:1])[:, 0]
        for c in range(1, k):  # k-means++: next centre with probability ~ squared distance
            total = closest.sum()
            pick = rng.choice(n, p=closest / total) if total > 0 else int(rng.integers(n))
            centres[c] = points[pick]
            closest = np.minimum(closest, _squared_distances(points, centres[c : c + 1])[:, 0])
        labels = np.zeros(n, dtype=np.int64)
        for _ in range(max_iter):
            distances = _squared_distances(points, centres)
            labels = distances.argmin(1)
            counts = np.bincount(labels, minlength=k)
            sums = np.eye(k)[labels].T @ points  # (k, d) per-cluster sums via one-hot
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
            if np.allclose(new, centres, atol=1e-9):
                break
            centres = new
        distances = _squared_distances(points, centres)
        labels = distances.argmin(1)
        inertia = float(distances[np.arange(n), labels].sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres.copy(), labels.copy())
    return best[1], best[2]


def spectral_split(
    adjacency: sp.csr_matrix,
    num_clusters: int,
    *,
    rng: np.random.Generator,
    balanced: bool = True,
    capacity_slack: float = 0.1,
    kmeans_n_init: int = 3,
) -> np.ndarray:
    """Split the nodes of a graph into ``num_clusters`` groups by spectral clustering.

    Args:
        adjacency (scipy.sparse.csr_matrix): ``(n, n)`` symmetric non-negative weights.
        num_clusters (int): number of groups k (``2 <= k <= n``).
        rng (np.random.Generator): source of the ARPACK start vector and k-means seeds.
        balanced (bool): cap group sizes at ``ceil(n / k * (1 + capacity_slack))``.
        capacity_slack (float): see ``balanced``.
        kmeans_n_init (int): k-means restarts.

    Returns:
        np.ndarray: ``(n,)`` int64 labels in ``[0, k)``; at least two groups are non-empty.
    """
    n = adjacency.shape[0]
    k = num_clusters
    capacity = math.ceil(n / k * (1 + capacity_slack)) if balanced else n
    capacity = min(max(capacity, math.ceil(n / k)), n - 1)  # room for everyone, and a real split
    degree = np.asarray(adjacency.sum(axis=1)).ravel()  # (n,)
    connected = np.flatnonzero(degree > 0)
    labels = np.full(n, -1, dtype=np.int64)
    if len(connected) > k:
        sub = adjacency[connected][:, connected]
        scale = sp.diags(1.0 / np.sqrt(degree[connected]))
        normalised = (scale @ sub @ scale).tocsr()  # D^-1/2 A D^-1/2, eigenvalues in [-1, 1]
        m = len(connected)
        if m <= _DENSE_EIGH_MAX:
            dense = normalised.toarray()
            try:
                _, vectors = eigh(dense, subset_by_index=[m - k, m - 1])  # (m, k) largest
            except np.linalg.LinAlgError:  # LAPACK evr can fail on degenerate spectra; full solver is robust
                vectors = np.linalg.eigh(dense)[1][:, -k:]
        else:
            start = rng.standard_normal(m)
            try:
                _, vectors = eigsh(normalised, k=k, which="LA", v0=start, tol=1e-4, maxiter=max(5000, 20 * m))
            except ArpackNoConvergence as error:  # keep the converged vectors, if enough
                if error.eigenvectors.shape[1] < 2:
                    raise
                logger.warning("eigsh converged for %d of %d eigenvectors", error.eigenvectors.shape[1], k)
                vectors = error.eigenvectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        embedding = vectors / np.maximum(norms, 1e-12)  # (m, k) rows on the unit sphere
        centres, kmeans_labels = kmeans(embedding, k, rng=rng, n_init=kmeans_n_init)
        if balanced:
            labels[connected] = _capacity_assign(_squared_distances(embedding, centres), capacity)
        else:
            labels[connected] = kmeans_labels
    # Nodes without edges here (or too few connected nodes to embed) fill the smallest groups.
    rest = np.flatnonzero(labels < 0)
    load = np.bincount(labels[labels >= 0], minlength=k)
    for node in rest.tolist():
        smallest = int(np.argmin(load))
        labels[node] = smallest
        load[smallest] += 1
    if (load > 0).sum() < 2:  # degenerate clustering: fall back to equal chunks in row order
        labels = (np.arange(n) * k) // n
    return labels


@register_tokenizer("collaborative")
class CollaborativeTokenizer(ItemTokenizer):
    """Path in a spectral-clustering tree of the co-occurrence graph + index inside the leaf."""

    config_class = CollaborativeTokenizerConfig
    handles_collisions = True  # the leaf index makes codes unique
    requires_sequences = True

    def _fit_codes(self, catalog, *, sequences, embeddings):
        config = self.config
        item_ids = list(catalog.item_ids)
        index = {item: row for row, item in enumerate(item_ids)}
        rows = [np.asarray([index[item] for item in seq], dtype=np.int64) for seq in sequences if len(seq) > 1]
        adjacency = cooccurrence_matrix(rows, len(item_ids), window=config.window)
        self.cooccurrence_nnz = int(adjacency.nnz)
        rng = np.random.default_rng(config.seed)

        with _single_threaded_blas():
            paths, leaf_rank = self._cluster_tree(adjacency, len(item_ids), rng)

        depth = max(len(path) for path in paths.values())
        codes = np.zeros((len(item_ids), depth + 1), dtype=np.int64)
        for row, path in paths.items():
            codes[row, : len(path)] = path
        codes[:, depth] = leaf_rank
        self._raw_codes = codes[:, :depth] if depth else np.zeros((len(item_ids), 1), dtype=np.int64)
        leaf_codebook = max(2, int(leaf_rank.max()) + 1)
        return codes, [config.num_clusters] * depth + [leaf_codebook]

    def _fit_stats(self) -> dict:
        return {"cooccurrence_nnz": self.cooccurrence_nnz, "cluster_levels": len(self._codebook_sizes) - 1}

    def _cluster_tree(
        self, adjacency: sp.csr_matrix, num_items: int, rng: np.random.Generator
    ) -> tuple[dict[int, tuple[int, ...]], np.ndarray]:
        """Recursive splitting; returns every row's cluster path and its rank inside its leaf."""
        config = self.config
        paths: dict[int, tuple[int, ...]] = {}
        leaf_rank = np.zeros(num_items, dtype=np.int64)
        # Breadth-first over clusters so the random stream is consumed in a fixed order.
        queue: list[tuple[np.ndarray, tuple[int, ...]]] = [(np.arange(num_items), ())]
        while queue:
            members, path = queue.pop(0)
            if len(members) <= config.leaf_size or len(path) >= config.max_depth:
                for rank, row in enumerate(members.tolist()):  # members are in catalog order
                    paths[row] = path
                    leaf_rank[row] = rank
                continue
            k = min(config.num_clusters, len(members))
            labels = spectral_split(
                adjacency[members][:, members].tocsr(),
                k,
                rng=rng,
                balanced=config.balanced,
                capacity_slack=config.capacity_slack,
                kmeans_n_init=config.kmeans_n_init,
            )
            for child in range(k):
                child_members = members[labels == child]
                if len(child_members):
                    queue.append((child_members, (*path, child)))

        return paths, leaf_rank


def _single_threaded_blas():
    """Limit BLAS/OpenMP to one thread: the many small eigendecompositions here run ~20x faster
    without thread start-up and oversubscription on a shared machine. No-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional dependency (comes with scikit-learn)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def spectral_item_embeddings(
    sequences, item_ids, *, dim: int = 64, window: int = 3, seed: int = 0
) -> np.ndarray:
    """Collaborative item vectors: the top ``dim`` eigenvectors of the normalised co-occurrence graph.

    Items that appear near each other in TRAINING histories get close vectors (the spectral embedding of
    ``D^-1/2 A D^-1/2``, rows scaled to unit length). Concatenated to text embeddings, they give the
    embedding-based tokenizers (``fsq``, ``rq-kmeans``) ids that carry collaborative signal: see
    ``model.tokenizer.collaborative_dims`` of the RecGPT preset ``recgpt-item-beauty.yaml``.

    Args:
        sequences: chronological item-id lists (the training part only; never valid/test targets).
        item_ids: catalog ids; row ``j`` of the result belongs to ``item_ids[j]``.
        dim: vector size (>= 1, < number of items).
        window: co-occurrence window in positions (0 = the whole history).
        seed: seeds ARPACK's start vector.

    Returns:
        float32 ``(len(item_ids), dim)``; all-zero rows for items with no co-occurrence (cold items).

    Raises:
        ValueError: ``dim`` out of range or an id outside ``item_ids``.
    """
    check_int("dim", dim, minimum=1)
    check_int("window", window, minimum=0)
    index = {item: row for row, item in enumerate(item_ids)}
    if dim >= len(index):
        raise ValueError(f"`dim` ({dim}) must be smaller than the number of items ({len(index)})")
    rows = []
    for sequence in sequences:
        try:
            rows.append(np.array([index[item] for item in sequence], dtype=np.int64))
        except KeyError as error:
            raise ValueError(f"history item {error.args[0]!r} is not in the catalog") from None
    matrix = cooccurrence_matrix(rows, len(index), window=window)
    degree = np.asarray(matrix.sum(1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    normalised = sp.diags(inv_sqrt) @ matrix @ sp.diags(inv_sqrt)
    start = np.random.default_rng(seed).normal(size=len(index))
    with _single_threaded_blas():
        _, vectors = eigsh(normalised, k=dim, which="LA", v0=start)
    vectors = vectors[:, ::-1]  # largest first; as Ng-Jordan-Weiss, the top ones (one per component) are kept
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0)
    vectors[degree == 0] = 0.0
    return vectors.astype(np.float32)
