"""SASRec: config validation, shapes, causality, losses, save/load through the Auto classes, recommend()."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

import genrec.models  # noqa: F401  (registers the Auto classes)
from genrec.models.sasrec import SASRecConfig, SASRecModel
from genrec.models.sasrec.modeling_sasrec import history_mask

NUM_ITEMS = 30


ITEM_IDS = [f"item{j}" for j in range(NUM_ITEMS)]


def tiny_config(**overrides) -> SASRecConfig:
    values = dict(
        num_items=NUM_ITEMS,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=8,
        hidden_dropout_prob=0.0,
        attention_dropout=0.0,
    )
    values.update(overrides)
    return SASRecConfig(**values)


def tiny_model(**overrides) -> SASRecModel:
    return SASRecModel(tiny_config(**overrides), item_ids=ITEM_IDS)


# ----- config -------------------------------------------------------------------------------------
def test_config_defaults_and_model_type():
    config = SASRecConfig(num_items=5)
    assert config.model_type == "genrec-sasrec"
    assert config.intermediate_size == config.hidden_size
    assert SASRecConfig.from_dict(config.to_dict()).num_items == 5


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_size", 15, "divisible by `num_attention_heads`"),
        ("loss_type", "softmax", "`loss_type`"),
        ("num_items", -1, "`num_items` (-1)"),
        ("hidden_size", 1.5, "`hidden_size` (1.5) must be an integer"),
        ("hidden_dropout_prob", 1.0, "`hidden_dropout_prob` (1.0) must be in [0, 1)"),
        ("hidden_act", "swishy", "`hidden_act`"),
        ("num_hidden_layers", 0, "`num_hidden_layers` (0)"),
        ("pad_token_id", 3, "`pad_token_id` (3)"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError) as error:
        tiny_config(**{field: value})
    assert message in str(error.value)


def test_model_needs_items():
    with pytest.raises(ValueError, match="num_items"):
        SASRecModel(SASRecConfig(num_items=0))


# ----- forward ------------------------------------------------------------------------------------
def test_shapes_and_loss_types():
    model = tiny_model()
    input_ids = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    out = model(input_ids)
    assert out.logits.shape == (2, NUM_ITEMS)
    assert out.last_hidden_state.shape == (2, 5, 16)
    assert model.score(input_ids).shape == (2, NUM_ITEMS)
    labels = torch.tensor([[-100, -100, 4, 5, 6], [2, 3, 4, 5, 6]])
    for loss_type in ("ce", "bce"):
        loss = tiny_model(loss_type=loss_type)(input_ids, labels=labels).loss
        assert loss.ndim == 0 and torch.isfinite(loss)
    # A fresh CE model is close to uniform over the catalog.
    assert abs(model(input_ids, labels=labels).loss.item() - torch.log(torch.tensor(float(NUM_ITEMS))).item()) < 0.5


def test_causal_and_padding_invariance():
    model = tiny_model().eval()
    history = torch.tensor([[3, 4, 5, 6]])
    padded = torch.tensor([[0, 0, 3, 4, 5, 6]])
    # Left padding does not change the scores (positions are counted from the right).
    torch.testing.assert_close(model.score(history), model.score(padded))
    # Causality: changing a later item does not change the hidden state of earlier positions.
    changed = torch.tensor([[3, 4, 5, 9]])
    h1, h2 = model.encode(history), model.encode(changed)
    torch.testing.assert_close(h1[:, :3], h2[:, :3])
    assert not torch.allclose(h1[:, 3], h2[:, 3])


def test_too_long_input_and_bad_labels_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[1, 30\]"):
        model(torch.tensor([[1, 2]]), labels=torch.tensor([[2, 31]]))


@pytest.mark.parametrize("loss_type", ["ce", "bce"])
def test_loss_decreases(loss_type):
    torch.manual_seed(0)
    model = tiny_model(loss_type=loss_type)
    # Deterministic pattern: item r is always followed by item r + 1.
    input_ids = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18]])
    labels = input_ids + 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(40):
        loss = model(input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # BCE samples a fresh negative each step, so compare the mean of the last steps.
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0]


def test_bce_negatives_never_equal_positives(monkeypatch):
    model = SASRecModel(tiny_config(loss_type="bce", num_items=2), item_ids=["a", "b"])
    # With two items the only negative of item 1 is item 2: the loss must use exactly that.
    hidden = model.encode(torch.tensor([[1]]))
    positive = (hidden[0, 0] * model.item_embeddings.weight[1]).sum()
    negative = (hidden[0, 0] * model.item_embeddings.weight[2]).sum()
    expected = torch.nn.functional.softplus(-positive) + torch.nn.functional.softplus(negative)
    loss = model(torch.tensor([[1]]), labels=torch.tensor([[1]])).loss
    torch.testing.assert_close(loss, expected)


# ----- persistence --------------------------------------------------------------------------------
def test_save_load_round_trip_with_auto_classes(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "item_ids.json").read_text())["item_ids"] == ITEM_IDS
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, SASRecConfig) and config.num_items == NUM_ITEMS
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SASRecModel)
    assert loaded.item_ids == ITEM_IDS
    input_ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    torch.testing.assert_close(model.score(input_ids), loaded.score(input_ids))
    assert model.recommend([["item1", "item2"]], k=5) == loaded.recommend([["item1", "item2"]], k=5)


def test_load_refuses_a_catalog_from_another_checkpoint_and_warns_on_old_ones(tmp_path, caplog):
    import shutil

    tiny_model().save_pretrained(tmp_path / "a")
    SASRecModel(tiny_config(), item_ids=ITEM_IDS[::-1]).save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["catalog_fingerprint"]
    shutil.copy(tmp_path / "b" / "item_ids.json", tmp_path / "a" / "item_ids.json")  # swapped: other columns
    with pytest.raises(ValueError, match=r"item_ids.json do not belong to the weights.*catalog_fingerprint"):
        AutoModel.from_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    del config["catalog_fingerprint"]  # a checkpoint saved before fingerprints: loads, with a warning
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING"):
        assert AutoModel.from_pretrained(tmp_path / "b").item_ids == ITEM_IDS[::-1]
    assert "no catalog_fingerprint" in caplog.text


# ----- recommend ----------------------------------------------------------------------------------
def test_recommend_returns_catalog_ids_best_first():
    model = tiny_model().eval()
    histories = [["item1", "item2", "item3"], ["item7"]]
    results = model.recommend(histories, k=5, exclude_history=False)
    scores = model.score(model.encode_histories(histories))
    assert len(results) == 2
    for row, result in enumerate(results):
        assert len(result) == 5
        ids = [item_id for item_id, _ in result]
        values = [value for _, value in result]
        assert all(item_id in ITEM_IDS for item_id in ids)
        assert values == sorted(values, reverse=True)
        expected = scores[row].topk(5).indices.tolist()
        assert ids == [ITEM_IDS[column] for column in expected]


def test_recommend_excludes_the_whole_history_beyond_the_window():
    model = tiny_model().eval()
    history = [f"item{j}" for j in range(NUM_ITEMS - 13)]  # 17 items; the model reads the last 8
    result = model.recommend([history], k=10, exclude_history=True)[0]
    assert len(result) == 10 and not {item_id for item_id, _ in result} & set(history)


def test_recommend_returns_fewer_items_instead_of_excluded_ones():
    model = tiny_model().eval()
    history = [f"item{j}" for j in range(NUM_ITEMS - 3)]  # only item27..item29 are left to recommend
    result = model.recommend([history, ["item0"]], k=10, exclude_history=True)
    assert sorted(item_id for item_id, _ in result[0]) == ["item27", "item28", "item29"]
    assert all(score > float("-inf") for _, score in result[0]) and len(result[1]) == 10
    assert len(model.recommend([history], k=NUM_ITEMS, exclude_history=True)[0]) == 3


def test_history_mask():
    mask = history_mask(torch.tensor([[0, 0, 2, 3], [1, 1, 1, 1]]), 4)
    assert mask.tolist() == [[False, True, True, False], [True, False, False, False]]


def test_recommend_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="'nope'"):
        model.recommend([["item1", "nope"]], k=3)
    with pytest.raises(ValueError, match="empty"):
        model.recommend([[]], k=3)
    with pytest.raises(ValueError, match="`k`"):
        model.recommend([["item1"]], k=0)
    with pytest.raises(ValueError, match="`k`"):
        model.recommend([["item1"]], k=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="item_ids"):
        SASRecModel(tiny_config()).recommend([["item1"]], k=3)
    with pytest.raises(ValueError, match=r"needs `item_embeddings`: the item ids 'new' are not in the bound catalog"):
        model.set_catalog([*ITEM_IDS[:-1], "new"])
    with pytest.raises(ValueError, match="duplicate"):
        model.set_catalog(ITEM_IDS[:-1] + ["item0"])
    with pytest.raises(ValueError, match=r"`item_embeddings` has shape \(2, 3\)"):
        model.set_catalog(["new", "other"], item_embeddings=torch.zeros(2, 3))
    # the old name keeps its old meaning (name the rows in order) with a DeprecationWarning
    with pytest.warns(DeprecationWarning, match=r"set_item_ids\(item_ids\) is deprecated"):
        with pytest.raises(ValueError, match="must match"):
            model.set_item_ids(ITEM_IDS[:-1])
