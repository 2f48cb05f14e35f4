"""The user's journey, end to end, through the CLI as a user types it (``genrec.cli.main``), on a tiny CSV:

data stats -> tokenize -> train with --save-steps, stopped by SIGTERM right after a checkpoint -> train --resume ->
evaluate -> recommend -> align (one tiny round from the trained run) -> recommend with the aligned checkpoint.

Every step's exit status and output files are checked. Tiny everywhere (60 users, 40 items, OneRec d_model 32) so
the whole path runs in about a minute of CPU.
"""

import json
import os
import re
import signal
from pathlib import Path

import yaml

from genrec.cli import main
from genrec.training.resume import ResumeStateCallback, checkpoints_folder, complete_checkpoints
from tests.conftest import write_interactions_csv

REPO = Path(__file__).resolve().parents[1]
ONEREC_SMOKE = REPO / "scripts" / "configs" / "onerec-beauty-smoke.yaml"
SAVE_STEPS, STOP_AT = 3, 3  # 240 training windows / batch 64 = 4 steps an epoch, 2 epochs: 8 steps
ALIGN = {  # the smallest alignment: one round, 2 candidate sessions of 2 items for half of 24 users
    "base": {"checkpoint": "runs/clicks"},
    "reward": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "epochs": 2, "num_eval_negatives": 20},
    "alignment": {"rounds": 1, "users_per_round": 24, "num_candidates": 2, "session_length": 2, "strategy": "reward",
                  "dpo_fraction": 0.5, "reward_users": 8, "generation_batch_size": 16, "seed": 0},
    "dpo": {"beta": 0.1, "loss_type": ["sigmoid"], "learning_rate": 0.001, "num_train_epochs": 1,
            "per_device_train_batch_size": 8, "report_to": "none"},
}


def _stop_after_checkpoint(monkeypatch, step: int) -> None:
    """SIGTERM this process once the checkpoint of ``step`` is complete, as ``kill`` from another shell would."""
    original = ResumeStateCallback.on_save

    def on_save(self, args, state, control, **kwargs):
        result = original(self, args, state, control, **kwargs)
        if state.global_step >= step:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(ResumeStateCallback, "on_save", on_save)


def test_data_to_aligned_recommendations(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_interactions_csv(tmp_path / "clicks.csv", num_users=60, num_items=40)
    (tmp_path / "runs").mkdir()

    # 1. look at the data
    assert main(["data", "stats", "clicks.csv", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["num_users"], stats["num_items"], stats["users_below_3"]) == (60, 40, 0)

    # 2. semantic ids from the training histories
    assert main(["tokenize", "--dataset", "clicks.csv", "--method", "collaborative", "--output", "ids",
                 "--set", "num_clusters=4", "--set", "leaf_size=8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["collision_rate_after"] == 0.0
    assert {"config.json", "codes.safetensors"} <= {path.name for path in (tmp_path / "ids").iterdir()}

    # 3. train with checkpoints; a SIGTERM after the checkpoint of step 3 stops it (exit 143, nothing half-written)
    train = ["train", "--config", str(ONEREC_SMOKE), "--output", "runs/clicks", "--save-steps", str(SAVE_STEPS),
             "--set", "data.dataset=clicks.csv", "--set", "model.item_tokenizer=ids",
             "--set", "training.disable_tqdm=true"]
    with monkeypatch.context() as patch:
        _stop_after_checkpoint(patch, STOP_AT)
        assert main(train) == 143
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    run, checkpoints = tmp_path / "runs" / "clicks", checkpoints_folder(tmp_path / "runs" / "clicks")
    assert not run.exists() and [path.name for path in complete_checkpoints(checkpoints)] == [f"checkpoint-{STOP_AT}"]
    assert main(train) == 2  # the checkpoints are not silently thrown away
    assert "--resume" in capsys.readouterr().err

    # 4. resume: continues at step 3 and ends like a full run (8 steps); the checkpoints are cleaned up
    assert main([*train, "--resume"]) == 0
    assert f"resumed at step {STOP_AT}" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train/resumed_from_step"] == STOP_AT and metrics["train/global_step"] == 8
    assert not checkpoints.exists()
    checkpoint = run / "checkpoint"
    files = {path.name for path in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "item_tokenizer", "catalog.safetensors",
            "tokenizer.json"} <= files
    card = (checkpoint / "README.md").read_text()
    assert "library_name: genrec" in card and f"| test | recall@10 | {metrics['test/recall@10']:.5f} |" in card

    # 5. evaluate the run folder: the same numbers as the run measured
    assert main(["evaluate", "--checkpoint", "runs/clicks", "--split", "both", "--output", "eval.json"]) == 0
    capsys.readouterr()
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    for key in ("valid/recall@10", "test/recall@10", "test/ndcg@10"):
        assert abs(evaluated[key] - metrics[key]) < 1e-6, key

    # 6. recommend for a history
    assert main(["recommend", "--checkpoint", "runs/clicks", "--history", "sku3", "sku4", "-k", "5", "--json"]) == 0
    recommended = [row["item_id"] for row in json.loads(capsys.readouterr().out)["recommendations"]]
    assert len(recommended) == 5 and not {"sku3", "sku4"} & set(recommended)

    # 7. align the trained run (its data section gives the dataset); every round is a checkpoint with its card
    (tmp_path / "align.yaml").write_text(yaml.safe_dump(ALIGN))
    assert main(["align", "--config", "align.yaml", "--output", "runs/aligned"]) == 0
    capsys.readouterr()
    aligned = tmp_path / "runs" / "aligned"
    align_metrics = json.loads((aligned / "metrics.json").read_text())
    assert {"round_0/valid/ndcg@10", "round_1/valid/ndcg@10", "round_1/reward_mean"} <= set(align_metrics)
    assert (aligned / "reward_model" / "README.md").is_file()
    round_card = (aligned / "round_1" / "checkpoint" / "README.md").read_text()
    assert "genrec align (round 1 of 1)" in round_card and "datasets:\n- clicks" in round_card

    # 8. recommend with the aligned model
    assert main(["recommend", "--checkpoint", "runs/aligned/round_1/checkpoint", "--history", "sku3", "sku4",
                 "-k", "3"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].split() == ["rank", "item_id", "score"] and all(re.match(r"\s*\d+\s+sku\d+\s", r) for r in rows[1:])
