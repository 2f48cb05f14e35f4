"""A run owns its output folder: locks, interruptions, failures and leftovers of killed runs.

In-process runs cover the logic (a held lock, a failing or interrupted trainer, a writer that ignores
the lock, leftovers of killed runs); a few real processes check what only processes can show:
concurrent starts, SIGTERM, ``kill -9``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrec.training.trainer import RecommendationTrainer
from genrec.utils.io import output_lock
from tests.reliability.helpers import (
    assert_one_line_error,
    cli,
    staging_leftovers,
    toy_train_argv,
    tree_digest,
)


def test_a_successful_run_writes_only_its_output(trained_run, tmp_path):
    dataset, _ = trained_run
    (tmp_path / "notes.txt").write_text("mine")
    before, data_before = tree_digest(tmp_path), tree_digest(dataset)
    assert cli(toy_train_argv(dataset, tmp_path / "run"))[0] == 0
    after = {key: value for key, value in tree_digest(tmp_path).items() if key.split("/")[0] != "run"}
    assert after == before and tree_digest(dataset) == data_before
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_held_output_is_refused_and_left_alone(run_copy, tmp_path):
    dataset, run = run_copy
    before = tree_digest(tmp_path)
    with output_lock(run):
        status, _, err = cli(toy_train_argv(dataset, run, "--overwrite"))
        assert "in use by another genrec run" in assert_one_line_error(status, err, str(run))
    assert tree_digest(tmp_path) == before


def test_a_failing_run_keeps_the_output_and_appends_each_error_to_failed_log(run_copy, tmp_path, monkeypatch):
    dataset, run = run_copy
    before = tree_digest(run)
    for attempt in ("first", "second"):
        def fail(self, *args, _attempt=attempt, **kwargs):
            raise RuntimeError(f"boom {_attempt}")

        monkeypatch.setattr(RecommendationTrainer, "train", fail)
        with pytest.raises(RuntimeError, match=f"boom {attempt}"):  # a bug, not bad input: it keeps its traceback
            cli(toy_train_argv(dataset, run, "--overwrite"))
    log = (tmp_path / "run.failed.log").read_text()
    assert log.count("===== run failed") == 2 and "RuntimeError: boom first" in log and "RuntimeError: boom second" in log
    assert "Traceback" in log and "data data: 48 users" in log  # the run's own log, then the error
    assert tree_digest(run) == before
    assert staging_leftovers(tmp_path) == []


def test_ctrl_c_prints_one_line_and_leaves_nothing_half_written(run_copy, tmp_path, monkeypatch):
    dataset, run = run_copy
    before = tree_digest(run)

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(RecommendationTrainer, "train", interrupt)
    status, _, err = cli(toy_train_argv(dataset, run, "--overwrite"))
    assert status == 130 and err.strip().splitlines() == [
        "genrec train: interrupted by Ctrl-C; the output folder was left as it was"
    ]
    assert "===== run interrupted" in (tmp_path / "run.failed.log").read_text()
    assert tree_digest(run) == before
    assert staging_leftovers(tmp_path) == []


def test_a_writer_that_ignores_the_lock_loses_nothing(trained_run, tmp_path, monkeypatch):
    """Without --overwrite the output must still be empty at swap time; otherwise both results are kept."""
    dataset, _ = trained_run
    output = tmp_path / "run"
    original = RecommendationTrainer.train

    def train_while_someone_writes(self, *args, **kwargs):
        output.mkdir()
        (output / "theirs.txt").write_text("theirs")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RecommendationTrainer, "train", train_while_someone_writes)
    status, _, err = cli(toy_train_argv(dataset, output))
    line = assert_one_line_error(status, err, str(output))
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run.kept-")]
    assert len(kept) == 1 and str(kept[0]) in line
    assert json.loads((kept[0] / "metrics.json").read_text())["data/num_items"] == 24
    assert [p.name for p in output.iterdir()] == ["theirs.txt"]
    assert staging_leftovers(tmp_path) == []


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(trained_run, tmp_path):
    dataset, _ = trained_run
    for name in (".run.genrec-abc123_x.tmp", ".run.genrec-zz9.old", ".run.k3j_x9q2.tmp"):  # the last: untagged, older genrec
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".run.genrec-lock").write_text("4242")  # a dead holder's lock file: flock is free
    (tmp_path / ".run2.genrec-abc123_x.tmp").mkdir()  # another output's staging: not ours to remove
    (tmp_path / ".run.genrec-notes").write_text("not a staging folder")
    (tmp_path / "run").mkdir()  # OUTPUT exists, so the .old is a swap's garbage, not the only copy
    (tmp_path / "run" / "old.txt").write_text("previous run")
    assert cli(toy_train_argv(dataset, tmp_path / "run", "--overwrite"))[0] == 0
    assert staging_leftovers(tmp_path) == [".run.genrec-notes", ".run2.genrec-abc123_x.tmp"]
    assert not (tmp_path / ".run.k3j_x9q2.tmp").exists()
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_swap_cut_short_gets_the_previous_results_back(trained_run, tmp_path):
    """Killed between the two renames of the swap: the old folder is aside (.old), OUTPUT is missing.
    The next run puts it back instead of deleting it, and then needs --overwrite like any non-empty output."""
    dataset, run = trained_run
    shutil.copytree(run, tmp_path / ".run.genrec-k3j9x0aa.old")
    before = tree_digest(tmp_path / ".run.genrec-k3j9x0aa.old")
    status, _, err = cli(toy_train_argv(dataset, tmp_path / "run"))
    assert "--overwrite" in assert_one_line_error(status, err, str(tmp_path / "run"))
    assert tree_digest(tmp_path / "run") == before and staging_leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------- real processes


def _spawn(dataset: Path, output: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "genrec"] + toy_train_argv(dataset, output, *extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "PYTHONSAFEPATH": "1"}
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_staging(output: Path, process: subprocess.Popen, timeout: float = 90.0) -> None:
    """Until the run's staging folder holds its train.log (it has taken the lock and started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((p / "train.log").is_file() for p in output.parent.glob(f".{output.name}.genrec-*.tmp")):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("the run never started")


LONG = ("--set", "training.num_train_epochs=100000", "--set", "training.max_train_seconds=120")


def test_real_processes_lock_sigterm_and_kill_9(trained_run, tmp_path):
    """Two processes (each pays the torch import): a second run on a busy --output is refused at once (regression: concurrent runs all exited 0 and all but the last finisher were silently
    discarded); SIGTERM unwinds like Ctrl-C; kill -9 leaves a staging folder that the next run removes."""
    dataset, _ = trained_run
    terminated, killed = tmp_path / "terminated", tmp_path / "killed"
    processes = [_spawn(dataset, output, tmp_path, *LONG) for output in (terminated, killed)]
    for output, process in zip((terminated, killed), processes):
        _wait_for_staging(output, process)

    # A second run on the busy --output (from this test's process: its own open file, so the flock
    # conflicts as it would from any other process) is refused at once and adds nothing.
    before = sorted(p.name for p in tmp_path.iterdir())
    status, _, err = cli(toy_train_argv(dataset, terminated, "--overwrite"))
    assert "in use by another genrec run" in assert_one_line_error(status, err, str(terminated))
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    processes[0].send_signal(signal.SIGTERM)
    processes[1].kill()  # SIGKILL: nothing can clean up
    out, err = processes[0].communicate(timeout=60)
    processes[1].communicate(timeout=60)
    assert processes[0].returncode == 143 and err.strip().splitlines() == [
        "genrec train: interrupted by SIGTERM; the output folder was left as it was"
    ]
    assert "Running in WANDB offline mode" not in out  # WANDB_MODE=offline but report_to none: no banner
    assert not terminated.exists() and "===== run interrupted" in (tmp_path / "terminated.failed.log").read_text()
    assert not any(name.startswith(".terminated.") for name in staging_leftovers(tmp_path))

    assert any(name.startswith(".killed.") and name.endswith(".tmp") for name in staging_leftovers(tmp_path))
    assert cli(toy_train_argv(dataset, killed))[0] == 0  # takes the free lock, removes the leftovers
    assert staging_leftovers(tmp_path) == [] and (killed / "metrics.json").is_file()
