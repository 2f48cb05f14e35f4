"""TIGER's residual-quantised VAE item tokenizer (``rq-vae``).

An MLP encoder maps an item's text embedding (e.g. 384-d MiniLM) to a 32-d latent ``z``; ``L``
residual codebooks (default 3 × 256) quantise it: level ℓ picks the codeword ``e_ℓ`` nearest to the
residual ``r_ℓ`` (``r_0 = z``, ``r_{ℓ+1} = r_ℓ - e_ℓ``); an MLP decoder reconstructs the embedding from
``ẑ = Σ e_ℓ`` passed with the straight-through estimator (``z + sg(ẑ - z)``). Loss (TIGER / RQ-VAE)::

    ||x - dec(ẑ)||²  +  Σ_ℓ ( ||sg(r_ℓ) - e_ℓ||²  +  β ||r_ℓ - sg(e_ℓ)||² ),   β = 0.25

Codebooks are initialised by residual k-means on the latents of all items (catalogs beyond
``max_init_samples`` use a seeded subsample) before training, which avoids the cold-start collapse of
random codebooks. Dead codes (a codeword chosen by no item in an epoch) are re-seeded from the residuals
of random items at that level every ``dead_code_reset_every`` epochs. Training is Adam on CPU in
mini-batches; everything is seeded (init, shuffling, re-seeding) so the same seed gives the same codes.

The item code is the tuple of codeword indices; items sharing all ``L`` indices get an extra TIGER
disambiguation level from :class:`~genrec.tokenization.base.ItemTokenizer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import logging

from genrec.tokenization.base import register_tokenizer
from genrec.tokenization.config import check_bool, check_float, check_int
from genrec.tokenization.embeddings import EmbeddingTokenizerConfig, TorchModelItemTokenizer
from genrec.tokenization.rq_kmeans import residual_kmeans

logger = logging.get_logger(__name__)

__all__ = ["RQVAEConfig", "RQVAEModel", "RQVAETokenizer", "train_rqvae"]


class RQVAEModel(nn.Module):
    """MLP encoder → residual quantiser → MLP decoder.

    Args:
        input_dim: embedding size d (e.g. 384).
        hidden_dims: encoder hidden sizes (decoder mirrors them), TIGER: (512, 256, 128).
        latent_dim: latent size (TIGER: 32).
        codebook_sizes: codewords per level (TIGER: 3 × 256).
        beta: commitment weight β.
    """

    def __init__(
        self,
        *,
        input_dim: int,
        hidden_dims: tuple[int, ...] = (512, 256, 128),
        latent_dim: int = 32,
        codebook_sizes: tuple[int, ...] = (256, 256, 256),
        beta: float = 0.25,
    ):
        super().__init__()
        self.beta = beta
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), input_dim])
        # One (K_ℓ, latent) table per level; trained by the codebook loss term, not by the decoder.
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(size, latent_dim) * 0.01) for size in codebook_sizes]
        )

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Residual quantisation of latents.

        Args:
            z: (n, latent) latents.

        Returns:
            z_q (n, latent) sum of chosen codewords (with gradients to the codebooks), codes (n, L) int64,
            the summed codebook + β·commitment loss (scalar), and the residual entering each level.
        """
        residual = z
        z_q = torch.zeros_like(z)
        loss = z.new_zeros(())
        codes, residuals = [], []
        for codebook in self.codebooks:
            residuals.append(residual)
            dist = (
                (residual * residual).sum(1, keepdim=True)
                - 2 * residual @ codebook.T
                + (codebook * codebook).sum(1).unsqueeze(0)
            )  # (n, K)
            idx = dist.argmin(dim=1)
            chosen = codebook[idx]  # (n, latent)
            loss = loss + ((residual.detach() - chosen) ** 2).sum(1).mean()
            loss = loss + self.beta * ((residual - chosen.detach()) ** 2).sum(1).mean()
            z_q = z_q + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        return z_q, torch.stack(codes, dim=1), loss, residuals

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode, quantise, decode a batch (n, d); returns losses, codes and the reconstruction."""
        z = self.encoder(x)
        z_q, codes, quant_loss, _ = self.quantize(z)
        z_st = z + (z_q - z).detach()  # straight-through: decoder gradient flows to the encoder
        recon = self.decoder(z_st)
        recon_loss = ((recon - x) ** 2).sum(1).mean()
        return {
            "loss": recon_loss + quant_loss,
            "recon_loss": recon_loss,
            "quant_loss": quant_loss,
            "codes": codes,
            "recon": recon,
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> np.ndarray:
        """Codes (n, L) int64 of embeddings x (n, d), nearest codeword per level."""
        out = []
        for start in range(0, x.shape[0], batch_size):
            _, codes, _, _ = self.quantize(self.encoder(x[start : start + batch_size]))
            out.append(codes)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.codebooks)), np.int64)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def _init_codebooks(model: RQVAEModel, x: torch.Tensor, seed: int, max_samples: int, kmeans_iters: int) -> None:
    """Residual k-means on the initial latents gives each level's starting codebook."""
    z = model.encoder(x)
    sizes = [cb.shape[0] for cb in model.codebooks]
    if z.shape[0] < max(sizes):
        raise ValueError(
            f"rq-vae k-means init needs at least max(codebook_sizes)={max(sizes)} items, got {z.shape[0]}"
        )
    _, codebooks, _ = residual_kmeans(
        z, sizes, num_iters=kmeans_iters, seed=seed, max_fit_samples=max_samples
    )
    for param, centroids in zip(model.codebooks, codebooks):
        param.copy_(centroids)


@torch.no_grad()
def _reset_dead_codes(model: RQVAEModel, x: torch.Tensor, usage: list[torch.Tensor], generator: torch.Generator) -> int:
    """Re-seed every codeword unused since the last reset with the residual of a random item."""
    dead_total = 0
    dead = [u == 0 for u in usage]
    if not any(d.any() for d in dead):
        return 0
    sample = x[torch.randperm(x.shape[0], generator=generator)[: min(x.shape[0], 4096)]]
    _, _, _, residuals = model.quantize(model.encoder(sample))
    for level, (codebook, mask) in enumerate(zip(model.codebooks, dead)):
        num_dead = int(mask.sum())
        if num_dead == 0:
            continue
        pick = torch.randint(residuals[level].shape[0], (num_dead,), generator=generator)
        codebook.data[mask] = residuals[level][pick]
        dead_total += num_dead
    return dead_total


def train_rqvae(
    embeddings: np.ndarray,
    *,
    hidden_dims: tuple[int, ...] = (512, 256, 128),
    latent_dim: int = 32,
    codebook_sizes: tuple[int, ...] = (256, 256, 256),
    beta: float = 0.25,
    epochs: int = 50,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    dead_code_reset_every: int = 1,
    kmeans_init: bool = True,
    max_init_samples: int = 100_000,
    kmeans_iters: int = 20,
    seed: int = 0,
    max_seconds: float | None = None,
) -> tuple[RQVAEModel, dict[str, Any]]:
    """Train an :class:`RQVAEModel` on item embeddings (CPU, Adam, seeded).

    Args:
        embeddings: (n, d) float32 item embeddings.
        hidden_dims, latent_dim, codebook_sizes, beta: model shape (see :class:`RQVAEModel`).
        epochs: passes over the items.
        batch_size: items per step.
        learning_rate: Adam learning rate.
        dead_code_reset_every: re-seed unused codewords every this many epochs (0 = never). No reset
            happens after the last epoch, so the final codes come from trained codebooks.
        kmeans_init: initialise codebooks by residual k-means of the initial latents.
        max_init_samples: items used for the k-means init at most.
        kmeans_iters: k-means passes for the init.
        seed: seeds weights, shuffling, k-means init and dead-code re-seeding.
        max_seconds: stop early after this much training time (``None`` = run every epoch).

    Returns:
        The trained model (eval mode) and stats: ``loss_history`` (mean loss per epoch),
        ``recon_loss_history``, ``final_recon_mse`` (mean squared error per embedding dimension),
        ``final_relative_recon_error``, ``dead_codes_reset``, ``epochs_run``, ``train_seconds``.
    """
    x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
    n = x.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # weight init only; the rest uses explicit generators
        model = RQVAEModel(
            input_dim=x.shape[1], hidden_dims=tuple(hidden_dims), latent_dim=latent_dim,
            codebook_sizes=tuple(codebook_sizes), beta=beta,
        )
    generator = torch.Generator().manual_seed(seed + 1)
    if kmeans_init:
        _init_codebooks(model, x, seed, max_init_samples, kmeans_iters)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_history, recon_history = [], []
    dead_reset = 0
    usage = [torch.zeros(cb.shape[0], dtype=torch.int64) for cb in model.codebooks]
    start = time.perf_counter()
    epoch = 0
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator)
        total, total_recon, steps = 0.0, 0.0, 0
        for begin in range(0, n, batch_size):
            batch = x[order[begin : begin + batch_size]]
            out = model(batch)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            for level in range(len(usage)):
                usage[level] += torch.bincount(out["codes"][:, level], minlength=usage[level].shape[0])
            total += float(out["loss"].detach()) * batch.shape[0]
            total_recon += float(out["recon_loss"].detach()) * batch.shape[0]
            steps += batch.shape[0]
        loss_history.append(total / steps)
        recon_history.append(total_recon / steps)
        out_of_time = max_seconds is not None and time.perf_counter() - start > max_seconds
        if dead_code_reset_every and epoch % dead_code_reset_every == 0 and epoch < epochs and not out_of_time:
            dead_reset += _reset_dead_codes(model, x, usage, generator)
            usage = [torch.zeros_like(u) for u in usage]
        if out_of_time:
            logger.warning(f"rq-vae stopped after {epoch}/{epochs} epochs: max_seconds={max_seconds} reached")
            break
    model.eval()
    with torch.no_grad():
        sq_err, sq_norm = 0.0, 0.0
        for begin in range(0, n, 8192):
            batch = x[begin : begin + 8192]
            recon = model(batch)["recon"]
            sq_err += float(((recon - batch) ** 2).sum(dtype=torch.float64))
            sq_norm += float((batch * batch).sum(dtype=torch.float64))
    stats = {
        "loss_history": loss_history,
        "recon_loss_history": recon_history,
        "final_recon_mse": sq_err / max(x.numel(), 1),
        "final_relative_recon_error": sq_err / sq_norm if sq_norm > 0 else 0.0,
        "dead_codes_reset": dead_reset,
        "epochs_run": epoch,
        "train_seconds": time.perf_counter() - start,
    }
    return model, stats


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------


@dataclass
class RQVAEConfig(EmbeddingTokenizerConfig):
    """Config of the ``rq-vae`` tokenizer (TIGER).

    Args:
        num_levels (int, default 3): residual codebooks L.
        codebook_size (int, default 256): codewords per codebook (>= 2, < number of items).
        latent_dim (int, default 32): latent size.
        hidden_dims (list[int], default [512, 256, 128]): encoder MLP sizes (decoder mirrors them).
        beta (float, default 0.25): commitment weight.
        epochs (int, default 50), batch_size (int, default 256), learning_rate (float, default 1e-3):
            Adam training (TIGER trains far longer with Adagrad; on Beauty the loss plateaus by ~30
            epochs of this schedule, which keeps the fit within a few CPU minutes).
        dead_code_reset_every (int, default 1): re-seed unused codewords every N epochs (0 = never).
        kmeans_init (bool, default True): k-means codebook initialisation from the initial latents.
        kmeans_iters (int, default 20): k-means passes of that initialisation.
        max_train_seconds (float | None, default None): stop training early after this long.
        (plus the embedding fields of :class:`EmbeddingTokenizerConfig` and ``seed``)
    """

    num_levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    beta: float = 0.25
    epochs: int = 50
    batch_size: int = 256
    learning_rate: float = 1e-3
    dead_code_reset_every: int = 1
    kmeans_init: bool = True
    kmeans_iters: int = 20
    max_train_seconds: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("num_levels", self.num_levels, minimum=1)
        check_int("codebook_size", self.codebook_size, minimum=2)
        check_int("latent_dim", self.latent_dim, minimum=1)
        if isinstance(self.hidden_dims, (str, bytes)) or not isinstance(self.hidden_dims, (list, tuple)):
            raise ValueError(f"`hidden_dims` ({self.hidden_dims!r}) must be a list of ints >= 1 (may be empty)")
        for i, size in enumerate(self.hidden_dims):
            check_int(f"hidden_dims[{i}]", size, minimum=1)
        self.hidden_dims = list(self.hidden_dims)
        check_float("beta", self.beta, minimum=0.0)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0)
        if self.learning_rate <= 0:
            raise ValueError(f"`learning_rate` ({self.learning_rate}) must be > 0")
        check_int("dead_code_reset_every", self.dead_code_reset_every, minimum=0)
        check_bool("kmeans_init", self.kmeans_init)
        check_int("kmeans_iters", self.kmeans_iters, minimum=1)
        if self.max_train_seconds is not None:
            check_float("max_train_seconds", self.max_train_seconds, minimum=0.0)


@register_tokenizer("rq-vae")
class RQVAETokenizer(TorchModelItemTokenizer):
    """TIGER semantic ids from a residual-quantised VAE over item text embeddings.

    Example:
        >>> tok = RQVAETokenizer(epochs=150).fit(catalog)          # doctest: +SKIP
        >>> tok.encode("42")                                          # [c0, c1, c2(, rank)]
        >>> tok.encode_embeddings(new_item_vectors)                   # (n, 3) for unseen items
    """

    config_class = RQVAEConfig

    def _fit_embedding_codes(self, embeddings: np.ndarray) -> tuple[np.ndarray, list[int]]:
        cfg = self.config
        n = embeddings.shape[0]
        if cfg.codebook_size >= n:
            raise ValueError(
                f"`codebook_size` ({cfg.codebook_size}) must be smaller than the number of items ({n}) "
                "(k-means codebook initialisation needs more items than codewords)"
            )
        model, stats = train_rqvae(
            embeddings,
            hidden_dims=tuple(cfg.hidden_dims), latent_dim=cfg.latent_dim,
            codebook_sizes=tuple([cfg.codebook_size] * cfg.num_levels), beta=cfg.beta,
            epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
            dead_code_reset_every=cfg.dead_code_reset_every, kmeans_init=cfg.kmeans_init,
            kmeans_iters=cfg.kmeans_iters, seed=cfg.seed, max_seconds=cfg.max_train_seconds,
        )
        self._model = model
        codes = model.encode(torch.from_numpy(embeddings))
        self._extra_stats.update(
            {
                "reconstruction_mse": stats["final_recon_mse"],
                "relative_error": stats["final_relative_recon_error"],
                "loss_first_epoch": stats["loss_history"][0],
                "loss_last_epoch": stats["loss_history"][-1],
                "epochs_run": stats["epochs_run"],
                "dead_codes_reset": stats["dead_codes_reset"],
                "train_seconds": stats["train_seconds"],
            }
        )
        return codes, [cfg.codebook_size] * cfg.num_levels

    def _model_input_dim(self) -> int:
        return self._model.encoder[0].in_features

    def _model_from_state(self, state: dict[str, torch.Tensor]) -> RQVAEModel:
        if "encoder.0.weight" not in state:
            raise ValueError(f"rq-vae state must hold `model.encoder.0.weight`, found {sorted(state)}")
        cfg = self.config
        return RQVAEModel(
            input_dim=int(state["encoder.0.weight"].shape[1]), hidden_dims=tuple(cfg.hidden_dims),
            latent_dim=cfg.latent_dim, codebook_sizes=tuple([cfg.codebook_size] * cfg.num_levels), beta=cfg.beta,
        )
