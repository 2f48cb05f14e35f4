"""Every key of every training preset, given a value of the wrong type or out of range: one line naming it.

All of these are refused while the config is parsed, before any data loads, so nothing is written
and the checks cost milliseconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.helpers import (
    CONFIGS,
    assert_one_line_error,
    cli,
    max_examples,
    tree_digest,
)

SETTINGS = settings(max_examples=max_examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESETS = sorted(path for path in CONFIGS.glob("*-beauty*.yaml") if "align" not in path.name)


def _preset_keys() -> list[tuple[Path, str, str, object]]:
    """(preset, section, key, its value) for every key of every training preset (null values have no type)."""
    keys = []
    for preset in PRESETS:
        for section, values in yaml.safe_load(preset.read_text()).items():
            keys += [(preset, section, key, value) for key, value in values.items() if value is not None]
    return keys


PRESET_KEYS = _preset_keys()


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def wrong_type_for(value):
    """Values whose type differs from that of the preset's ``value`` (an int is fine where a float is)."""
    words = st.text(min_size=1, max_size=12).filter(_not_a_number)
    lists = st.lists(st.integers(-3, 3), min_size=1, max_size=3)
    mappings = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), min_size=1)
    if isinstance(value, bool):
        return st.one_of(words, lists, mappings, st.integers(2, 9))
    if isinstance(value, (int, float)):
        return st.one_of(words, lists, mappings, st.booleans())
    if isinstance(value, str):
        return st.one_of(mappings, st.integers(), st.floats(allow_nan=False, allow_infinity=False))
    if isinstance(value, list):
        return st.one_of(words, mappings)
    if isinstance(value, dict):
        return st.one_of(words, lists, st.integers())
    raise AssertionError(f"no wrong-type strategy for {value!r}")


def test_every_preset_parses():
    """The property below only means something if each preset's own values are accepted."""
    from genrec.training import load_run_config

    assert len(PRESETS) >= 5
    for preset in PRESETS:
        load_run_config(preset)


def _yaml(value) -> str:
    """``value`` as `--set` text that YAML reads back as exactly ``value`` (JSON's ``1e-06`` would be a string)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]
    assert yaml.safe_load(text) == value, (value, text)
    return text


def _train(preset: Path, *overrides: str) -> tuple[int, str, dict, dict]:
    """`genrec train` with ``overrides``; a missing dataset goes first, so that a value the checks let
    through ends in a data error (failing the test) instead of a training run on the real data."""
    with tempfile.TemporaryDirectory() as tmp:
        before = tree_digest(tmp)
        argv = ["train", "--config", str(preset), "--output", str(Path(tmp) / "run")]
        overrides = (f"data.dataset={Path(tmp) / 'no-such-dataset'}", *overrides)
        argv += [f"--set={override}" for override in overrides]  # "=" form: text may start with "-"
        status, _, err = cli(argv)
        return status, err, before, tree_digest(tmp)


@SETTINGS
@given(data=st.data())
def test_a_wrong_type_for_any_preset_key_is_one_line_naming_it(data):
    preset, section, key, value = data.draw(st.sampled_from(PRESET_KEYS))
    wrong = data.draw(wrong_type_for(value))
    status, err, before, after = _train(preset, f"{section}.{key}={_yaml(wrong)}")
    assert_one_line_error(status, err, f"`{section}.{key}`")
    assert after == before


@SETTINGS
@given(
    key=st.sampled_from(["num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size"]),
    value=st.integers(-5, 0) | st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
)
def test_non_positive_epochs_and_batch_sizes_are_refused_before_the_data_loads(key, value):
    preset = CONFIGS / "sasrec-beauty-smoke.yaml"
    status, err, before, after = _train(preset, f"training.{key}={_yaml(value)}")
    assert_one_line_error(status, err, f"`training.{key}`")
    assert after == before


@SETTINGS
@given(text=st.text(max_size=20))
def test_any_set_text_is_parsed_or_refused_in_one_line(text):
    """Arbitrary `--set` text: a bad form, bad YAML, an unknown key or a bad value, never a traceback."""
    preset = CONFIGS / "sasrec-beauty-smoke.yaml"
    status, err, before, after = _train(preset, text, "training.num_train_epochs=0", "data.dataset=/no/such/data")
    assert_one_line_error(status, err, "--set", "`model", "`data", "`training", "section")
    assert after == before


def test_empty_and_non_mapping_config_files_are_refused(tmp_path):
    for name, text in (("empty.yaml", ""), ("comments.yaml", "# nothing here\n"), ("braces.yaml", "{}\n"),
                       ("list.yaml", "- model\n"), ("scalar.yaml", "sasrec\n")):
        (tmp_path / name).write_text(text)
        before = tree_digest(tmp_path)
        status, _, err = cli(["train", "--config", str(tmp_path / name), "--output", str(tmp_path / "run")])
        assert_one_line_error(status, err, name)
        assert tree_digest(tmp_path) == before
