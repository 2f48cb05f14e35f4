"""Last-item text-kNN baseline: nearest text neighbour first, decay over the last items, save/load, `genrec train`."""

import json

import numpy as np
import pytest
import torch
import yaml

from genrec.data import ItemCatalog
from genrec.models.textknn import TextKNNConfig, TextKNNModel

# Unit vectors at these angles (degrees): "b" is "a"'s nearest neighbour (10 deg), "c" is 40 deg from "a" and
# 30 deg from "b", "d" is opposite. Cosines are exact reference values: cos(10 deg), cos(30 deg), ...
ANGLES = {"a": 0.0, "b": 10.0, "c": 40.0, "d": 180.0}


def _vectors(scale=1.0):
    radians = np.deg2rad(list(ANGLES.values()))
    return scale * np.stack([np.cos(radians), np.sin(radians), np.zeros_like(radians)], axis=1).astype(np.float32)


def _model(**config):
    return TextKNNModel(TextKNNConfig(num_items=4, embedding_dim=3, **config), item_ids=list(ANGLES),
                        item_embeddings=_vectors(scale=3.0))  # unnormalised on purpose: stored as unit rows


def test_last_item_ranks_its_nearest_text_neighbour_first():
    model = _model()
    assert torch.allclose(model.item_embeddings.norm(dim=1), torch.ones(4))
    ranked = model.recommend([["d", "a"], ["a", "b"]], k=3, exclude_history=False)
    # history "d a": query = a; a itself is excluded (query item), then b (cos 10), c (cos 40), d last
    assert [item for item, _ in ranked[0]] == ["b", "c", "d"]
    assert ranked[0][0][1] == pytest.approx(np.cos(np.deg2rad(10.0)), abs=1e-6)
    assert [item for item, _ in ranked[1]][:2] == ["a", "c"]  # query = b: a (10 deg) before c (30 deg)
    # exclude_history also drops the older history items
    assert [item for item, _ in model.recommend([["d", "a"]], k=2)[0]] == ["b", "c"]


def test_exclude_query_items_off_makes_the_item_its_own_neighbour():
    model = _model(exclude_query_items=False)
    scores = model.score(torch.tensor([[0, 1]]))  # left padding, last item "a" (row 0 + 1)
    assert scores[0, 0] == pytest.approx(1.0) and int(scores.argmax()) == 0


def test_decay_weights_the_most_recent_items():
    # query from "c" (newest) and "a": with decay 1 both weigh the same, so the midpoint (20 deg) is closest to
    # "b" (10 deg away); with decay 0.1 "c" dominates (mean direction ~36 deg), still "b" but by a smaller margin.
    history = [["a", "c"]]
    even = _model(last_items=2, decay=1.0).score(_model().encode_histories(history))
    steep = _model(last_items=2, decay=0.1).score(_model().encode_histories(history))
    near_c = np.arctan2(np.sin(np.deg2rad(40.0)), 0.1 + np.cos(np.deg2rad(40.0)))  # direction of 0.1 a + c
    assert even[0, 1] == pytest.approx(np.cos(np.deg2rad(10.0)), abs=1e-5)
    assert steep[0, 1] == pytest.approx(np.cos(near_c - np.deg2rad(10.0)), abs=1e-5)
    assert torch.isinf(even[0, 0]) and torch.isinf(even[0, 2])  # both query items excluded
    # last_items=1 ignores "a" entirely: the query is "c"
    single = _model().score(_model().encode_histories(history))
    assert single[0, 1] == pytest.approx(np.cos(np.deg2rad(30.0)), abs=1e-5) and torch.isfinite(single[0, 0])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"decay": 0.0}, "`decay` (0.0)"), ({"decay": 1.5}, "`decay` (1.5)"), ({"last_items": 0}, "`last_items` (0)"),
     ({"last_items": 5, "max_position_embeddings": 3}, "`max_position_embeddings` (3) must be >= `last_items` (5)"),
     ({"embedding_dim": -2}, "`embedding_dim` (-2)"), ({"text_fields": "title"}, "`text_fields` ('title')"),
     ({"exclude_query_items": "yes"}, "`exclude_query_items` ('yes')")],
)
def test_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError) as error:
        TextKNNConfig(**kwargs)
    assert message in str(error.value)


def test_bad_embeddings_are_refused():
    config = TextKNNConfig(num_items=4, embedding_dim=3)
    with pytest.raises(ValueError, match=r"shape \(4, 2\) must be \(4, 3\)"):
        TextKNNModel(config, item_ids=list(ANGLES), item_embeddings=np.ones((4, 2)))
    zero = _vectors()
    zero[2] = 0.0
    with pytest.raises(ValueError, match="1 all-zero rows"):
        TextKNNModel(config, item_ids=list(ANGLES), item_embeddings=zero)
    catalog = ItemCatalog(list(ANGLES), [{"title": name} for name in ANGLES])
    with pytest.raises(ValueError, match=r"`embedding_dim` \(5\) does not match the encoder's vectors \(3\)"):
        TextKNNModel.from_catalog(catalog, embeddings=_vectors(), embedding_dim=5)


def test_from_catalog_embeds_once_and_a_saved_model_needs_no_encoder(tmp_path, monkeypatch):
    from transformers import AutoModel

    import genrec  # noqa: F401  (registers the Auto classes)

    calls = []

    def fake_embed_catalog(catalog, model_name=None, cache_dir=None, fields=None, **kwargs):
        calls.append({"items": list(catalog.item_ids), "model_name": model_name, "fields": fields, **kwargs})
        return _vectors()

    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog", fake_embed_catalog)
    catalog = ItemCatalog(list(ANGLES), [{"title": f"item {name}"} for name in ANGLES])
    model = TextKNNModel.from_catalog(catalog, text_fields=["title"], embedding_batch_size=8)
    assert calls == [{"items": list(ANGLES), "model_name": None, "fields": ["title"], "batch_size": 8}]
    assert model.config.embedding_dim == 3 and model.config.num_items == 4
    model.save_pretrained(tmp_path / "knn")

    def no_encoder(*args, **kwargs):
        raise AssertionError("a saved text-kNN model must not re-embed the catalog")

    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog", no_encoder)
    loaded = AutoModel.from_pretrained(tmp_path / "knn")
    assert type(loaded) is TextKNNModel and loaded.item_ids == list(ANGLES)
    assert torch.equal(loaded.item_embeddings, model.item_embeddings)
    assert loaded.recommend([["a"], ["c", "d"]], k=3) == model.recommend([["a"], ["c", "d"]], k=3)


def test_bundled_minilm_puts_the_similar_product_first(tmp_path):
    """End to end with the offline all-MiniLM-L6-v2 (embeddings cached in tmp_path)."""
    texts = {"polish": "Red nail polish lacquer", "shampoo": "Shampoo for dry damaged hair",
             "lacquer": "Nail lacquer in bright red", "conditioner": "Hair conditioner for dry hair",
             "grill": "Charcoal barbecue grill"}
    catalog = ItemCatalog(list(texts), [{"title": text} for text in texts.values()])
    model = TextKNNModel.from_catalog(catalog, cache_dir=tmp_path)
    assert model.config.embedding_dim == 384
    ranked = model.recommend([["polish"], ["grill", "shampoo"]], k=1, exclude_history=False)
    assert ranked[0][0][0] == "lacquer" and ranked[1][0][0] == "conditioner"


def test_genrec_train_writes_a_run_folder(tmp_path, toy_dataset, monkeypatch):
    from genrec.cli import main

    # toy items 1..24 (24 is followed by 1): the next item is always item + 1. Item i points at i * 15 degrees,
    # so its nearest neighbours are i - 1 and i + 1; i - 1 is in the history, which is excluded here, so the
    # target ranks first for every user.
    def fake_embed_catalog(catalog, model_name=None, cache_dir=None, fields=None, **kwargs):
        angles = np.deg2rad([15.0 * int(item) for item in catalog.item_ids])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)

    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog", fake_embed_catalog)
    config = tmp_path / "textknn.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"type": "textknn"},
        "data": {"dataset": toy_dataset},
        "training": {"eval_ks": [1, 5], "metric_for_early_stopping": "ndcg@5", "exclude_history_items": True,
                     "disable_tqdm": True},
    }))
    output = tmp_path / "run"
    assert main(["train", "--config", str(config), "--output", str(output)]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["model/type"] == "textknn" and metrics["train/stopped_by"] == "fitted"
    assert metrics["test/recall@1"] == 1.0 and metrics["valid/recall@1"] == 1.0
    assert metrics["curve/valid/ndcg@5"][0][1] == metrics["valid/ndcg@5"]
    assert (output / "checkpoint" / "model.safetensors").is_file()


def test_beauty_preset_parses():
    from pathlib import Path

    from genrec.training import load_run_config

    run = load_run_config(Path(__file__).resolve().parents[2] / "scripts" / "configs" / "textknn-beauty.yaml")
    assert run.model_type == "textknn" and run.data.dataset == "amazon-beauty" and run.data.max_users is None
    assert run.training.exclude_history_items is False and run.model_kwargs["last_items"] == 1
