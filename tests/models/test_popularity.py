"""Popularity baseline: training counts only, SASRec's ranking interface, save/load, `genrec train`."""

import json

import pytest
import torch
import yaml

from genrec.models.popularity import PopularityConfig, PopularityModel
from genrec.training.pipeline import load_split


def _write_dataset(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    return str(folder)


@pytest.fixture
def leaky_dataset(tmp_path):
    """Items "8" and "9" are only ever validation/test targets: a model that sees them would rank them first.

    Training parts (s[:-2]): u1 = 1 2 3, u2 = 2 3, u3 = 3 4, u4 = 3 -> counts 1:1, 2:2, 3:4, 4:1, 8:0, 9:0.
    """
    return _write_dataset(tmp_path / "leaky", ["u1 1 2 3 8 9", "u2 2 3 8 9", "u3 3 4 9 8", "u4 3 8 9"])


def test_counts_come_from_the_training_part_only(leaky_dataset):
    from genrec.training.pipeline import build_model

    data, train_sequences, valid, test = load_split(leaky_dataset)
    model = build_model("popularity", {}, data.item_ids, catalog=data.catalog, train_sequences=train_sequences)
    counts = dict(zip(model.item_ids, model.item_counts.tolist()))
    assert counts == {"1": 1.0, "2": 2.0, "3": 4.0, "4": 1.0, "8": 0.0, "9": 0.0}
    assert model.requires_training is False and sum(p.numel() for p in model.parameters()) == 0
    # every history gets the same ranking, by count; the held-out-only items come last
    ranked = model.recommend([["1"], ["4", "2"]], k=6, exclude_history=False)
    assert [item for item, _ in ranked[0][:2]] == ["3", "2"] and ranked[0] == ranked[1]
    assert {item for item, _ in ranked[0][-2:]} == {"8", "9"}
    assert [score for _, score in ranked[0]] == sorted((score for _, score in ranked[0]), reverse=True)


def test_recommend_excludes_history_and_validates_inputs():
    model = PopularityModel.from_sequences({"u": ["a", "b", "b", "c", "c", "c"]}, ["a", "b", "c", "d"])
    assert model.recommend([["c"]], k=2) == [[("b", 2.0), ("a", 1.0)]]
    assert model.recommend([["c"]], k=2, exclude_history=False) == [[("c", 3.0), ("b", 2.0)]]
    scores = model.score(torch.tensor([[0, 1], [2, 3]]))  # (batch, num_items): same row for every history
    assert scores.shape == (2, 4) and torch.equal(scores[0], torch.tensor([1.0, 2.0, 3.0, 0.0]))
    with pytest.raises(ValueError, match=r"`k` \(5\)"):
        model.recommend([["a"]], k=5)
    with pytest.raises(ValueError, match="not in the model's catalog"):
        model.recommend([["zzz"]], k=2)
    with pytest.raises(ValueError, match="non-empty list"):
        model.recommend([[]], k=2)
    with pytest.raises(ValueError, match="not in the catalog"):
        PopularityModel.from_sequences([["a", "x"]], ["a"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_items": -1}, "`num_items` (-1)"), ({"max_position_embeddings": 0}, "`max_position_embeddings` (0)"),
     ({"max_position_embeddings": 2.5}, "`max_position_embeddings` (2.5)")],
)
def test_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError) as error:
        PopularityConfig(**kwargs)
    assert message in str(error.value)


def test_save_load_round_trip_and_auto_model(tmp_path):
    from transformers import AutoModel

    import genrec  # noqa: F401  (registers the Auto classes)

    model = PopularityModel.from_sequences([["a", "b", "b"], ["c", "b"]], ["a", "b", "c"], max_position_embeddings=7)
    model.save_pretrained(tmp_path / "pop")
    assert {path.name for path in (tmp_path / "pop").iterdir()} >= {"config.json", "model.safetensors", "item_ids.json"}
    loaded = AutoModel.from_pretrained(tmp_path / "pop")
    assert type(loaded) is PopularityModel and loaded.config.max_position_embeddings == 7
    assert loaded.item_ids == ["a", "b", "c"] and torch.equal(loaded.item_counts, torch.tensor([1.0, 3.0, 1.0]))
    histories = [["a"], ["c", "a"]]
    assert loaded.recommend(histories, k=2) == model.recommend(histories, k=2)


def test_genrec_train_and_evaluate_write_a_run_folder(tmp_path, toy_dataset, capsys):
    from genrec.cli import main

    config = tmp_path / "popularity.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"type": "popularity"},
        "data": {"dataset": toy_dataset},
        "training": {"num_train_epochs": 50, "eval_ks": [5, 10], "disable_tqdm": True, "report_to": "none"},
    }))
    output = tmp_path / "run"
    assert main(["train", "--config", str(config), "--output", str(output)]) == 0
    expected = {"checkpoint", "config.yaml", "log_history.json", "metrics.json", "resolved_config.json", "train.log"}
    assert {path.name for path in output.iterdir()} == expected
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["model/type"] == "popularity" and metrics["train/stopped_by"] == "fitted"
    assert metrics["train/global_step"] == 0 and metrics["model/num_parameters"] == 0
    assert metrics["train/best_valid_metric"] == metrics["valid/ndcg@10"]
    [[minutes, value]] = metrics["curve/valid/ndcg@10"]
    assert value == metrics["valid/ndcg@10"] and 0 <= minutes < 1
    for key in ("test/recall@10", "test/ndcg@5", "valid/recall@5", "train/seconds", "machine/cpu"):
        assert key in metrics
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(output), "--split", "both", "--ks", "5", "10",
                 "--output", str(report)]) == 0
    evaluated = json.loads(report.read_text())
    for key in ("test/recall@10", "test/ndcg@10", "valid/ndcg@5"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-12)


def test_beauty_preset_parses():
    from pathlib import Path

    from genrec.training import load_run_config

    run = load_run_config(Path(__file__).resolve().parents[2] / "scripts" / "configs" / "popularity-beauty.yaml")
    assert run.model_type == "popularity" and run.data.dataset == "amazon-beauty" and run.data.max_users is None
    assert run.training.exclude_history_items is False and 10 in run.training.eval_ks


def test_recommend_excludes_the_whole_history_and_never_pads_with_excluded_items():
    from genrec.models import PopularityModel

    items = [f"i{j}" for j in range(6)]
    model = PopularityModel.from_sequences({"u": ["i0", "i0", "i0", "i1", "i1", "i2"]}, items,
                                           max_position_embeddings=2)
    # "i0" (the most popular) sits outside the 2-item window of this history: still excluded
    recs = model.recommend([["i0", "i3", "i4"]], k=3)[0]
    assert "i0" not in [item for item, _ in recs] and [item for item, _ in recs][:2] == ["i1", "i2"]
    # k near the catalog size: only the 3 recommendable items come back, no -inf entries
    recs = model.recommend([["i0", "i1", "i2"]], k=6)[0]
    assert sorted(item for item, _ in recs) == ["i3", "i4", "i5"]
    assert all(score != float("-inf") for _, score in recs)
