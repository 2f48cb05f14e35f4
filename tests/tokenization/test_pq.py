"""pq: product-quantization ids (one k-means codebook per embedding chunk) for parallel code prediction."""

import numpy as np
import pytest
import torch

from genrec.data import ItemCatalog
from genrec.tokenization import AutoItemTokenizer, get_tokenizer_class


def _catalog(n=60, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"i{j}" for j in range(n)]
    return ItemCatalog(ids, [{"title": i} for i in ids]), rng.normal(size=(n, dim)).astype(np.float32)


def test_codes_are_the_nearest_centroid_of_every_standardised_chunk(tmp_path):
    catalog, embeddings = _catalog()
    tokenizer = get_tokenizer_class("pq")(num_chunks=4, codebook_size=5, seed=0).fit(catalog, embeddings=embeddings)
    codes = np.asarray(tokenizer.codes)[:, :4]
    assert codes.shape == (60, 4) and codes.min() >= 0 and codes.max() < 5
    standard = (embeddings - embeddings.mean(0)) / embeddings.std(0, ddof=1)
    for c in range(4):
        part = standard[:, 2 * c:2 * c + 2]
        centroids = tokenizer._codebooks[c].numpy()
        nearest = ((part[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        assert (nearest == codes[:, c]).all()
    # new items are encoded from their embedding alone, the same way
    np.testing.assert_array_equal(tokenizer.encode_embeddings(embeddings[:7]), codes[:7])
    tokenizer.save_pretrained(tmp_path / "pq")
    loaded = AutoItemTokenizer.from_pretrained(tmp_path / "pq")
    np.testing.assert_array_equal(loaded.encode_embeddings(embeddings), tokenizer.encode_embeddings(embeddings))
    assert 0 < tokenizer.stats["relative_error"] < 1


def test_pq_refuses_bad_shapes():
    catalog, embeddings = _catalog()
    with pytest.raises(ValueError, match="num_chunks"):
        get_tokenizer_class("pq")(num_chunks=3, codebook_size=5).fit(catalog, embeddings=embeddings)
    with pytest.raises(ValueError, match="codebook_size"):
        get_tokenizer_class("pq")(num_chunks=4, codebook_size=60).fit(catalog, embeddings=embeddings)
    with pytest.raises(ValueError, match="codebook_size"):
        get_tokenizer_class("pq")(num_chunks=4, codebook_size=1)


def test_recgpt_reads_pq_codes():
    from genrec.models.recgpt import RecGPTForCausalLM

    catalog, embeddings = _catalog()
    torch.manual_seed(0)
    model = RecGPTForCausalLM.from_catalog(catalog, embeddings=embeddings, input_granularity="item",
                                           tokenizer_kwargs={"method": "pq", "num_chunks": 4, "codebook_size": 5},
                                           hidden_size=16, num_attention_heads=2, intermediate_size=32)
    assert model.config.num_chunks == 4 and model.config.codebook_size == 5 and model.config.fsq_levels == [5]
    assert model.recommend([["i1", "i2"]], k=3)[0][0][0] in catalog.item_ids
    with pytest.raises(ValueError, match="tokenizer.method"):
        RecGPTForCausalLM.from_catalog(catalog, embeddings=embeddings, tokenizer_kwargs={"method": "rq-vae"})
