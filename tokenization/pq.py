"""Product-quantization semantic ids (``pq``): RPG's long, unordered codes.

The (standardised) item embedding is cut into ``num_chunks`` equal sub-vectors and each sub-vector is replaced
by the index of its nearest centroid among ``codebook_size`` k-means centroids fitted on that chunk. Unlike
residual codes (``rq-kmeans``, ``rq-vae``) no code depends on another, so a model can predict all of them in
parallel (RecGPT's ``input_granularity="item"``), and every chunk keeps a fine-grained piece of the embedding:
the sum over chunks of "same centroid" is a similarity between two items. RPG (KDD 2025) uses 32 × 256 codes
(OPQ); genrec fits plain k-means per chunk on standardised dimensions (no rotation).

New items (another domain, cold start) are encoded from their embedding alone (:meth:`encode_embeddings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genrec.tokenization.base import register_tokenizer
from genrec.tokenization.config import check_int
from genrec.tokenization.embeddings import EmbeddingItemTokenizer, EmbeddingTokenizerConfig
from genrec.tokenization.rq_kmeans import assign_nearest, kmeans

__all__ = ["PQConfig", "PQTokenizer"]


@dataclass
class PQConfig(EmbeddingTokenizerConfig):
    """Config of the ``pq`` tokenizer.

    Args:
        num_chunks (int, default 32): sub-vectors = codes per item (must divide the embedding dimension).
        codebook_size (int, default 256): k-means centroids per chunk (< number of items).
        num_iters (int, default 25): maximum k-means passes per chunk.
        (plus the embedding fields of :class:`EmbeddingTokenizerConfig` and ``seed``)
    """

    num_chunks: int = 32
    codebook_size: int = 256
    num_iters: int = 25

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("num_chunks", self.num_chunks, minimum=1)
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_int("num_iters", self.num_iters, minimum=1)


@register_tokenizer("pq")
class PQTokenizer(EmbeddingItemTokenizer):
    """Product-quantization ids: one code per embedding chunk, every chunk its own k-means codebook.

    Example:
        >>> tok = PQTokenizer(num_chunks=32, codebook_size=256).fit(catalog)   # doctest: +SKIP
        >>> tok.encode_embeddings(new_item_vectors)                          # (n, 32) codes of new items
    """

    config_class = PQConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        self._codebooks: list[torch.Tensor] = []

    def _standardise(self, embeddings: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)) - self._mean) / self._std

    def _fit_embedding_codes(self, embeddings: np.ndarray) -> tuple[np.ndarray, list[int]]:
        cfg = self.config
        n, dim = embeddings.shape
        if dim % cfg.num_chunks:
            raise ValueError(f"`num_chunks` ({cfg.num_chunks}) must divide the embedding dimension ({dim})")
        if cfg.codebook_size >= n:
            raise ValueError(f"`codebook_size` ({cfg.codebook_size}) must be smaller than the number of items ({n})")
        array = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._mean = array.mean(0)
        self._std = array.std(0).clamp(min=1e-6)  # constant dimensions (e.g. all-zero padding) stay at 0
        chunks = self._standardise(embeddings).view(n, cfg.num_chunks, -1)
        codes = np.empty((n, cfg.num_chunks), dtype=np.int64)
        self._codebooks, errors = [], []
        for c in range(cfg.num_chunks):
            part = chunks[:, c].contiguous()
            result = kmeans(part, cfg.codebook_size, num_iters=cfg.num_iters, seed=cfg.seed + c)
            self._codebooks.append(result.centroids.float())
            labels, distances = assign_nearest(part, self._codebooks[-1])
            codes[:, c] = labels.numpy()
            errors.append(float(distances.sum() / part.pow(2).sum().clamp(min=1e-12)))
        self._extra_stats.update({"relative_error": float(np.mean(errors)), "relative_error_per_chunk": errors})
        return codes, [cfg.codebook_size] * cfg.num_chunks

    def encode_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes ``(n, num_chunks)`` of new embeddings: the nearest centroid of every chunk.

        Raises:
            ValueError: not fitted, or embeddings of the wrong dimension.
        """
        if not self._codebooks:
            raise ValueError("this PQTokenizer has no codebooks: fit it or load it with from_pretrained")
        array = self._check_new_embeddings(embeddings, int(self._mean.shape[0]))
        chunks = self._standardise(array).view(array.shape[0], self.config.num_chunks, -1)
        codes = [assign_nearest(chunks[:, c].contiguous(), book)[0] for c, book in enumerate(self._codebooks)]
        return torch.stack(codes, 1).numpy()

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self._mean, "std": self._std,
                **{f"codebook.{c}": book for c, book in enumerate(self._codebooks)}}

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        names = ["mean", "std"] + [f"codebook.{c}" for c in range(self.config.num_chunks)]
        if sorted(tensors) != sorted(names):
            raise ValueError(f"pq state must hold {names}, found {sorted(tensors)}")
        self._mean, self._std = tensors["mean"].float(), tensors["std"].float()
        self._codebooks = [tensors[f"codebook.{c}"].float() for c in range(self.config.num_chunks)]
