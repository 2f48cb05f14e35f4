"""Every training preset in scripts/configs parses, and RecGPT's model sections are valid RecGPT configs."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted(path for path in (REPO / "scripts" / "configs").glob("*.yaml") if "-align" not in path.name)


def test_there_are_presets():
    assert len(PRESETS) >= 20


@pytest.mark.parametrize("path", PRESETS, ids=[path.name for path in PRESETS])
def test_training_preset_parses(path):
    from genrec.models.recgpt import RecGPTConfig
    from genrec.training import load_run_config

    run = load_run_config(path)
    assert run.model_type in path.name.split("-")[0]
    if run.model_type == "recgpt":  # the fields the tokenizer does not set must be valid as they are
        fields = {key: value for key, value in run.model_kwargs.items() if key != "tokenizer"}
        RecGPTConfig(**fields)
