"""Shared checks of the reliability suite: run the CLI in-process, hash trees, assert the one-line error."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

from genrec.cli import main

REPO = Path(__file__).resolve().parents[2]


def max_examples(default: int) -> int:
    """Examples per property: small by default (the suite stays fast); set GENREC_RELIABILITY_EXAMPLES for a
    deep search, e.g. ``GENREC_RELIABILITY_EXAMPLES=500 pytest tests/reliability``."""
    return int(os.environ.get("GENREC_RELIABILITY_EXAMPLES", default))
CONFIGS = REPO / "scripts" / "configs"
SMOKE = CONFIGS / "sasrec-beauty-smoke.yaml"


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``genrec ARGV`` in this process: (exit status, stdout, stderr). Any escaping exception fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def tree_digest(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: sha256 (files) or "dir"}`` of everything under ``root``, hidden entries included."""
    root = Path(root)
    digest = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return digest


def assert_one_line_error(status: int, err: str, *names: str) -> str:
    """Exit status 2 and exactly one stderr line ``genrec CMD: error: ...`` naming at least one of ``names``."""
    lines = err.strip().splitlines()
    assert status == 2, f"exit status {status}, stderr: {err[-2000:]}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err[-2000:]}"
    assert "Traceback" not in err
    assert lines[0].startswith("genrec ") and ": error: " in lines[0], lines[0]
    if names:
        assert any(name in lines[0] for name in names), f"none of {names} in: {lines[0]}"
    return lines[0]


def staging_leftovers(folder: str | os.PathLike) -> list[str]:
    """Hidden genrec staging folders/lock files in ``folder`` (none may outlive a run)."""
    return sorted(p.name for p in Path(folder).iterdir() if ".genrec-" in p.name)


def toy_train_argv(dataset: str | os.PathLike, output: str | os.PathLike, *extra: str) -> list[str]:
    """``genrec train`` of the tiny SASRec smoke preset on a toy dataset (a few seconds)."""
    argv = ["train", "--config", str(SMOKE), "--output", str(output), "--set", f"data.dataset={dataset}"]
    argv += ["--set", "data.max_users=null", "--set", "training.num_train_epochs=1", "--set", "training.disable_tqdm=true"]
    return argv + list(extra)
