"""WallClockEvalCallback: validations when the training clock passes each mark, and the curve in metrics.json."""

import json

import pytest
from transformers import TrainerCallback

from genrec.models.sasrec import SASRecConfig, SASRecModel
from genrec.training import (
    BestModelCallback,
    GenRecTrainingArguments,
    NextItemCollator,
    NextItemDataset,
    RankingSet,
    RecommendationTrainer,
    WallClockEvalCallback,
    build_run_config,
    run_training,
)
from genrec.training.trainer import check_marks

ITEMS = [str(i) for i in range(1, 13)]


class _FakeClock(TrainerCallback):
    """A clock that advances one second per training step (registered before the wall-clock callback)."""

    def __init__(self):
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += 1.0
        return control


def _tiny_trainer(tmp_path, callbacks, *, epochs=4, eval_strategy="no"):
    sequences = [[ITEMS[(start + step) % 12] for step in range(6)] for start in range(12)]
    index = {item: row for row, item in enumerate(ITEMS)}
    model = SASRecModel(SASRecConfig(num_items=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                     max_position_embeddings=6, hidden_dropout_prob=0.0, attention_dropout=0.0),
                        item_ids=ITEMS)
    valid = RankingSet.from_split([{"history": s[:-1], "target": s[-1]} for s in sequences], index, max_length=6)
    args = GenRecTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=epochs,
                                   eval_strategy=eval_strategy, logging_strategy="no", eval_ks=[5, 10],
                                   disable_tqdm=True, report_to="none", learning_rate=0.01)
    return RecommendationTrainer(model=model, args=args, data_collator=NextItemCollator(),
                                 train_dataset=NextItemDataset([s[:-1] for s in sequences], index, max_length=6),
                                 eval_dataset=valid, callbacks=callbacks)


def test_marks_trigger_one_validation_each_and_the_curve_records_them(tmp_path):
    clock = _FakeClock()
    # 1 s per step, 3 steps per epoch, 12 steps: marks at 2.5 s, 4.5 s and 4.8 s (one step passes both), 60 s
    # (never reached: training ends first)
    wall = WallClockEvalCallback([2.5 / 60, 4.5 / 60, 4.8 / 60, 1.0], clock=clock)
    best = BestModelCallback(metric="eval_ndcg@10", patience=None)
    trainer = _tiny_trainer(tmp_path, [clock, wall, best])
    trainer.train()
    assert trainer.state.global_step == 12
    assert wall.steps == [3, 5]  # the first steps whose end is past each mark
    assert [minutes for minutes, _ in wall.curve] == pytest.approx([3 / 60, 5 / 60], abs=0.02)
    evaluations = [record for record in trainer.state.log_history if "eval_ndcg@10" in record]
    assert [point[1] for point in wall.curve] == [record["eval_ndcg@10"] for record in evaluations]
    assert best.best_value == max(point[1] for point in wall.curve)  # the marks' validations pick the best state


class _SlowValidationClock(_FakeClock):
    """One second per step and ten per validation."""

    def on_evaluate(self, args, state, control, **kwargs):
        self.seconds += 10.0
        return control


def test_a_mark_passed_during_a_slow_validation_does_not_validate_the_same_weights_again(tmp_path):
    clock = _SlowValidationClock()
    # the 2.5 s mark's validation (after step 3) ends at 13 s: the 8 s mark passed during it, so it is served;
    # the 20 s mark validates again (after step 10)
    wall = WallClockEvalCallback([2.5 / 60, 8 / 60, 20 / 60], clock=clock)
    trainer = _tiny_trainer(tmp_path, [clock, wall])
    trainer.train()
    assert wall.steps == [3, 10]


def test_without_marks_the_curve_follows_the_trainers_own_validations(tmp_path):
    clock = _FakeClock()
    wall = WallClockEvalCallback(None, clock=clock)
    trainer = _tiny_trainer(tmp_path, [clock, wall], epochs=2, eval_strategy="epoch")
    trainer.train()
    assert wall.steps == [3, 6]
    assert [minutes for minutes, _ in wall.curve] == pytest.approx([3 / 60, 6 / 60], abs=0.02)


@pytest.mark.parametrize(
    "marks, message",
    [([], "non-empty list"), ([2, 1], "strictly increasing"), ([0, 1], "positive numbers"), ("5", "non-empty list"),
     ([1, True], "positive numbers")],
)
def test_bad_marks_name_the_field(marks, message):
    with pytest.raises(ValueError, match=message) as error:
        check_marks(marks, "training.eval_at_minutes")
    assert "`training.eval_at_minutes`" in str(error.value)
    with pytest.raises(ValueError, match=r"`training\.eval_at_minutes`"):
        build_run_config({"training": {"eval_at_minutes": marks}})


def test_run_training_writes_the_curve_at_real_wall_clock_marks(tmp_path, toy_dataset):
    values = {
        "model": {"type": "sasrec", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
                  "max_position_embeddings": 8},
        "data": {"dataset": toy_dataset},
        "training": {"num_train_epochs": 40, "per_device_train_batch_size": 16, "eval_strategy": "no",
                     "eval_at_minutes": [0.001, 0.002], "eval_ks": [5, 10], "disable_tqdm": True, "seed": 0},
    }
    metrics = run_training(build_run_config(values), tmp_path / "run")
    curve = metrics["curve/valid/ndcg@10"]
    assert metrics["curve/eval_at_minutes"] == [0.001, 0.002]
    assert 1 <= len(curve) <= 2 and curve[0][0] >= 0.001  # a mark validation starts after its mark
    assert metrics["train/best_valid_metric"] == max(value for _, value in curve)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["curve/valid/ndcg@10"] == curve
