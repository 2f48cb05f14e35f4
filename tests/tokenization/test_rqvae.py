"""TIGER RQ-VAE: training, straight-through quantisation, dead codes, collisions, save/load."""

import numpy as np
import pytest
import torch

from genrec.data.catalog import ItemCatalog
from genrec.tokenization import AutoItemTokenizer, get_tokenizer_class
from genrec.tokenization.rqvae import RQVAEConfig, RQVAEModel, RQVAETokenizer, train_rqvae

# Tiny shapes: 16-d inputs, 8-d latent, 3 codebooks of 8.
_TINY = dict(num_levels=3, codebook_size=8, latent_dim=8, hidden_dims=[32], epochs=15, batch_size=64, learning_rate=3e-3)


def _catalog(n):
    return ItemCatalog([str(i) for i in range(n)], [{"title": f"item {i}"} for i in range(n)])


def _clustered(n=160, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    x = centers[rng.integers(0, 10, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_quantize_straight_through_and_residuals():
    torch.manual_seed(0)
    model = RQVAEModel(input_dim=6, hidden_dims=(), latent_dim=4, codebook_sizes=(5, 5))
    z = torch.randn(7, 4, requires_grad=True)
    z_q, codes, loss, residuals = model.quantize(z)
    expected = model.codebooks[0][codes[:, 0]] + model.codebooks[1][codes[:, 1]]
    torch.testing.assert_close(z_q, expected)
    # Level 1 picks the codeword nearest to the level-0 residual.
    residual = z - model.codebooks[0][codes[:, 0]]
    torch.testing.assert_close(residuals[1], residual)
    assert torch.equal(codes[:, 1], torch.cdist(residual, model.codebooks[1]).argmin(1))
    out = model(torch.randn(7, 6))
    out["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # decoder gradient reached the encoder (STE)
    assert all(cb.grad is not None and cb.grad.abs().sum() > 0 for cb in model.codebooks)


def test_training_loss_falls_and_codes_are_collision_free_after_the_fix():
    x = _clustered()
    tok = RQVAETokenizer(**_TINY, seed=0).fit(_catalog(len(x)), embeddings=x)
    stats = tok.stats
    assert stats["loss_last_epoch"] < 0.75 * stats["loss_first_epoch"]
    assert stats["collision_rate_after"] == 0.0
    assert len({tuple(r) for r in tok.codes.tolist()}) == len(x)
    if stats["collision_rate_before"] > 0:
        assert tok.code_length == 4 and stats["disambiguation_level_added"]
    assert len(stats["utilisation"]) == tok.code_length
    assert 0 < stats["relative_error"] < 1
    np.testing.assert_array_equal(tok.encode_embeddings(x), tok.codes[:, :3])


def test_dead_codes_are_reseeded():
    x = _clustered(n=120)
    # Without k-means init, random tiny codebooks leave most codewords unused at first.
    _, with_reset = train_rqvae(
        x, hidden_dims=(32,), latent_dim=8, codebook_sizes=(16, 16), epochs=4, batch_size=60,
        kmeans_init=False, dead_code_reset_every=1, seed=0,
    )
    _, without = train_rqvae(
        x, hidden_dims=(32,), latent_dim=8, codebook_sizes=(16, 16), epochs=4, batch_size=60,
        kmeans_init=False, dead_code_reset_every=0, seed=0,
    )
    assert with_reset["dead_codes_reset"] > 0
    assert without["dead_codes_reset"] == 0


def test_save_load_reproduces_codes_and_encoding(tmp_path):
    x = _clustered()
    tok = get_tokenizer_class("rq-vae")(**_TINY, seed=2).fit(_catalog(len(x)), embeddings=x)
    tok.save_pretrained(tmp_path / "rqvae")
    loaded = AutoItemTokenizer.from_pretrained(tmp_path / "rqvae")
    assert isinstance(loaded, RQVAETokenizer)
    np.testing.assert_array_equal(loaded.codes, tok.codes)
    new = _clustered(n=11, seed=7)
    np.testing.assert_array_equal(loaded.encode_embeddings(new), tok.encode_embeddings(new))
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        loaded.encode_embeddings(np.zeros((3, 4), np.float32))


def test_same_seed_same_codes():
    x = _clustered(n=100)
    small = dict(_TINY, epochs=3)
    a = RQVAETokenizer(**small, seed=5).fit(_catalog(100), embeddings=x).codes
    b = RQVAETokenizer(**small, seed=5).fit(_catalog(100), embeddings=x).codes
    np.testing.assert_array_equal(a, b)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="codebook_size"):
        RQVAEConfig(codebook_size=1)
    with pytest.raises(ValueError, match=r"hidden_dims\[1\]"):
        RQVAEConfig(hidden_dims=[64, 0])
    with pytest.raises(ValueError, match="beta"):
        RQVAEConfig(beta=-1.0)
    with pytest.raises(ValueError, match=r"`codebook_size` \(256\) must be smaller than the number of items \(50\)"):
        RQVAETokenizer().fit(_catalog(50), embeddings=_clustered(n=50))
    with pytest.raises(ValueError, match="method"):
        RQVAETokenizer(RQVAEConfig(method="fsq"))
