"""OneRec IPA loop (genrec.alignment.ipa): tiny OneRec on the toy data, two rounds, kill + resume, config errors."""

import json

import pytest
import yaml

from genrec.alignment.ipa import build_align_config, load_align_config, run_alignment

TINY_ONEREC = {"d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0,
               "num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 16, "max_history_items": 6,
               "session_length": 2, "num_beams": 4}


@pytest.fixture
def base_checkpoint(tmp_path, toy_dataset):
    import torch

    from genrec.data import load_dataset
    from genrec.models.onerec import OneRecForConditionalGeneration
    from genrec.tokenization import get_tokenizer_class

    data = load_dataset(toy_dataset)
    tokenizer = get_tokenizer_class("random")(codebook_size=5, num_levels=2, seed=0).fit(data.catalog)
    torch.manual_seed(0)
    model = OneRecForConditionalGeneration.from_item_tokenizer(tokenizer, **TINY_ONEREC)
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    return folder


def _config(base, dataset, **alignment):
    return {
        "base": {"checkpoint": str(base)},
        "data": {"dataset": dataset},
        "reward": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "epochs": 2, "num_eval_negatives": 5},
        "alignment": {"rounds": 2, "users_per_round": 12, "num_candidates": 3, "session_length": 2,
                      "dpo_fraction": 0.5, "reward_users": 6, "generation_batch_size": 16, "eval_batch_size": 64,
                      **alignment},
        "dpo": {"beta": 0.1, "learning_rate": 0.001, "num_train_epochs": 1, "per_device_train_batch_size": 8},
    }


def _write(tmp_path, values, name="align.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def test_two_rounds_then_resume_after_a_kill(tmp_path, toy_dataset, base_checkpoint, monkeypatch):
    from genrec.alignment import dpo

    config = load_align_config(_write(tmp_path, _config(base_checkpoint, toy_dataset)))
    output = tmp_path / "run"
    real_build = dpo.build_dpo_trainer
    calls = []

    def build_then_die(*args, **kwargs):  # the second round is "killed" while it trains
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(dpo, "build_dpo_trainer", build_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_alignment(config, output)
    assert (output / "round_1" / "checkpoint" / "config.json").is_file()
    assert not (output / "round_2").exists()
    first = json.loads((output / "metrics.json").read_text())
    assert {"round_0/valid/ndcg@10", "round_0/reward_mean", "round_1/valid/ndcg@10", "round_1/reward_mean"} <= set(first)
    round_1_time = (output / "round_1" / "metrics.json").stat().st_mtime_ns

    (output / ".round_2.trainerk1ll3d").mkdir()  # what a SIGKILL leaves: scratch of the unfinished round
    (output / ".round_2.x9.tmp").mkdir()
    monkeypatch.setattr(dpo, "build_dpo_trainer", real_build)
    metrics = run_alignment(config, output)  # resumes: only round 2 runs
    assert not list(output.glob(".round_2.*"))
    assert (output / "round_1" / "metrics.json").stat().st_mtime_ns == round_1_time
    for number in (0, 1, 2):
        assert 0.0 <= metrics[f"round_{number}/valid/ndcg@10"] <= 1.0
        assert 0.0 < metrics[f"round_{number}/reward_mean"] < 1.0
    assert metrics["round_1/valid/ndcg@10"] == first["round_1/valid/ndcg@10"]
    assert metrics["round_2/pairs"] >= 1
    assert metrics["round_2/ntp_examples"] + metrics["round_2/rows_dropped"] == 12
    assert 0.0 <= metrics["round_2/dpo/rewards/accuracies"] <= 1.0
    assert "round_2/dpo/aux_loss" in metrics  # the MoE decoder's auxiliary loss stays in the objective
    assert 0.0 <= metrics["reward_model/valid/auc"] <= 1.0
    saved = json.loads((output / "metrics.json").read_text())
    assert saved["round_2/valid/ndcg@10"] == metrics["round_2/valid/ndcg@10"]
    pairs = [json.loads(line) for line in (output / "round_2" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen_reward"] >= p["rejected_reward"] for p in pairs)
    assert all(len(p["chosen_items"]) == 2 and p["chosen_items"] != p["rejected_items"] for p in pairs)

    # more rounds for a finished run: the same folder, only `alignment.rounds` raised -> round 3 is added
    longer = build_align_config({**config.to_dict(), "alignment": {**config.raw["alignment"], "rounds": 3}})
    extended = run_alignment(longer, output)
    assert extended["round_2/valid/ndcg@10"] == metrics["round_2/valid/ndcg@10"] and "round_3/reward_mean" in extended

    from transformers import AutoModelForSeq2SeqLM

    aligned = AutoModelForSeq2SeqLM.from_pretrained(output / "round_2" / "checkpoint")
    assert len(aligned.recommend([["1", "2", "3"]], k=3)[0]) == 3


def test_a_different_config_in_the_same_folder_is_refused(tmp_path, toy_dataset, base_checkpoint):
    output = tmp_path / "run"
    output.mkdir()
    (output / "align_config.yaml").write_text(yaml.safe_dump(_config(base_checkpoint, toy_dataset, num_candidates=4)))
    config = build_align_config(_config(base_checkpoint, toy_dataset))
    with pytest.raises(FileExistsError, match="different config"):
        run_alignment(config, output)
    (output / "align_config.yaml").unlink()
    (output / "something.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an alignment run folder"):
        run_alignment(config, output)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": {}}, "unknown config section"),
        ({"base": {}}, "exactly one of `base.checkpoint`"),
        ({"alignment": {"strategy": "best"}}, "alignment.strategy"),
        ({"alignment": {"dpo_fraction": 0.0}}, "alignment.dpo_fraction"),
        ({"alignment": {"rounds": 0}}, "alignment.rounds"),
        ({"alignment": {"strategy": "ground_truth", "session_length": 2}}, "ground_truth"),
        ({"alignment": {"bogus": 1}}, "unknown `alignment` key"),
        ({"dpo": {"betta": 0.1}}, "unknown `dpo` key"),
        ({"dpo": {"loss_weights": [1.0]}}, "alignment.dpo_weight"),
    ],
)
def test_bad_config_values_are_named(change, message):
    values = _config("ckpt", "toy")
    for section, content in change.items():
        values[section] = content if section == "base" or section == "extra" else {**values[section], **content}
    with pytest.raises(ValueError, match=message):
        build_align_config(values)


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from genrec.cli import main

    path = _write(tmp_path, {"alignment": {"rounds": 1}})
    assert main(["align", "--config", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exactly one of `base.checkpoint`" in err[0]


def test_rows_are_arranged_so_every_device_batch_has_the_same_number_of_pairs():
    import random

    from genrec.alignment.ipa import _arrange_rows

    rows = [{"user_id": str(n), "chosen_items": ["a"] if n % 3 == 0 else []} for n in range(50)]  # 17 pairs
    arranged, dropped = _arrange_rows(rows, batch_size=6, world_size=2, rng=random.Random(0))
    assert len(arranged) % 12 == 0 and dropped == 50 - len(arranged)
    counts = [sum(bool(r["chosen_items"]) for r in arranged[i:i + 6]) for i in range(0, len(arranged), 6)]
    assert len(set(counts)) == 1 and counts[0] == 2  # round(6 * 17 / 50) = 2 pairs in every batch
    assert len({r["user_id"] for r in arranged}) == len(arranged)  # no row used twice
    with pytest.raises(ValueError, match="users_per_round"):
        _arrange_rows(rows[:5], batch_size=6, world_size=2, rng=random.Random(0))
