"""Item text embeddings: encoders, the per-item on-disk cache, empty-text fallbacks."""

import hashlib

import numpy as np
import pytest

from genrec.data.catalog import ItemCatalog
from genrec.tokenization import embeddings as emb_module
from genrec.tokenization.embeddings import (
    EmbeddingCache,
    TextEncoder,
    default_cache_dir,
    embed_catalog,
    embed_texts,
    item_texts,
    load_text_encoder,
)


def _hash_vectors(texts, batch_size):
    """Deterministic 16-d vectors from a text hash: a real (if meaningless) encoder for cache tests."""
    out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], np.uint8) for t in texts])
    return out.astype(np.float32) / 255.0


class _CountingEncoder(TextEncoder):
    def __init__(self):
        super().__init__("test/hash-encoder", _hash_vectors)
        self.texts_seen = []

    def __call__(self, texts, batch_size=256):
        self.texts_seen.extend(texts)
        return super().__call__(texts, batch_size)


def _catalog(titles):
    return ItemCatalog([f"i{k}" for k in range(len(titles))], [{"title": t} for t in titles])


def test_cache_hit_skips_the_encoder_and_changed_texts_reembed_only_themselves(tmp_path):
    encoder = _CountingEncoder()
    catalog = _catalog(["red lipstick", "blue mascara", "green nail polish", "red lipstick"])
    first = embed_catalog(catalog, cache_dir=tmp_path, encoder=encoder)
    assert first.shape == (4, 16) and first.dtype == np.float32
    assert encoder.num_calls == 1
    assert len(encoder.texts_seen) == 3  # the duplicate title is embedded once
    np.testing.assert_array_equal(first[0], first[3])

    second = embed_catalog(catalog, cache_dir=tmp_path, encoder=encoder)
    assert encoder.num_calls == 1  # all four rows came from the cache
    np.testing.assert_array_equal(first, second)

    changed = _catalog(["red lipstick", "blue mascara", "yellow nail polish", "red lipstick"])
    third = embed_catalog(changed, cache_dir=tmp_path, encoder=encoder)
    assert encoder.num_calls == 2
    assert encoder.texts_seen[3:] == ["Title: yellow nail polish"]
    np.testing.assert_array_equal(third[:2], first[:2])
    np.testing.assert_array_equal(third[2], _hash_vectors(["Title: yellow nail polish"], 1)[0])


def test_cache_keys_include_the_model_name(tmp_path):
    catalog = _catalog(["a", "b"])
    enc_a = _CountingEncoder()
    embed_catalog(catalog, cache_dir=tmp_path, encoder=enc_a)
    enc_b = TextEncoder("test/other-model", _hash_vectors)
    embed_catalog(catalog, cache_dir=tmp_path, encoder=enc_b)
    assert enc_b.num_calls == 1  # another model never reads the first model's vectors


def test_cache_shards_merge_and_stay_readable(tmp_path, monkeypatch):
    monkeypatch.setattr(emb_module, "MAX_SHARDS", 3)
    cache = EmbeddingCache("test/merge", tmp_path)
    texts = [f"text {k}" for k in range(6)]
    for text in texts:  # one shard per call: the 4th call triggers a merge
        cache.add([text], _hash_vectors([text], 1))
    assert len(list(cache.folder.glob("shard-*.safetensors"))) <= 3
    got, hit = cache.lookup(texts)
    assert hit.all()
    np.testing.assert_array_equal(got, _hash_vectors(texts, 1))


def test_corrupt_shard_is_ignored(tmp_path):
    cache = EmbeddingCache("test/corrupt", tmp_path)
    cache.add(["x"], _hash_vectors(["x"], 1))
    (cache.folder / "shard-broken.safetensors").write_bytes(b"not a safetensors file")
    got, hit = cache.lookup(["x", "y"])
    assert hit.tolist() == [True, False]


def test_genrec_cache_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    monkeypatch.delenv("GENREC_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "genrec", "embeddings")


def test_empty_text_falls_back_to_other_fields_then_item_id():
    catalog = ItemCatalog(["a", "b", "c"], [{"title": "Lipstick"}, {"title": "", "price": 3.5}, {}])
    texts = item_texts(catalog)
    assert texts[0] == "Title: Lipstick"
    assert texts[1] == "price: 3.5"  # not a default text field, rendered as a fallback
    assert texts[2] == "Item c"
    with pytest.raises(ValueError, match="1 item\\(s\\) have no text"):
        item_texts(catalog, empty_text="error")
    with pytest.raises(ValueError, match="empty_text"):
        item_texts(catalog, empty_text="skip")


def test_catalog_without_any_text_raises():
    catalog = ItemCatalog(["a", "b"], None)
    with pytest.raises(ValueError, match="no item text"):
        embed_catalog(catalog, encoder=_CountingEncoder(), use_cache=False)


def test_embed_texts_validates_inputs():
    with pytest.raises(ValueError, match="batch_size"):
        embed_texts(["a"], batch_size=0, encoder=_CountingEncoder())
    with pytest.raises(ValueError, match="list of strings"):
        embed_texts("abc", encoder=_CountingEncoder())
    with pytest.raises(ValueError, match="backend"):
        load_text_encoder(None, backend="onnx")


def test_bundled_minilm_sentence_transformers_and_mean_pooling_agree(tmp_path):
    texts = ["Title: red matte lipstick; Brand: X", "Title: crimson lip color", "Title: stainless steel wrench"]
    st = embed_texts(texts)  # bundled all-MiniLM-L6-v2 via sentence-transformers
    assert st.shape == (3, 384) and st.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(st, axis=1), 1.0, atol=1e-5)
    sims = st @ st.T
    assert sims[0, 1] > sims[0, 2]  # two lipsticks are closer than lipstick vs wrench
    hf = embed_texts(texts, backend="transformers")  # AutoModel + mean pooling on the same weights
    np.testing.assert_allclose((st * hf).sum(1), 1.0, atol=1e-4)

    encoder = load_text_encoder(None)
    calls = encoder.num_calls
    catalog = _catalog(["red matte lipstick", "stainless steel wrench"])
    first = embed_catalog(catalog, cache_dir=tmp_path)
    assert encoder.num_calls == calls + 1
    second = embed_catalog(catalog, cache_dir=tmp_path)
    assert encoder.num_calls == calls + 1  # served from the cache, the model did not run
    np.testing.assert_array_equal(first, second)
