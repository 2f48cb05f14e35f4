"""`genrec train` / `genrec evaluate` / `genrec quickstart` / scripts/train.py end to end on tiny data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genrec.cli import main

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "scripts" / "configs" / "sasrec-beauty-smoke.yaml"
FULL = REPO / "scripts" / "configs" / "sasrec-beauty.yaml"
BCE = REPO / "scripts" / "configs" / "sasrec-beauty-bce.yaml"


def test_configs_parse():
    from genrec.training import load_run_config

    for path, loss_type in ((SMOKE, "ce"), (FULL, "ce"), (BCE, "bce")):
        run = load_run_config(path)
        assert run.model_type == "sasrec" and run.data.dataset == "amazon-beauty"
        assert run.model_kwargs["loss_type"] == loss_type


def test_train_smoke_preset_then_evaluate_reproduces_the_metrics(tmp_path, capsys):
    output = tmp_path / "smoke"
    argv = ["train", "--config", str(SMOKE), "--output", str(output)]
    argv += ["--set", "data.max_users=40", "--set", "training.num_train_epochs=1", "--set", "training.disable_tqdm=true"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "recall@10" in printed and str(output) in printed
    expected = {"checkpoint", "config.yaml", "log_history.json", "metrics.json", "resolved_config.json", "train.log"}
    assert {path.name for path in output.iterdir()} == expected
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["test/num_users"] == 40 and metrics["data/num_items"] == 12101
    for key in ("test/recall@10", "test/ndcg@10", "valid/ndcg@10", "valid/recall@5", "train/seconds", "machine/cpu"):
        assert key in metrics

    # `genrec evaluate` on the saved checkpoint gives the same numbers as the run itself.
    report = tmp_path / "eval.json"
    argv = ["evaluate", "--checkpoint", str(output), "--split", "both", "--ks", "5", "10", "--max-users", "40"]
    assert main(argv + ["--output", str(report)]) == 0
    evaluated = json.loads(report.read_text())
    for key in ("test/recall@10", "test/ndcg@10", "valid/ndcg@5", "valid/mrr@10"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-9)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == evaluated

    # Re-running into the same folder is refused without --overwrite and leaves it untouched.
    before = (output / "metrics.json").read_text()
    assert main(["train", "--config", str(SMOKE), "--output", str(output)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "model.hidden_sise=8"], "unknown `model` key(s) ['hidden_sise']"),
        (["--set", "training.learning_rate"], "section.key=value"),
        (["--set", "data.dataset=/no/such/folder"], "/no/such/folder"),
    ],
)
def test_train_errors_are_one_clear_line(tmp_path, capsys, extra, message):
    assert main(["train", "--config", str(SMOKE), "--output", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_missing_parent_and_missing_config(tmp_path, capsys):
    assert main(["train", "--config", str(SMOKE), "--output", str(tmp_path / "a" / "b")]) == 2
    assert "parent folder" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--output", str(tmp_path / "r")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_evaluate_errors(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), "--dataset", "amazon-beauty"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "empty"), "--dataset", "amazon-beauty"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_quickstart_runs_with_overrides(tmp_path, capsys, monkeypatch):
    import numpy as np

    output = tmp_path / "qs"
    # the quickstart's generative model (RecGPT) reads item-text embeddings: random ones instead of MiniLM here
    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog",
                        lambda catalog, *args, **kwargs: np.random.default_rng(0).normal(
                            size=(len(catalog.item_ids), 16)).astype(np.float32))
    argv = ["quickstart", "--output", str(output), "--set", "data.max_users=30", "--set", "training.num_train_epochs=1"]
    argv += ["--set", "training.disable_tqdm=true", "--set", "model.hidden_size=16", "--set", "model.num_hidden_layers=1"]
    argv += ["--set", "model.tokenizer={collaborative_dims: 16, num_chunks: 4, levels: [4, 4], epochs: 1}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "recall@10" in out and "recgpt" in out and "popularity (this split)" in out
    assert (output / "checkpoint" / "model.safetensors").is_file()
    assert (output / "checkpoint" / "item_tokenizer" / "config.json").is_file()
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["model/type"] == "recgpt"
    # the popularity row is computed on the same (30-user) test split, not copied
    popularity_line = next(line for line in out.splitlines() if line.startswith("popularity (this split)"))
    assert 0.0 <= float(popularity_line.split()[-2]) <= 1.0


def test_scripts_train_runs_as_a_script(tmp_path, toy_dataset):
    output = tmp_path / "script-run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(REPO / "scripts" / "train.py"), "--config", str(SMOKE), "--output", str(output)]
    argv += ["--set", f"data.dataset={toy_dataset}", "--set", "data.max_users=null"]
    argv += ["--set", "training.num_train_epochs=1", "--set", "training.disable_tqdm=true"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((output / "metrics.json").read_text())["data/num_items"] == 24
    bad = subprocess.run(argv[:2] + ["--config", str(SMOKE), "--output", str(output)], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "--overwrite" in bad.stderr
