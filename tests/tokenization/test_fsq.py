"""RecGPT finite scalar quantization: the quantiser, its gradient, training, new-item encoding, save/load."""

import math

import numpy as np
import pytest
import torch

from genrec.data.catalog import ItemCatalog
from genrec.tokenization import AutoItemTokenizer, get_tokenizer_class
from genrec.tokenization.fsq import (
    FSQConfig,
    FSQTokenizer,
    digits_to_index,
    fsq_bound,
    fsq_quantize,
    index_to_digits,
    round_ste,
)

_TINY = dict(num_chunks=2, levels=[4, 3], epochs=6, batch_size=32)


def _catalog(n):
    return ItemCatalog([str(i) for i in range(n)], [{"title": f"item {i}"} for i in range(n)])


def _embeddings(n=120, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("levels", [[8, 8, 8, 6, 5], [2, 3, 7]])
def test_quantizer_gives_exactly_the_levels(levels):
    levels_t = torch.tensor(levels)
    z = torch.linspace(-20, 20, 4001).unsqueeze(1).expand(-1, len(levels))  # sweep every dimension
    quantised, digits = fsq_quantize(z, levels_t)
    for i, level in enumerate(levels):
        assert sorted(torch.unique(digits[:, i]).tolist()) == list(range(level))
        values = torch.unique(quantised[:, i])
        assert len(values) == level
        assert values.abs().max() <= 1.0 + 1e-6
        # The rounded values are integers before normalisation by L // 2.
        rounded = values * (level // 2)
        torch.testing.assert_close(rounded, rounded.round())
    torch.testing.assert_close(fsq_bound(torch.zeros(len(levels)), levels_t), torch.zeros(len(levels)))


def test_round_ste_rounds_forward_and_passes_gradient_straight_through():
    z = torch.tensor([0.2, 1.6, -2.4, 3.5], requires_grad=True)
    out = round_ste(z)
    assert out.tolist() == [0.0, 2.0, -2.0, 4.0]
    (out * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert z.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_fsq_gradient_is_the_bound_derivative():
    levels = torch.tensor([8, 5])
    z = torch.tensor([[0.3, -0.7]], requires_grad=True)
    quantised, _ = fsq_quantize(z, levels)
    quantised.sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (fsq_bound(z2, levels) / (levels // 2)).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)


def test_mixed_radix_index_round_trip():
    levels = torch.tensor([8, 8, 8, 6, 5])
    index = torch.arange(math.prod(levels.tolist()))
    digits = index_to_digits(index, levels)
    assert (digits < levels).all() and (digits >= 0).all()
    assert torch.equal(digits_to_index(digits, levels), index)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"levels\[1\]"):
        FSQConfig(levels=[8, 1])
    with pytest.raises(ValueError, match="num_chunks"):
        FSQConfig(num_chunks=0)
    with pytest.raises(ValueError, match="learning_rate"):
        FSQConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match=r"`num_chunks` \(3\) must divide the embedding dimension \(16\)"):
        FSQTokenizer(num_chunks=3).fit(_catalog(20), embeddings=_embeddings(20))
    assert FSQConfig().codebook_size == 15360


def test_fit_trains_encodes_new_items_and_round_trips(tmp_path):
    x = _embeddings()
    tok = get_tokenizer_class("fsq")(**_TINY, seed=1).fit(_catalog(len(x)), embeddings=x)
    stats = tok.stats
    assert stats["loss_last_epoch"] < stats["loss_first_epoch"]
    assert tok.codebook_sizes[:2] == [12, 12]
    assert stats["collision_rate_after"] == 0.0
    assert len({tuple(r) for r in tok.codes.tolist()}) == len(x)
    assert 0 < stats["utilisation"][0] <= 1 and "relative_error" in stats
    np.testing.assert_array_equal(tok.encode_embeddings(x), tok.codes[:, :2])

    tok.save_pretrained(tmp_path / "fsq")
    loaded = AutoItemTokenizer.from_pretrained(tmp_path / "fsq")
    assert isinstance(loaded, FSQTokenizer)
    np.testing.assert_array_equal(loaded.codes, tok.codes)
    new = _embeddings(9, seed=5)  # cold-start items never seen in fit
    codes_new = loaded.encode_embeddings(new)
    assert codes_new.shape == (9, 2) and (codes_new >= 0).all() and (codes_new < 12).all()
    np.testing.assert_array_equal(codes_new, tok.encode_embeddings(new))
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        loaded.encode_embeddings(np.zeros((1, 8), np.float32))


def test_same_seed_same_codes():
    x = _embeddings()
    a = FSQTokenizer(**_TINY, seed=4).fit(_catalog(len(x)), embeddings=x).codes
    b = FSQTokenizer(**_TINY, seed=4).fit(_catalog(len(x)), embeddings=x).codes
    np.testing.assert_array_equal(a, b)


def test_small_scale_embeddings_still_spread_over_the_codes():
    # Sentence embeddings have per-dimension spreads of ~0.05; the standardisation must keep the
    # tanh bound from collapsing every item into a handful of cells.
    x = 0.05 * _embeddings(n=200, dim=16, seed=3)
    tok = FSQTokenizer(num_chunks=2, epochs=3, batch_size=64).fit(_catalog(200), embeddings=x)
    assert tok.stats["collision_rate_before"] < 0.05
    assert len(np.unique(tok.codes[:, 0])) > 100


def test_fit_from_catalog_text_and_encode_cold_start_texts(tmp_path):
    # End to end with the bundled MiniLM: fit() embeds the catalog itself (cached), then a new item is
    # coded from its text alone (RecGPT's zero-shot path).
    titles = [f"{color} {kind}" for color in ("red", "blue", "green", "black") for kind in ("lipstick", "mascara", "nail polish", "shampoo", "eyeliner")]
    catalog = ItemCatalog([str(i) for i in range(len(titles))], [{"title": t} for t in titles])
    tok = FSQTokenizer(num_chunks=4, epochs=2, batch_size=8, embedding_cache_dir=str(tmp_path)).fit(catalog)
    assert tok.stats["embedding_dim"] == 384 and "embed_seconds" in tok.stats
    new_codes = tok.encode_texts(["Title: purple lipstick", "Title: red lipstick"])
    assert new_codes.shape == (2, 4) and (new_codes < 15360).all()
    np.testing.assert_array_equal(new_codes[1], tok.codes[0, :4])  # same text as item "0" -> same codes
