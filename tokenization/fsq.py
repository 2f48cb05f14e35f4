"""RecGPT's finite scalar quantization item tokenizer (``fsq``).

The item text embedding (MiniLM: 384-d; RecGPT: 768-d) is split into ``num_chunks`` equal chunks (4);
each chunk is projected to ``len(levels)`` dimensions (5), bounded with ``tanh`` and rounded with a
straight-through estimator to the levels ``[8, 8, 8, 6, 5]`` (Mentzer et al., "Finite Scalar
Quantization"). A chunk's code is the mixed-radix index of its rounded digits, one of
``prod(levels) = 15,360`` values, so an item is ``num_chunks`` tokens. A decoder maps each quantised
chunk back to the chunk of the embedding; the projections train as an autoencoder with an L1
reconstruction loss (RecGPT). Because the encoder is a function of the text embedding, NEW items (cold
start, zero-shot domains) get codes with :meth:`FSQTokenizer.encode_embeddings` / ``encode_texts``.

Bounding (per dimension with L levels, ``half = (L - 1)(1 + eps) / 2``, ``offset = 0.5`` for even L,
else 0): ``bound(z) = tanh(z + atanh(offset / half)) * half - offset`` maps 0 to 0 and lies within
``eps``-margins of ``[-L/2, L/2 - 1]`` (even L) or ``[-(L-1)/2, (L-1)/2]`` (odd L), so ``round`` gives
exactly L integers; digit = rounded + L // 2.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import logging

from genrec.tokenization.base import register_tokenizer
from genrec.tokenization.config import check_float, check_int
from genrec.tokenization.embeddings import EmbeddingTokenizerConfig, TorchModelItemTokenizer

logger = logging.get_logger(__name__)

__all__ = [
    "FSQConfig",
    "FSQModel",
    "FSQTokenizer",
    "digits_to_index",
    "fsq_bound",
    "fsq_quantize",
    "index_to_digits",
    "round_ste",
    "train_fsq",
]


# --------------------------------------------------------------------------------------------------
# Quantiser
# --------------------------------------------------------------------------------------------------


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer; the backward pass is the identity (straight-through)."""
    return z + (torch.round(z) - z).detach()


def fsq_bound(z: torch.Tensor, levels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Squash z (..., q) so that rounding dimension i gives exactly ``levels[i]`` integers.

    Args:
        z: (..., q) unbounded projections.
        levels: (q,) int levels per dimension (>= 2).
        eps: small stretch so the outermost integers are reached at finite z (and L = 2 works).

    Returns:
        (..., q) float; rounding dimension i gives integers in [-(L_i // 2), (L_i - 1) // 2].
    """
    levels_f = levels.to(z.dtype)
    half = (levels_f - 1) * (1 + eps) / 2
    offset = torch.where(levels % 2 == 0, 0.5, 0.0).to(z.dtype)
    shift = torch.atanh(offset / half)
    return torch.tanh(z + shift) * half - offset


def fsq_quantize(z: torch.Tensor, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FSQ: bound, round (straight-through), normalise to [-1, 1].

    Args:
        z: (..., q) projections.
        levels: (q,) int64 levels.

    Returns:
        quantised (..., q) in [-1, 1] (gradient = d bound / dz), and digits (..., q) int64 in [0, L_i).
    """
    rounded = round_ste(fsq_bound(z, levels))
    half_width = (levels // 2).to(z.dtype)
    digits = (rounded.detach() + half_width).round().to(torch.int64)
    return rounded / half_width, digits


def digits_to_index(digits: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Mixed-radix index (...,) of digits (..., q): sum_i digit_i * prod(levels[:i])."""
    basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), dim=0)
    return (digits * basis).sum(-1)


def index_to_digits(index: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`digits_to_index`: (...,) int64 → (..., q) digits."""
    basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), dim=0)
    return (index.unsqueeze(-1) // basis) % levels


class FSQModel(nn.Module):
    """Chunked FSQ autoencoder: per chunk, ``Linear(chunk → q)`` (or an MLP) → FSQ → ``Linear(q → chunk)``.

    Inputs are standardised per dimension with the training set's mean and standard deviation (buffers
    ``mean`` / ``scale``, saved with the weights) and the projections start with unit output variance:
    sentence embeddings have per-dimension spreads of ~0.05, which would otherwise leave the tanh bound
    near 0 and almost every item in the same few FSQ cells.

    Args:
        input_dim: embedding size d (divisible by ``num_chunks``).
        num_chunks: chunks per embedding = tokens per item.
        levels: FSQ levels per projected dimension (q = len(levels)).
        hidden_dim: ``None`` for linear projections (RecGPT); else a one-hidden-layer MLP each way.
    """

    def __init__(self, *, input_dim: int, num_chunks: int, levels: list[int], hidden_dim: int | None = None):
        super().__init__()
        self.num_chunks = num_chunks
        self.chunk_dim = input_dim // num_chunks
        q = len(levels)
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.int64), persistent=False)
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("scale", torch.ones(input_dim))

        def block(a: int, b: int) -> nn.Module:
            if hidden_dim is None:
                return nn.Linear(a, b)
            return nn.Sequential(nn.Linear(a, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, b))

        self.encoders = nn.ModuleList([block(self.chunk_dim, q) for _ in range(num_chunks)])
        self.decoders = nn.ModuleList([block(q, self.chunk_dim) for _ in range(num_chunks)])
        for encoder in self.encoders:
            first = encoder if isinstance(encoder, nn.Linear) else encoder[0]
            nn.init.normal_(first.weight, std=first.in_features**-0.5)  # unit-variance projections
            nn.init.zeros_(first.bias)

    @torch.no_grad()
    def set_standardization(self, x: torch.Tensor) -> None:
        """Set ``mean`` / ``scale`` from training embeddings x (n, d)."""
        self.mean.copy_(x.mean(0))
        self.scale.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (n, d) → codes (n, num_chunks) int64, reconstruction (n, d), L1 loss (scalar, standardised units)."""
        standard = (x - self.mean) / self.scale
        chunks = standard.view(x.shape[0], self.num_chunks, self.chunk_dim)  # (n, C, chunk)
        recon, codes = [], []
        for c in range(self.num_chunks):
            quantised, digits = fsq_quantize(self.encoders[c](chunks[:, c]), self.levels)  # (n, q)
            recon.append(self.decoders[c](quantised))
            codes.append(digits_to_index(digits, self.levels))
        recon_standard = torch.cat(recon, dim=1)  # (n, d)
        return {
            "codes": torch.stack(codes, dim=1),
            "recon": recon_standard * self.scale + self.mean,
            "loss": (recon_standard - standard).abs().mean(),
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> np.ndarray:
        """Codes (n, num_chunks) int64 of embeddings x (n, d)."""
        out = [self(x[start : start + batch_size])["codes"] for start in range(0, x.shape[0], batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.num_chunks), np.int64)


def train_fsq(
    embeddings: np.ndarray,
    *,
    num_chunks: int = 4,
    levels: list[int] = (8, 8, 8, 6, 5),
    hidden_dim: int | None = None,
    epochs: int = 30,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> tuple[FSQModel, dict[str, Any]]:
    """Train the chunked FSQ autoencoder with L1 reconstruction loss (Adam, CPU, seeded).

    Args:
        embeddings: (n, d) float32, d divisible by ``num_chunks``.
        num_chunks, levels, hidden_dim: see :class:`FSQModel`.
        epochs: passes over the items. batch_size: items per step. learning_rate: Adam step size.
        seed: seeds weights and shuffling.

    Returns:
        The model (eval mode) and stats: ``loss_history`` (mean L1 per epoch, standardised units),
        ``final_l1`` (mean absolute error in embedding units),
        ``final_relative_recon_error`` (squared error / squared norm), ``train_seconds``.
    """
    x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
    n = x.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FSQModel(input_dim=x.shape[1], num_chunks=num_chunks, levels=list(levels), hidden_dim=hidden_dim)
    model.set_standardization(x)
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history = []
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for begin in range(0, n, batch_size):
            batch = x[order[begin : begin + batch_size]]
            loss = model(batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * batch.shape[0]
        history.append(total / n)
    model.eval()
    with torch.no_grad():
        l1, sq_err, sq_norm = 0.0, 0.0, 0.0
        for begin in range(0, n, 8192):
            batch = x[begin : begin + 8192]
            recon = model(batch)["recon"]
            l1 += float((recon - batch).abs().sum(dtype=torch.float64))
            sq_err += float(((recon - batch) ** 2).sum(dtype=torch.float64))
            sq_norm += float((batch * batch).sum(dtype=torch.float64))
    stats = {
        "loss_history": history,
        "final_l1": l1 / max(x.numel(), 1),
        "final_relative_recon_error": sq_err / sq_norm if sq_norm > 0 else 0.0,
        "train_seconds": time.perf_counter() - start,
    }
    return model, stats


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


@dataclass
class FSQConfig(EmbeddingTokenizerConfig):
    """Config of the ``fsq`` tokenizer (RecGPT).

    Args:
        num_chunks (int, default 4): embedding chunks = tokens per item (the embedding dimension must
            be divisible by it).
        levels (list[int], default [8, 8, 8, 6, 5]): FSQ levels of each chunk's projected dimensions;
            a chunk's codebook has ``prod(levels)`` entries (15,360).
        hidden_dim (int | None, default None): ``None`` = linear chunk projections (RecGPT); else MLPs.
        epochs (int, default 30), batch_size (int, default 256), learning_rate (float, default 1e-3):
            autoencoder training.
        (plus the embedding fields of :class:`EmbeddingTokenizerConfig` and ``seed``)
    """

    num_chunks: int = 4
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 6, 5])
    hidden_dim: int | None = None
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("num_chunks", self.num_chunks, minimum=1)
        if isinstance(self.levels, (str, bytes)) or not isinstance(self.levels, (list, tuple)) or not self.levels:
            raise ValueError(f"`levels` ({self.levels!r}) must be a non-empty list of ints >= 2")
        for i, level in enumerate(self.levels):
            check_int(f"levels[{i}]", level, minimum=2)
        self.levels = list(self.levels)
        if math.prod(self.levels) > 2**31 - 1:
            raise ValueError(f"`levels` ({self.levels}) give {math.prod(self.levels)} codes per chunk; at most 2**31 - 1")
        if self.hidden_dim is not None:
            check_int("hidden_dim", self.hidden_dim, minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0)
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` ({self.learning_rate}) must be > 0")

    @property
    def codebook_size(self) -> int:
        """Codes per chunk: prod(levels)."""
        return math.prod(self.levels)


@register_tokenizer("fsq")
class FSQTokenizer(TorchModelItemTokenizer):
    """RecGPT FSQ semantic ids: one token per embedding chunk; encodes new items from their embedding.

    Example:
        >>> tok = FSQTokenizer(num_chunks=4, levels=[8, 8, 8, 6, 5]).fit(catalog)   # doctest: +SKIP
        >>> tok.encode_texts(["Title: new lipstick; Brand: X"])    # (1, 4) codes for a cold-start item
    """

    config_class = FSQConfig

    def _fit_embedding_codes(self, embeddings: np.ndarray) -> tuple[np.ndarray, list[int]]:
        cfg = self.config
        dim = embeddings.shape[1]
        if dim % cfg.num_chunks != 0 or cfg.num_chunks > dim:
            raise ValueError(
                f"`num_chunks` ({cfg.num_chunks}) must divide the embedding dimension ({dim}); "
                f"allowed: divisors of {dim}, e.g. 4 for 384 or 768"
            )
        model, stats = train_fsq(
            embeddings, num_chunks=cfg.num_chunks, levels=cfg.levels, hidden_dim=cfg.hidden_dim,
            epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, seed=cfg.seed,
        )
        self._model = model
        codes = model.encode(torch.from_numpy(embeddings))
        self._extra_stats.update(
            {
                "reconstruction_l1": stats["final_l1"],
                "relative_error": stats["final_relative_recon_error"],
                "loss_first_epoch": stats["loss_history"][0],
                "loss_last_epoch": stats["loss_history"][-1],
                "train_seconds": stats["train_seconds"],
            }
        )
        return codes, [cfg.codebook_size] * cfg.num_chunks

    def _model_input_dim(self) -> int:
        return self._model.chunk_dim * self._model.num_chunks

    def _model_from_state(self, state: dict[str, torch.Tensor]) -> FSQModel:
        if "encoders.0.weight" not in state and "encoders.0.0.weight" not in state:
            raise ValueError(f"fsq state has no first encoder weight, found {sorted(state)}")
        first = state["encoders.0.weight"] if "encoders.0.weight" in state else state["encoders.0.0.weight"]
        return FSQModel(
            input_dim=first.shape[1] * self.config.num_chunks, num_chunks=self.config.num_chunks,
            levels=self.config.levels, hidden_dim=self.config.hidden_dim,
        )
