"""Fixtures of the reliability suite (one tiny trained run shared by the tests that only read it)."""

import shutil

import pytest

from tests.conftest import write_toy_dataset
from tests.reliability.helpers import cli, toy_train_argv


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """``(dataset folder, run folder)`` of one tiny SASRec training run; copy it before changing it."""
    root = tmp_path_factory.mktemp("trained")
    dataset = write_toy_dataset(root / "data")
    status, _, err = cli(toy_train_argv(dataset, root / "run"))
    assert status == 0, err
    return root / "data", root / "run"


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of :func:`trained_run` under ``tmp_path``: ``(dataset, run)``."""
    dataset, run = trained_run
    shutil.copytree(dataset, tmp_path / "data")
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "data", tmp_path / "run"
