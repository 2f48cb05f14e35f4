"""genrec.models.reward (config validation, forward/score semantics, save/load) and genrec.alignment.reward
(Trainer-based training on a planted signal)."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

from genrec.alignment.reward import (
    METRICS_FILE,
    RewardNegativeSamplingCollator,
    _training_windows,
    train_reward_model,
)
from genrec.models.reward import RewardModel, RewardModelConfig

TINY = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "max_history_items": 5, "dropout": 0.0}
IDS = [f"i{n}" for n in range(7)]


def _model(**overrides):
    torch.manual_seed(0)
    model = RewardModel(RewardModelConfig(num_items=len(IDS), **{**TINY, **overrides}), item_ids=IDS)
    with torch.no_grad():  # non-zero item biases so the bias path is exercised
        model.item_bias.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_items", -1), ("hidden_size", 0), ("num_layers", 1.5), ("num_heads", 3), ("intermediate_size", 0),
     ("mlp_hidden_size", -2), ("max_history_items", 0), ("dropout", 1.0), ("dropout", True),
     ("layer_norm_eps", 0.0), ("initializer_range", -0.1), ("hidden_act", "nope"), ("use_item_bias", "yes"),
     ("pad_token_id", 1)],
)
def test_bad_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        RewardModelConfig(**{"hidden_size": 8, "num_heads": 2, field: value})


def test_model_needs_a_catalog_of_matching_size():
    with pytest.raises(ValueError, match="num_items"):
        RewardModel(RewardModelConfig())
    with pytest.raises(ValueError, match="item_ids"):
        RewardModel(RewardModelConfig(num_items=3, **TINY), item_ids=["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        RewardModel(RewardModelConfig(num_items=3, **TINY), item_ids=["a", "b", "a"])


def test_forward_shapes_padding_and_loss():
    model = _model()
    input_ids = torch.tensor([[0, 0, 1, 2], [3, 4, 5, 6]])  # rows + 1, left-padded
    item_rows = torch.tensor([[0, 4, -1], [1, 2, 3]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(input_ids=input_ids, item_rows=item_rows, labels=labels)
    assert out.logits.shape == (2, 3) and out.user_states.shape == (2, TINY["hidden_size"])
    assert out.logits[0, 2] == 0.0  # padding slot
    valid = item_rows >= 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits[valid], labels[valid])
    torch.testing.assert_close(out.loss, expected)  # the padded slot's label 1.0 is ignored
    # left padding does not change a history's user vector
    alone = model(input_ids=torch.tensor([[1, 2]]), item_rows=torch.tensor([[0, 4]])).logits
    torch.testing.assert_close(alone[0], out.logits[0, :2])
    with pytest.raises(ValueError, match="item_rows"):
        model(input_ids=input_ids, item_rows=torch.tensor([[0, 7, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="max_history_items"):
        model(input_ids=torch.ones(1, 6, dtype=torch.long), item_rows=torch.tensor([[0]]))


def test_every_position_equals_its_prefix_alone():
    """Training reads the user vector after every position of a sequence; it must equal the vector of that prefix
    scored alone (what score() computes at inference)."""
    model = _model()
    sequence = torch.tensor([[3, 1, 5, 2, 7]])  # rows + 1
    states = model.encode(sequence)  # (1, 5, hidden)
    for t in range(5):
        prefix = model.encode(sequence[:, : t + 1])[:, -1]
        torch.testing.assert_close(states[:, t], prefix, atol=1e-5, rtol=1e-5)


def test_score_and_session_reward():
    model = _model()
    histories = [["i1", "i2"], ["i0", "i3", "i4", "i5", "i6", "i2"]]  # the second is cut to the last 5 items
    sessions = [["i3"], ["i0", "i1", "i2"]]
    scores = model.item_rewards(histories, sessions, batch_size=1)
    assert [len(s) for s in scores] == [1, 3] and all(0.0 < p < 1.0 for s in scores for p in s)
    input_ids = model.encode_histories(histories)
    assert input_ids.tolist() == [[0, 0, 0, 2, 3], [4, 5, 6, 7, 3]]  # rows + 1, the last 5 items, left-padded
    logits = model(input_ids=input_ids, item_rows=torch.tensor([[3, -1, -1], [0, 1, 2]])).logits
    torch.testing.assert_close(torch.tensor(scores[1]), logits[1].sigmoid())
    rewards = model.session_reward(histories, sessions)
    assert rewards[0] == pytest.approx(scores[0][0]) and rewards[1] == pytest.approx(sum(scores[1]) / 3)
    with pytest.raises(ValueError, match="'nope'"):
        model.item_rewards([["i1"]], [["nope"]])
    with pytest.raises(ValueError, match="not in the model's catalog"):
        model.item_rewards([["nope"]], [["i1"]])
    with pytest.raises(ValueError, match="one entry per user"):
        model.item_rewards([["i1"]], [["i1"], ["i2"]])
    with pytest.raises(ValueError, match="empty"):
        model.session_reward([["i1"]], [[]])
    with pytest.warns(FutureWarning, match="item_rewards"):  # the old name, kept as a deprecated alias
        assert model.score(histories, sessions) == model.item_rewards(histories, sessions)


def test_training_windows_cover_every_target_once():
    assert _training_windows(list(range(10)), 4) == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 5], [0, 1]]
    assert _training_windows([3], 4) == []
    targets = [t for w in _training_windows(list(range(23)), 5) for t in w[1:]]
    assert sorted(targets) == list(range(1, 23))


def test_learns_the_planted_signal(toy_reward, toy_split):
    """Next item = current + 1: popularity is useless there (AUC about 0.5 or below), the reward model must learn it."""
    model, metrics = toy_reward
    assert metrics["valid/num_users"] == 60 and metrics["valid/num_negatives"] == 10
    assert metrics["valid/auc"] > 0.8, metrics
    assert metrics["valid/auc"] > metrics["valid/auc_popularity"] + 0.3, metrics
    assert metrics["train/num_positives"] == sum(len(s) - 1 for s in toy_split.train_sequences.values())
    assert not metrics["train/stopped_by_time_budget"] and metrics["train/epochs"] == 40
    # the true next item of a fresh history outscores the other items on average
    history = ["3", "4", "5"]
    scores = model.item_rewards([history], [[str(i) for i in range(1, 25)]])[0]
    assert scores[5] > sum(scores) / len(scores)  # item "6"


def test_save_load_round_trip_and_auto_model(toy_reward, tmp_path):
    model, _ = toy_reward
    model.save_pretrained(tmp_path / "reward")
    files = {p.name for p in (tmp_path / "reward").iterdir()}
    assert {"config.json", "model.safetensors", "item_ids.json"} <= files
    assert not any(name.endswith((".bin", ".pkl", ".pt")) for name in files)
    assert json.loads((tmp_path / "reward" / "config.json").read_text())["model_type"] == "genrec-reward"
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "reward"), RewardModelConfig)
    histories, sessions = [["1", "2"], ["7", "8", "9"]], [["3", "10"], ["10", "11", "1"]]
    expected = model.item_rewards(histories, sessions)
    for loaded in (RewardModel.from_pretrained(tmp_path / "reward"), AutoModel.from_pretrained(tmp_path / "reward")):
        assert isinstance(loaded, RewardModel) and loaded.item_ids == model.item_ids
        assert loaded.item_rewards(histories, sessions) == expected


def test_train_options_time_budget_max_users_output_dir(toy_split, tmp_path):
    config = RewardModelConfig(**{**TINY, "max_history_items": 8})
    model, metrics = train_reward_model(toy_split, config=config, epochs=3, batch_size=8, max_users=10,
                                        num_eval_negatives=5, output_dir=tmp_path / "rm", time_budget=1e-9)
    assert metrics["train/stopped_by_time_budget"] and metrics["train/steps"] == 1 and metrics["train/epochs"] < 1
    assert metrics["num_users"] == 10 and metrics["valid/num_users"] == 10
    assert config.num_items == 0  # the caller's config is not modified
    saved = json.loads((tmp_path / "rm" / METRICS_FILE).read_text())
    assert saved["valid/auc"] == pytest.approx(metrics["valid/auc"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.item_rewards([["1"]], [["2"]]) == model.item_rewards([["1"]], [["2"]])
    # RewardModelConfig fields may be passed directly instead of a config (what YAML `reward:` sections do)
    model, metrics = train_reward_model(toy_split, epochs=1, max_users=5, num_eval_negatives=5, time_budget=1e-9,
                                        **TINY)
    assert model.config.hidden_size == TINY["hidden_size"] and model.config.num_items == 24


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_negatives": 0}, "num_negatives"), ({"epochs": 0}, "epochs"), ({"learning_rate": -1.0}, "learning_rate"),
     ({"max_users": 0}, "max_users"), ({"time_budget": 0}, "time_budget"), ({"batch_size": 2.5}, "batch_size"),
     ({"config": RewardModelConfig(num_items=5)}, "num_items"), ({"config": {"hidden_size": 8}}, "config"),
     ({"num_eval_negatives": 30}, "num_eval_negatives"), ({"hidden_sizes": 8}, "hidden_sizes"),
     ({"hidden_size": 8}, "not both")],
)
def test_train_rejects_bad_arguments(toy_split, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_reward_model(toy_split, **{"epochs": 1, "config": RewardModelConfig(**TINY), **kwargs})


def test_train_output_parent_must_exist(toy_split, tmp_path):
    with pytest.raises(FileNotFoundError):
        train_reward_model(toy_split, epochs=1, output_dir=tmp_path / "missing" / "rm")


def test_training_code_re_exports_the_model_classes():
    import genrec.alignment.reward as training

    assert training.RewardModel is RewardModel and training.RewardModelConfig is RewardModelConfig
    assert RewardModel.__module__ == "genrec.models.reward.modeling_reward"
    assert RewardModelConfig.__module__ == "genrec.models.reward.configuration_reward"


def test_negative_sampling_collator_layout():
    collator = RewardNegativeSamplingCollator(num_items=7, num_negatives=3, seed=0)
    batch = collator([{"input_ids": [3, 1, 4, 6]}, {"input_ids": [2, 0]}])
    assert batch["input_ids"].tolist() == [[4, 2, 5], [0, 0, 3]]  # window[:-1] rows + 1, left-padded
    rows = batch["item_rows"]
    assert rows.shape == (2, 3, 4) and rows[..., 0].tolist() == [[1, 4, 6], [-1, -1, 0]]  # positive = next row
    assert (rows[1, :2] == -1).all()  # padded positions score nothing
    real = rows[..., 0] >= 0
    negatives = rows[..., 1:][real]  # (n, K)
    assert ((negatives >= 0) & (negatives < 7)).all()
    assert (negatives != rows[..., :1][real]).all()  # never the positive
    assert batch["labels"][..., 0].eq(1).all() and batch["labels"][..., 1:].eq(0).all()
    assert not torch.equal(collator([{"input_ids": list(range(7))}])["item_rows"],
                           collator([{"input_ids": list(range(7))}])["item_rows"])  # fresh negatives every call


def test_per_position_forward_equals_each_prefix_scored_alone():
    """The training forward (item_rows per position) scores exactly what score() sees for each prefix."""
    model = _model()
    collator = RewardNegativeSamplingCollator(num_items=len(IDS), num_negatives=2, seed=1)
    batch = collator([{"input_ids": [3, 1, 5, 2]}, {"input_ids": [6, 0]}])
    out = model(**batch)
    assert out.logits.shape == batch["item_rows"].shape
    valid = batch["item_rows"] >= 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits[valid], batch["labels"][valid])
    torch.testing.assert_close(out.loss, expected)
    for t in range(3):  # prefix of the first window ending at position t
        prefix = batch["input_ids"][:1, : t + 1]
        alone = model(input_ids=prefix, item_rows=batch["item_rows"][0, t][None]).logits[0]
        torch.testing.assert_close(out.logits[0, t], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="item_rows"):
        model(input_ids=batch["input_ids"], item_rows=batch["item_rows"][:, :2])
