"""Training layer: config parsing, collators, callbacks, full-ranking evaluation and the atomic run folder."""

import json

import pytest
import torch
import yaml

from genrec.evaluation import evaluate_scores
from genrec.models.sasrec import SASRecConfig, SASRecModel
from genrec.training import (
    BestModelCallback,
    NextItemCollator,
    NextItemDataset,
    RankingSet,
    apply_overrides,
    build_run_config,
    full_ranking_metrics,
    load_run_config,
    run_training,
)
from genrec.training.pipeline import evaluate_checkpoint, prepare_output


def toy_run_values(dataset: str, **training) -> dict:
    return {
        "model": {
            "type": "sasrec",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "max_position_embeddings": 8,
            "hidden_dropout_prob": 0.0,
            "attention_dropout": 0.0,
        },
        "data": {"dataset": dataset},
        "training": {
            "learning_rate": 0.02,
            "per_device_train_batch_size": 16,
            "num_train_epochs": 8,
            "eval_ks": [1, 5],
            "metric_for_early_stopping": "ndcg@5",
            "early_stopping_patience": None,
            "disable_tqdm": True,
            "seed": 0,
            **training,
        },
    }


# ----- config parsing -----------------------------------------------------------------------------
def test_load_run_config_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(toy_run_values("amazon-beauty")))
    run = load_run_config(path, ["training.learning_rate=0.5", "model.hidden_size=32", "data.max_users=7"])
    assert run.model_type == "sasrec"
    assert run.training.learning_rate == 0.5
    assert run.model_kwargs["hidden_size"] == 32
    assert run.data.max_users == 7
    assert run.training.eval_ks == [1, 5]
    # The raw values round-trip.
    assert build_run_config(run.to_dict()).to_dict() == run.to_dict()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"modle": {}}, "unknown config section(s) ['modle']"),
        ({"model": {"hidden_sise": 3}}, "unknown `model` key(s) ['hidden_sise']"),
        ({"model": {"type": "tiger"}}, "`model.type` ('tiger') must be one of ['sasrec', "),
        ({"model": {"hidden_size": 15, "num_attention_heads": 2}}, "divisible"),
        ({"data": {"datset": "x"}}, "unknown `data` key(s) ['datset']"),
        ({"data": {"max_users": 0}}, "`data.max_users` (0)"),
        ({"training": {"learning_rat": 1}}, "unknown `training` key(s) ['learning_rat']"),
        ({"training": {"output_dir": "x"}}, "`training.output_dir` cannot be set"),
        ({"training": {"eval_ks": [0]}}, "`training.eval_ks` ([0])"),
        ({"training": {"metric_for_early_stopping": "ndcg@7"}}, "`training.metric_for_early_stopping` ('ndcg@7')"),
        ({"training": {"early_stopping_patience": 0}}, "`training.early_stopping_patience` (0)"),
    ],
)
def test_config_errors_name_the_key(values, message):
    with pytest.raises(ValueError) as error:
        build_run_config(values)
    assert message in str(error.value)


def test_override_errors_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["learning_rate=3"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_run_config(bad)


# ----- data -> batches ----------------------------------------------------------------------------
def test_next_item_dataset_and_collator():
    index = {name: row for row, name in enumerate("abcdefg")}
    dataset = NextItemDataset([["a", "b", "c", "d"], ["e"], ["f", "g"]], index, max_length=2)
    assert len(dataset) == 2  # the single-item user gives no pair
    assert dataset[0] == {"input_ids": [2, 3], "labels": [3, 4]}  # keeps the most recent max_length + 1
    batch = NextItemCollator()([dataset[0], dataset[1]])
    assert batch["input_ids"].tolist() == [[2, 3], [0, 6]]
    assert batch["labels"].tolist() == [[3, 4], [-100, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="'zz'"):
        NextItemDataset([["a", "zz"]], index, max_length=4)
    with pytest.raises(ValueError, match="same length"):
        NextItemCollator()([{"input_ids": [1, 2], "labels": [2]}])


def test_full_ranking_metrics_match_one_big_batch():
    torch.manual_seed(0)
    model = SASRecModel(
        SASRecConfig(num_items=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, max_position_embeddings=6)
    ).eval()
    histories = [[1 + (user + step) % 20 for step in range(1 + user % 5)] for user in range(23)]
    # Targets are never in their history (history columns are user..user+4, target user+10 mod 20).
    ranking = RankingSet(histories=histories, targets=torch.tensor([(user + 10) % 20 for user in range(23)]))
    small_batches = full_ranking_metrics(model, ranking, ks=(1, 5, 10), batch_size=4)
    from genrec.training import left_pad

    expected = evaluate_scores(model.score(left_pad(histories)), ranking.targets, ks=(1, 5, 10))
    expected["invalid_rate"] = 0.0  # SASRec scores every item: no slot is empty
    assert small_batches.keys() == expected.keys()
    for key in expected:
        assert small_batches[key] == pytest.approx(expected[key], abs=1e-9)
    # Excluding history items removes competitors only, so no target can rank lower.
    excluded = full_ranking_metrics(model, ranking, ks=(1, 5, 10), batch_size=5, exclude_history=True)
    for key in expected:
        assert excluded[key] >= small_batches[key] - 1e-12
    assert excluded["mrr@10"] > small_batches["mrr@10"]


def test_best_model_callback_restores_best_and_stops():
    class State:
        global_step, epoch = 0, 0.0

    class Control:
        should_training_stop = False

    model = torch.nn.Linear(2, 1)
    callback = BestModelCallback(metric="eval_ndcg@10", patience=2)
    control, state = Control(), State()
    for step, value in enumerate([0.1, 0.3, 0.2, 0.25]):
        state.global_step, state.epoch = step, float(step)
        with torch.no_grad():
            model.weight.fill_(value)
        callback.on_evaluate(None, state, control, metrics={"eval_ndcg@10": value}, model=model)
    assert callback.best_value == 0.3 and callback.best_epoch == 1.0
    assert control.should_training_stop  # two evaluations without improvement
    callback.on_train_end(None, state, control, model=model)
    assert torch.all(model.weight == 0.3)
    with pytest.raises(ValueError, match="eval_ndcg@10"):
        callback.on_evaluate(None, state, control, metrics={"eval_loss": 1.0}, model=model)


# ----- end-to-end run folder ----------------------------------------------------------------------
def test_run_training_learns_the_toy_pattern_and_writes_the_run_folder(tmp_path, toy_dataset):
    output = tmp_path / "run"
    metrics = run_training(build_run_config(toy_run_values(toy_dataset)), output)
    assert sorted(path.name for path in output.iterdir()) == [
        "checkpoint",
        "config.yaml",
        "log_history.json",
        "metrics.json",
        "resolved_config.json",
        "train.log",
    ]
    assert sorted(path.name for path in (output / "checkpoint").iterdir()) == [
        "README.md",  # the model card, with this run's dataset and metrics
        "config.json",
        "item_ids.json",
        "model.safetensors",
    ]
    card = (output / "checkpoint" / "README.md").read_text()
    assert f"| test | recall@5 | {metrics['test/recall@5']:.5f} |" in card and "library_name: genrec" in card
    on_disk = json.loads((output / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("test/recall@5", "test/ndcg@5", "valid/ndcg@5", "train/seconds", "machine/cpu", "test/mrr@5"):
        assert key in on_disk
    # "Next item = current + 1" is learnable: far above chance (5 / 24 ~ 0.21).
    assert on_disk["test/recall@5"] > 0.6, on_disk
    assert on_disk["train/epochs"] == 8.0 and on_disk["train/stopped_by"] == "max_epochs"
    assert yaml.safe_load((output / "config.yaml").read_text())["model"]["hidden_size"] == 16
    resolved = json.loads((output / "resolved_config.json").read_text())
    assert resolved["model"]["num_items"] == 24 and resolved["training"]["learning_rate"] == 0.02
    assert "eval_ndcg@5" in (output / "train.log").read_text()
    # No temporary siblings left behind.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "toy-data"]


def test_failed_run_leaves_no_half_written_output(tmp_path, toy_dataset, monkeypatch):
    output = tmp_path / "run"
    output.mkdir()
    (output / "metrics.json").write_text('{"old": 1}')

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full while writing the checkpoint")

    monkeypatch.setattr(SASRecModel, "save_pretrained", broken_save)
    values = toy_run_values(toy_dataset, num_train_epochs=1)
    with pytest.raises(OSError, match="disk full"):
        run_training(build_run_config(values), output, overwrite=True)
    # The previous run folder is untouched, nothing half-written appeared, the log was kept aside.
    assert sorted(path.name for path in output.iterdir()) == ["metrics.json"]
    assert (output / "metrics.json").read_text() == '{"old": 1}'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "run.failed.log", "toy-data"]


def test_output_folder_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match="parent folder"):
        prepare_output(tmp_path / "missing" / "run")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_output(existing)
    assert prepare_output(existing, overwrite=True) == existing
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        prepare_output(tmp_path / "file")


def test_doubled_table_trains_like_the_single_one_and_reports_the_drop(tmp_path):
    # Every row twice used to put each test item into its history (test recall@10 0.785 vs 0.005 on Beauty-like
    # data); the loader now drops the duplicate events, says so in train.log and metrics.json, and trains on
    # exactly the single table.
    import random

    rng = random.Random(0)
    rows = [f"u{u},i{item},{t}\n" for u in range(30) for t, item in enumerate(rng.sample(range(20), 5))]
    header = "user_id,item_id,timestamp\n"
    (tmp_path / "single.csv").write_text(header + "".join(rows))
    (tmp_path / "doubled.csv").write_text(header + "".join(row for row in rows for _ in range(2)))
    metrics = {}
    for name in ("single", "doubled"):
        values = toy_run_values(str(tmp_path / f"{name}.csv"), num_train_epochs=2)
        metrics[name] = run_training(build_run_config(values), tmp_path / f"run-{name}")
    assert metrics["single"]["data/duplicates_dropped"] == 0
    assert metrics["doubled"]["data/duplicates_dropped"] == len(rows)
    assert f"dropped {len(rows)} duplicate events" in (tmp_path / "run-doubled" / "train.log").read_text()
    for key in ("test/recall@5", "test/ndcg@5", "valid/recall@5"):
        assert metrics["doubled"][key] == pytest.approx(metrics["single"][key]), key
    # genrec evaluate loads the data the same way, and says what it dropped
    from genrec.training import evaluate_checkpoint

    again = evaluate_checkpoint(tmp_path / "run-doubled", str(tmp_path / "doubled.csv"), ks=(5,))
    assert again["test/recall@5"] == pytest.approx(metrics["doubled"]["test/recall@5"])
    assert again["data/duplicates_dropped"] == len(rows)
    kept = evaluate_checkpoint(tmp_path / "run-doubled", str(tmp_path / "doubled.csv"), ks=(5,), keep_duplicates=True)
    assert kept["data/duplicates_dropped"] == 0
    from genrec.cli import main

    for flags, dropped in (([], len(rows)), (["--keep-duplicates"], 0)):
        report = tmp_path / f"eval{len(flags)}.json"
        assert main(["evaluate", "--checkpoint", str(tmp_path / "run-doubled"), "--ks", "5", "--output", str(report),
                     *flags]) == 0
        assert json.loads(report.read_text())["data/duplicates_dropped"] == dropped


def test_exclude_history_in_evaluation_covers_items_older_than_the_window():
    class FixedScorer(torch.nn.Module):
        """Scores item0 (the oldest history item) highest, the target item5 second."""

        device = torch.device("cpu")

        def score(self, input_ids):
            scores = torch.zeros(input_ids.shape[0], 6)
            scores[:, 0], scores[:, 5] = 2.0, 1.0
            return scores

    index = {f"item{j}": j for j in range(6)}
    ranking = RankingSet.from_split([{"history": ["item0", "item1", "item2", "item3"], "target": "item5"}], index,
                                    max_length=2)
    assert ranking.histories == [[3, 4]]  # the model reads the last two items (rows + 1)
    assert full_ranking_metrics(FixedScorer(), ranking, ks=(1,))["recall@1"] == 0.0
    assert full_ranking_metrics(FixedScorer(), ranking, ks=(1,), exclude_history=True)["recall@1"] == 1.0


def test_invalid_rate_counts_top_k_slots_without_a_catalog_item():
    class BeamLikeScorer(torch.nn.Module):
        """Like a generative model's score(): finite scores for the items found, -inf elsewhere."""

        device = torch.device("cpu")

        def score(self, input_ids):
            scores = torch.full((input_ids.shape[0], 8), float("-inf"))
            scores[0, :3] = torch.tensor([3.0, 2.0, 1.0])  # 3 of 5 slots filled
            scores[1, :8] = 1.0  # every slot filled
            return scores

    ranking = RankingSet(histories=[[1], [2]], targets=torch.tensor([0, 4]))
    metrics = full_ranking_metrics(BeamLikeScorer(), ranking, ks=(1, 5))
    assert metrics["invalid_rate"] == pytest.approx((2 / 5 + 0.0) / 2)
    assert metrics["recall@1"] == pytest.approx(0.5)


def test_validation_of_the_best_weights_is_not_ranked_again(tmp_path, toy_dataset, monkeypatch):
    """After training the model holds the best-validation weights, which the Trainer already ranked: the run's
    valid/* metrics are that validation's, and only test is ranked after training."""
    import genrec.training.pipeline as pipeline

    after_training = []
    real = pipeline.full_ranking_metrics

    def counting(model, ranking, **kwargs):
        after_training.append(kwargs.get("description"))
        return real(model, ranking, **kwargs)

    monkeypatch.setattr(pipeline, "full_ranking_metrics", counting)
    metrics = run_training(build_run_config(toy_run_values(toy_dataset, num_train_epochs=3)), tmp_path / "run")
    assert after_training == ["test ranking"]
    curve = metrics["curve/valid/ndcg@5"]
    assert len(curve) == 3 and metrics["valid/ndcg@5"] == max(value for _, value in curve)
    assert metrics["valid/num_users"] > 0 and "valid/runtime" not in metrics
    # the reused validation equals a fresh ranking of the saved (best) weights
    fresh = evaluate_checkpoint(tmp_path / "run", toy_dataset, splits=("valid",), ks=(1, 5))
    for key in ("valid/ndcg@5", "valid/recall@5", "valid/mrr@1"):
        assert fresh[key] == pytest.approx(metrics[key], abs=1e-9), key
