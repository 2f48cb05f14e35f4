"""Every file genrec reads, truncated or garbled at generated offsets: a clean result or one clear line.

Property, for each generated corruption: the command either succeeds (a truncation can leave a valid,
smaller file) or exits with status 2 and exactly one stderr line that names the damaged file (or the
dataset folder, when the damage shows up as a cross-file mismatch), no traceback, and no file on disk
changes.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.helpers import (
    SMOKE,
    assert_one_line_error,
    cli,
    max_examples,
    toy_train_argv,
    tree_digest,
)

SETTINGS = settings(max_examples=max_examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _dataset_files() -> dict[str, dict[str, bytes]]:
    """Small valid datasets, one per format genrec reads: ``{format: {file name: bytes}}``."""
    sequences = "".join(f"{user} " + " ".join(str((user + step) % 10 + 1) for step in range(4)) + "\n"
                        for user in range(1, 9))
    meta = "".join(json.dumps({"item_id": str(item), "title": f"item {item}"}) + "\n" for item in range(1, 11))
    rows = [(user, (user + step) % 10 + 1, 1000 + step) for user in range(1, 9) for step in range(4)]
    table = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    parquet = io.BytesIO()
    table.to_parquet(parquet)
    return {
        "sequential": {"sequential_data.txt": sequences.encode(), "item_meta.jsonl": meta.encode()},
        "sequential-gz": {"sequential_data.txt.gz": gzip.compress(sequences.encode()),
                          "item_meta.jsonl.gz": gzip.compress(meta.encode())},
        "csv": {"interactions.csv": table.to_csv(index=False).encode()},
        "csv-gz": {"interactions.csv.gz": gzip.compress(table.to_csv(index=False).encode())},
        "tsv": {"interactions.tsv": table.to_csv(index=False, sep="\t").encode()},
        "parquet": {"interactions.parquet": parquet.getvalue()},
        "movielens": {"ratings.dat": "".join(f"{u}::{i}::5::{t}\n" for u, i, t in rows).encode(),
                      "movies.dat": "".join(f"{i}::Movie {i} (1999)::Drama\n" for i in range(1, 11)).encode()},
    }


DATASETS = _dataset_files()
DATA_FILES = [(fmt, name) for fmt, files in DATASETS.items() for name in files]


@st.composite
def corrupted(draw, data: bytes) -> bytes:
    """A truncation at any offset, garbage bytes, or garbage spliced in at any offset."""
    kind = draw(st.sampled_from(["truncate", "garbage", "splice"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=64))
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


@st.composite
def damaged_dataset(draw):
    fmt, name = draw(st.sampled_from(DATA_FILES))
    return fmt, name, draw(corrupted(DATASETS[fmt][name]))


def test_the_pristine_datasets_load():
    """The property below is only meaningful if the undamaged files are accepted."""
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, files in DATASETS.items():
            folder = Path(tmp) / fmt
            folder.mkdir()
            for name, data in files.items():
                (folder / name).write_bytes(data)
            status, out, err = cli(["data", "stats", str(folder), "--json"])
            assert status == 0, (fmt, err)
            assert json.loads(out.strip().splitlines()[-1])["num_users"] == 8


@SETTINGS
@given(damaged_dataset())
def test_damaged_data_file_is_one_line_and_writes_nothing(case):
    fmt, name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        for other, contents in DATASETS[fmt].items():
            (folder / other).write_bytes(data if other == name else contents)
        before = tree_digest(tmp)
        status, _, err = cli(["data", "stats", str(folder)])
        if status != 0:
            assert_one_line_error(status, err, name, str(folder))
            # genrec train reads the same files before writing anything: the same line, nothing on disk.
            status, _, err = cli(toy_train_argv(folder, Path(tmp) / "run"))
            assert_one_line_error(status, err, name, str(folder))
        assert tree_digest(tmp) == before


# ----------------------------------------------------------------------------- saved model folders


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as `genrec train` writes it (tiny random SASRec; data section first in config.yaml)."""
    from genrec.models.sasrec import SASRecConfig, SASRecModel
    from tests.conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("saved")
    dataset = write_toy_dataset(root / "toy")
    run = root / "run"
    config = SASRecConfig(num_items=24, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                          max_position_embeddings=8)
    SASRecModel(config, item_ids=[str(item) for item in range(1, 25)]).save_pretrained(run / "checkpoint")
    values = {"data": {"dataset": dataset}, "model": {"type": "sasrec", "hidden_size": 8}, "training": {"seed": 1}}
    (run / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    assert cli(["evaluate", "--checkpoint", str(run), "--max-users", "3"])[0] == 0
    return run


CHECKPOINT_FILES = ["config.yaml", "checkpoint/config.json", "checkpoint/model.safetensors", "checkpoint/item_ids.json"]


@SETTINGS
@given(relative=st.sampled_from(CHECKPOINT_FILES), data=st.data())
def test_damaged_run_folder_file_is_one_line_and_writes_nothing(run_folder, relative, data):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(run_folder, run)
        (run / relative).write_bytes(data.draw(corrupted((run_folder / relative).read_bytes())))
        before = tree_digest(tmp)
        status, _, err = cli(["evaluate", "--checkpoint", str(run), "--max-users", "3"])
        if status != 0:
            assert_one_line_error(status, err, Path(relative).name)
        assert tree_digest(tmp) == before


@SETTINGS
@given(data=st.data())
def test_damaged_run_config_is_one_line_naming_the_file_or_key(data):
    """`genrec train --config` on a damaged preset (num_train_epochs=0 and a missing dataset keep any valid
    leftover from loading data or training)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "run.yaml"
        config.write_bytes(data.draw(corrupted(SMOKE.read_bytes())))
        before = tree_digest(tmp)
        status, _, err = cli(["train", "--config", str(config), "--output", str(Path(tmp) / "out"),
                              "--set", "training.num_train_epochs=0", "--set", f"data.dataset={tmp}/no-such-data"])
        line = assert_one_line_error(status, err)
        # the file, or the `key` / section it names
        assert "run.yaml" in line or re.search(r"`[^`]+`|config section\(s\) \[", line), line
        assert tree_digest(tmp) == before
