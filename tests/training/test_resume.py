"""`genrec train --save-steps N` then kill -9, then `--resume`: the same weights and metrics as a run never killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genrec.cli import main
from genrec.training.resume import STATE_FILE, checkpoints_folder, complete_checkpoints

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "scripts" / "configs" / "sasrec-beauty-smoke.yaml"  # dropout 0.2: the RNG state matters
STEPS_PER_EPOCH, EPOCHS, SAVE_STEPS = 12, 8, 10  # 48 toy users / batch 4; 96 steps, a checkpoint every 10
KILL_AFTER_STEP = 50  # mid-epoch (50 = 4 * 12 + 2): the resumed run must skip the epoch's first 2 batches


def _argv(toy_dataset, output):
    argv = ["train", "--config", str(SMOKE), "--output", str(output), "--save-steps", str(SAVE_STEPS)]
    for value in (f"data.dataset={toy_dataset}", "data.max_users=null", "training.per_device_train_batch_size=4",
                  f"training.num_train_epochs={EPOCHS}", "training.disable_tqdm=true", "training.logging_steps=5",
                  "training.logging_strategy=steps"):
        argv += ["--set", value]
    return argv


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1"}  # one thread: same float sums each run


def _run(argv, cwd):
    result = subprocess.run([sys.executable, "-m", "genrec", *argv], capture_output=True, text=True, env=_env(),
                            cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _kill_after_checkpoint(argv, cwd, checkpoints: Path) -> int:
    """Start a run, kill -9 it as soon as a complete checkpoint at step >= KILL_AFTER_STEP exists; its step."""
    process = subprocess.Popen([sys.executable, "-m", "genrec", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=_env(), cwd=cwd)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            done = [int(path.name.split("-")[1]) for path in complete_checkpoints(checkpoints)]
            if done and max(done) >= KILL_AFTER_STEP:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
        stderr = process.communicate(timeout=60)[1].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, f"the run was not killed mid-way (rc {process.returncode}): " \
                                                  f"{stderr[-2000:]}"
    return max(int(path.name.split("-")[1]) for path in complete_checkpoints(checkpoints))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path, toy_dataset, capsys):
    reference, output = tmp_path / "uninterrupted", tmp_path / "killed"
    _run(_argv(toy_dataset, reference), tmp_path)
    assert not checkpoints_folder(reference).exists()  # removed once the run folder is in place

    checkpoints = checkpoints_folder(output)
    step = _kill_after_checkpoint(_argv(toy_dataset, output), tmp_path, checkpoints)
    assert KILL_AFTER_STEP <= step < STEPS_PER_EPOCH * EPOCHS
    assert not output.exists()  # the run folder only appears when a run succeeds
    # the newest complete checkpoint is resumed; an older one is pruned after each save (unless the kill came first)
    assert 1 <= len(complete_checkpoints(checkpoints)) <= 2

    # a run into the same output must say what to do with the checkpoints; another config cannot resume them
    assert main(_argv(toy_dataset, output)) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_argv(toy_dataset, output) + ["--resume", "--set", "training.learning_rate=0.01"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "training.learning_rate" in error and "--resume" in error
    assert (checkpoints / f"checkpoint-{step}" / STATE_FILE).is_file()  # refused runs leave them alone

    printed = _run(_argv(toy_dataset, output) + ["--resume"], tmp_path).stdout
    assert f"resumed at step {step}" in printed
    assert not checkpoints.exists()

    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((output / "metrics.json").read_text())
    assert got["train/resumed_from_step"] == step and expected["train/resumed_from_step"] is None
    assert got["train/global_step"] == expected["train/global_step"] == STEPS_PER_EPOCH * EPOCHS
    compared = [key for key in expected if key.split("/")[0] in ("valid", "test")
                and key.split("/")[1] != "seconds"] + ["train/best_epoch", "train/best_valid_metric", "train/epochs"]
    assert len(compared) > 10
    for key in compared:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    curve_key = "curve/valid/ndcg@10"
    assert [value for _, value in got[curve_key]] == pytest.approx([value for _, value in expected[curve_key]],
                                                                    abs=1e-6)
    # the training loss logged every 5 steps, before and after the kill, is the uninterrupted run's
    losses = {name: [(row["step"], row["loss"]) for row in json.loads((run / "log_history.json").read_text())
                     if "loss" in row] for name, run in (("expected", reference), ("got", output))}
    assert len(losses["expected"]) == STEPS_PER_EPOCH * EPOCHS // 5
    assert [s for s, _ in losses["got"]] == [s for s, _ in losses["expected"]]
    assert [v for _, v in losses["got"]] == pytest.approx([v for _, v in losses["expected"]], abs=1e-5)

    weights = [load_file(str(run / "checkpoint" / "model.safetensors")) for run in (reference, output)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], atol=1e-6, rtol=1e-6, msg=name)


def test_only_complete_checkpoints_are_resumed_and_the_config_must_match(tmp_path, caplog):
    from genrec.training.resume import CONFIG_FILE, prepare_checkpoints
    from genrec.utils.errors import UserInputError

    output, config = tmp_path / "run", {"model": {"type": "sasrec"}, "training": {"learning_rate": 0.01}}
    folder = checkpoints_folder(output)
    assert prepare_checkpoints(output, config, resume=True, overwrite=False) is None  # nothing yet: step 0
    assert (folder / CONFIG_FILE).is_file()
    for step, complete in ((10, True), (20, True), (30, False)):  # 30: killed while the Trainer wrote it
        (folder / f"checkpoint-{step}").mkdir()
        if complete:
            (folder / f"checkpoint-{step}" / STATE_FILE).write_text("{}")
    with pytest.raises(UserInputError, match=r"interrupted run.*--resume"):
        prepare_checkpoints(output, config, resume=False, overwrite=False)
    with pytest.raises(UserInputError, match=r"\['training.learning_rate'\]"):
        prepare_checkpoints(output, {**config, "training": {"learning_rate": 0.02}}, resume=True, overwrite=False)
    assert prepare_checkpoints(output, config, resume=True, overwrite=False) == folder / "checkpoint-20"
    assert not (folder / "checkpoint-30").exists()  # the partial one is removed, the complete ones kept
    assert prepare_checkpoints(output, config, resume=False, overwrite=True) is None  # start again: deleted
    assert list(folder.iterdir()) == [folder / CONFIG_FILE]
