"""Output-path mistakes: refused in one line before any work, and nothing outside the output changes.

The property runs each command against every kind of wrong output path, generated from a small
grammar (an existing file, a folder that holds the input data or the config, the working folder or an
ancestor of it, a missing parent) with and without ``--overwrite``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import write_toy_dataset
from tests.reliability.helpers import (
    CONFIGS,
    SMOKE,
    assert_one_line_error,
    cli,
    max_examples,
    toy_train_argv,
    tree_digest,
)

SETTINGS = settings(max_examples=max_examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
MISTAKES = ["file", "dataset-itself", "holds-dataset", "holds-config", "cwd", "cwd-ancestor", "missing-parent"]


def _layout(root: Path, mistake: str) -> tuple[str, Path, Path, Path]:
    """Build a workspace; return (--output as typed, dataset, config, folder to run in)."""
    dataset = Path(write_toy_dataset(root / "project" / "data"))
    config = root / "project" / "configs" / "smoke.yaml"
    config.parent.mkdir()
    config.write_text(SMOKE.read_text())
    (root / "project" / "notes.txt").write_text("not genrec's")
    cwd = root / "project" / "configs"
    output = {
        "file": str(root / "project" / "notes.txt"),
        "dataset-itself": str(dataset),
        "holds-dataset": str(root / "project"),
        "holds-config": str(config.parent),
        "cwd": ".",
        "cwd-ancestor": "..",
        "missing-parent": str(root / "no" / "such" / "run"),
    }[mistake]
    return output, dataset, config, cwd


@SETTINGS
@given(mistake=st.sampled_from(MISTAKES), overwrite=st.booleans(), command=st.sampled_from(["train", "quickstart", "tokenize"]))
def test_a_wrong_output_is_refused_in_one_line_and_nothing_changes(mistake, overwrite, command):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        output, dataset, config, cwd = _layout(root, mistake)
        if command == "train":
            argv = toy_train_argv(dataset, output)
            argv[argv.index("--config") + 1] = str(config)
        elif command == "quickstart":
            argv = ["quickstart", "--output", output, "--set", f"data.dataset={dataset}"]
        else:
            argv = ["tokenize", "--dataset", str(dataset), "--method", "random", "--output", output]
        argv += ["--overwrite"] if overwrite else []
        before = tree_digest(root)
        old_cwd = os.getcwd()
        os.chdir(cwd)
        try:
            status, _, err = cli(argv)
        finally:
            os.chdir(old_cwd)
        assert_one_line_error(status, err, "output", "--output")
        assert tree_digest(root) == before


def test_train_into_a_folder_holding_the_dataset_keeps_the_dataset(tmp_path):
    """Regression: `--output D --overwrite` with the dataset inside D deleted the dataset after training."""
    dataset = Path(write_toy_dataset(tmp_path / "work" / "data"))
    before = tree_digest(tmp_path)
    status, _, err = cli(toy_train_argv(dataset, tmp_path / "work", "--overwrite"))
    assert "contains the dataset" in assert_one_line_error(status, err, str(tmp_path / "work"))
    assert tree_digest(tmp_path) == before


def test_tokenize_into_a_folder_holding_the_dataset_keeps_the_dataset(tmp_path):
    dataset = Path(write_toy_dataset(tmp_path / "work" / "data"))
    before = tree_digest(tmp_path)
    status, _, err = cli(["tokenize", "--dataset", str(dataset), "--method", "random", "--output",
                          str(tmp_path / "work"), "--overwrite"])
    assert "contains the dataset" in assert_one_line_error(status, err, str(tmp_path / "work"))
    assert tree_digest(tmp_path) == before


def test_align_overwrite_never_deletes_a_folder_holding_the_dataset(tmp_path):
    """`genrec align --overwrite` deletes a non-alignment --output before it starts: never the dataset's."""
    dataset = Path(write_toy_dataset(tmp_path / "work" / "data"))
    before = tree_digest(tmp_path)
    status, _, err = cli(["align", "--config", str(CONFIGS / "onerec-beauty-align-smoke.yaml"), "--output",
                          str(tmp_path / "work"), "--set", f"data.dataset={dataset}", "--overwrite"])
    assert "contains the dataset" in assert_one_line_error(status, err, str(tmp_path / "work"))
    assert tree_digest(tmp_path) == before


def test_train_output_dot_is_refused_up_front(tmp_path, monkeypatch):
    """Regression: `--output . --overwrite` trained, then failed and left the results in a hidden folder."""
    dataset = write_toy_dataset(tmp_path / "data")
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "here")
    before = tree_digest(tmp_path)
    status, _, err = cli(toy_train_argv(dataset, ".", "--overwrite"))
    assert "current working folder" in assert_one_line_error(status, err)
    assert tree_digest(tmp_path) == before


def test_rerunning_a_run_folder_config_in_place_is_allowed(run_copy, tmp_path):
    """The one config inside --output that may be replaced: the run folder's own config.yaml."""
    _, run = run_copy  # its config.yaml reads the shared (unchanged) toy dataset
    first = (run / "metrics.json").read_text()
    status, _, err = cli(["train", "--config", str(run / "config.yaml"), "--output", str(run), "--overwrite"])
    assert status == 0, err
    assert (run / "metrics.json").read_text() != first  # a new run (new timings) replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


def test_evaluate_output_folder_existing_file_and_overwrite(run_copy, tmp_path):
    _, run = run_copy
    base = ["evaluate", "--checkpoint", str(run), "--max-users", "3"]
    before = tree_digest(tmp_path)
    status, _, err = cli(base + ["--output", str(tmp_path / "data")])  # a folder
    assert "is a folder" in assert_one_line_error(status, err, str(tmp_path / "data"))
    status, _, err = cli(base + ["--output", str(tmp_path / "missing" / "m.json")])
    assert_one_line_error(status, err, "missing")
    report = tmp_path / "metrics.json"
    report.write_text("old")
    before = tree_digest(tmp_path)
    status, _, err = cli(base + ["--output", str(report)])
    assert "--overwrite" in assert_one_line_error(status, err, str(report))
    assert tree_digest(tmp_path) == before
    assert cli(base + ["--output", str(report), "--overwrite"])[0] == 0
    assert report.read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "metrics.json", "run"]


def test_a_path_the_user_may_not_write_is_one_line(capsys):
    """Root ignores file modes, so the OS error is raised directly: what the CLI makes of it is what matters."""
    from genrec.utils.errors import run_command

    def body():
        raise PermissionError(13, "Permission denied", "/srv/readonly/run")

    assert run_command("genrec train", body) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and "/srv/readonly/run" in err
    assert "Traceback" not in err
