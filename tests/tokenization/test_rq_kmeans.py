"""Residual k-means (plain and OneRec-balanced) and the rq-kmeans tokenizer."""

import numpy as np
import pytest
import torch

from genrec.data.catalog import ItemCatalog
from genrec.tokenization import AutoItemTokenizer, get_tokenizer_class
from genrec.tokenization.rq_kmeans import (
    RQKMeansConfig,
    RQKMeansTokenizer,
    assign_nearest,
    balanced_assign,
    kmeans,
    residual_kmeans,
)


def _blobs(num_blobs=5, per_blob=40, dim=8, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_blobs, dim)) * 5
    labels = np.repeat(np.arange(num_blobs), per_blob)
    x = centers[labels] + spread * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


def _catalog(n):
    return ItemCatalog([str(i) for i in range(n)], [{"title": f"item {i}"} for i in range(n)])


def test_kmeans_recovers_separable_blobs():
    x, truth = _blobs()
    result = kmeans(x, 5, seed=0)
    labels = result.labels.numpy()
    # Each true blob maps to exactly one cluster and vice versa (a bijection).
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 5 and len({p[1] for p in pairs}) == 5
    # Centroids sit on the blob means.
    for blob in range(5):
        cluster = labels[truth == blob][0]
        np.testing.assert_allclose(result.centroids[cluster].numpy(), x[truth == blob].mean(0), atol=1e-4)
    assert result.inertia == pytest.approx(float(((x - result.centroids.numpy()[labels]) ** 2).sum()), rel=1e-4)


@pytest.mark.parametrize("n", [200, 203])
def test_balanced_kmeans_gives_equal_sizes(n):
    rng = np.random.default_rng(1)
    # Skewed data: most points in one blob, so plain k-means would be unbalanced.
    x = np.concatenate([rng.normal(size=(n - 20, 4)) * 0.1, rng.normal(size=(20, 4)) + 5]).astype(np.float32)
    result = kmeans(x, 8, balanced=True, seed=0)
    sizes = np.bincount(result.labels.numpy(), minlength=8)
    assert sizes.sum() == n
    assert sizes.max() - sizes.min() <= 1
    assert sorted(sizes.tolist(), reverse=True) == [n // 8 + (1 if k < n % 8 else 0) for k in range(8)]
    plain = np.bincount(kmeans(x, 8, seed=0).labels.numpy(), minlength=8)
    assert plain.max() - plain.min() > 1  # the balancing did something on this data


def test_balanced_assign_takes_nearest_first():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    centroids = torch.tensor([[10.0], [0.0]])
    assert balanced_assign(x, centroids).tolist() == [1, 1, 0, 0]


def test_chunked_assignment_matches_brute_force():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(130, 7)).astype(np.float32))
    centroids = torch.from_numpy(rng.normal(size=(9, 7)).astype(np.float32))
    labels, dist = assign_nearest(x, centroids, chunk_size=16)
    brute = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert torch.equal(labels, brute.argmin(1))
    torch.testing.assert_close(dist, brute.min(1).values, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("balanced", [False, True])
def test_residual_levels_reduce_error(balanced):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    codes, codebooks, stats = residual_kmeans(x, [8, 8, 8], balanced=balanced, seed=0)
    assert codes.shape == (300, 3) and codes.dtype == np.int64
    assert [cb.shape for cb in codebooks] == [(8, 16)] * 3
    mse = stats["mse"]
    assert mse[0] > mse[1] > mse[2]
    assert stats["relative_error"][0] < 1.0
    # The residual left equals x minus the sum of chosen centroids.
    recon = sum(cb.numpy()[codes[:, level]] for level, cb in enumerate(codebooks))
    assert np.mean(((x - recon) ** 2).sum(1)) == pytest.approx(mse[2], rel=1e-4)


def test_subsampled_fit_still_balances_all_items():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(250, 6)).astype(np.float32)
    codes, _, _ = residual_kmeans(x, [10, 10], balanced=True, max_fit_samples=60, seed=0)
    for level in range(2):
        assert np.bincount(codes[:, level], minlength=10).tolist() == [25] * 10


def test_kmeans_input_errors():
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans(np.zeros((3, 2), np.float32), 4)
    with pytest.raises(ValueError, match="init"):
        kmeans(np.zeros((5, 2), np.float32), 2, init="bogus")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="codebook_size"):
        RQKMeansConfig(codebook_size=1)
    with pytest.raises(ValueError, match="num_levels"):
        RQKMeansConfig(num_levels=0)
    with pytest.raises(ValueError, match="max_fit_samples"):
        RQKMeansConfig(codebook_size=64, max_fit_samples=10)
    with pytest.raises(ValueError, match="init"):
        RQKMeansConfig(init="forgy")
    x, _ = _blobs(num_blobs=2, per_blob=5)
    with pytest.raises(ValueError, match=r"`codebook_size` \(16\) must be smaller than the number of items \(10\)"):
        RQKMeansTokenizer(codebook_size=16).fit(_catalog(10), embeddings=x)


@pytest.mark.parametrize("balanced", [False, True])
def test_tokenizer_fit_save_load_round_trip(tmp_path, balanced):
    x, _ = _blobs(num_blobs=6, per_blob=30, dim=12, spread=1.0)
    catalog = _catalog(len(x))
    tok = get_tokenizer_class("rq-kmeans")(num_levels=2, codebook_size=6, balanced=balanced, seed=3)
    tok.fit(catalog, embeddings=x)
    stats = tok.stats
    assert stats["collision_rate_after"] == 0.0
    assert len({tuple(row) for row in tok.codes.tolist()}) == len(x)
    assert len(stats["utilisation"]) == tok.code_length
    assert stats["utilisation"][0] == 1.0
    assert stats["relative_error_per_level"][1] < stats["relative_error_per_level"][0]
    assert stats["fit_seconds"] > 0
    if balanced:
        assert np.bincount(tok.codes[:, 0]).tolist() == [30] * 6
    else:  # nearest-centroid codes of the training items are reproduced by encode_embeddings
        np.testing.assert_array_equal(tok.encode_embeddings(x), tok.codes[:, :2])

    tok.save_pretrained(tmp_path / "tok")
    loaded = AutoItemTokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, RQKMeansTokenizer)
    np.testing.assert_array_equal(loaded.codes, tok.codes)
    new = np.random.default_rng(9).normal(size=(7, 12)).astype(np.float32)
    np.testing.assert_array_equal(loaded.encode_embeddings(new), tok.encode_embeddings(new))
    assert loaded.encode("5") == tok.encode("5") and loaded.decode(tok.encode("5")) == "5"
    with pytest.raises(ValueError, match=r"shape \(n, 12\)"):
        loaded.encode_embeddings(np.zeros((2, 5), np.float32))


def test_same_seed_same_codes_other_seed_differs():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 10)).astype(np.float32)
    catalog = _catalog(400)
    a = RQKMeansTokenizer(codebook_size=16, seed=1).fit(catalog, embeddings=x).codes
    b = RQKMeansTokenizer(codebook_size=16, seed=1).fit(catalog, embeddings=x).codes
    c = RQKMeansTokenizer(codebook_size=16, seed=2).fit(catalog, embeddings=x).codes
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:, :3], c[:, :3])
