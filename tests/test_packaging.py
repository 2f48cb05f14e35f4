"""Guard tests: the folders are parts of the genrec namespace and never top-level packages."""

import importlib
import importlib.util
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"tokenization": "genrec.tokenization", "alignment": "genrec.alignment",
          "decoding": "genrec.decoding", "kernels": "genrec.kernels"}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    setuptools_cfg = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools_cfg["packages"])
    package_dir = setuptools_cfg["package-dir"]
    for folder, package in MAPPED.items():
        assert package_dir[package] == folder
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        top = rel.parts[0]
        if top in ("tests", "benchmarks", "scripts", ".venv") or top.startswith("."):
            continue
        prefix = MAPPED.get(top, top)
        name = ".".join([prefix, *rel.parts[1:]])
        assert name in listed, f"{name} ({rel}) is missing from [tool.setuptools] packages"


@pytest.mark.parametrize("name", sorted(MAPPED))
def test_folders_are_not_top_level_packages(name):
    spec = importlib.util.find_spec(name)
    if spec is not None:  # e.g. Hugging Face's own `kernels` package installed from PyPI
        origin = Path(spec.origin or next(iter(spec.submodule_search_locations or []), ""))
        assert ROOT not in origin.resolve().parents, f"`import {name}` resolves into the repo: {origin}"


@pytest.mark.parametrize("name", sorted(MAPPED.values()))
def test_namespace_packages_import(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent.name == name.split(".")[-1]


# ----- `import genrec` registers every genrec model type with the transformers Auto classes -----------------------
def test_import_genrec_registers_through_public_calls_only():
    """No import hook and no write to transformers' private mapping tables: genrec/__init__.py only calls the
    registry's ``register_auto_classes`` (``AutoConfig.register`` / ``AutoModel*.register``)."""
    import sys

    import genrec  # noqa: F401

    assert not [finder for finder in sys.meta_path if type(finder).__module__.startswith("genrec")]
    for path in [ROOT / "genrec" / "__init__.py", ROOT / "genrec" / "models" / "registry.py"]:
        text = path.read_text()
        for private in ("_extra_content", "meta_path", "CONFIG_MAPPING"):
            assert private not in text, f"{path.name} uses {private}"


def test_bare_import_genrec_registers_auto_classes_in_a_fresh_process(tmp_path):
    """Checkpoints saved here load in a new interpreter that only ran ``import genrec`` (no trust_remote_code),
    (``import genrec`` registers eagerly; see the README's Architecture section for what that costs)."""
    import json
    import os
    import subprocess
    import sys
    from types import SimpleNamespace

    import torch

    from genrec.models import (
        OneRecForConditionalGeneration,
        PopularityModel,
        RecGPTConfig,
        RecGPTForCausalLM,
        SASRecConfig,
        SASRecModel,
        TextKNNConfig,
        TextKNNModel,
    )
    from genrec.tokenization import get_tokenizer_class

    torch.manual_seed(0)
    SASRecModel(SASRecConfig(num_items=5, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             max_position_embeddings=4), item_ids=list("abcde")).save_pretrained(tmp_path / "sasrec")
    PopularityModel.from_sequences([["a", "b"], ["b"]], list("abc")).save_pretrained(tmp_path / "popularity")
    TextKNNModel(TextKNNConfig(num_items=3, embedding_dim=2), item_ids=list("abc"),
                 item_embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).save_pretrained(tmp_path / "textknn")
    item_ids = [f"i{n}" for n in range(6)]
    recgpt = RecGPTForCausalLM(
        RecGPTConfig(num_chunks=1, codebook_size=6, fsq_levels=[6], text_embedding_dim=4, hidden_size=8,
                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, max_position_embeddings=4),
        item_ids=item_ids, item_codes=torch.arange(6)[:, None].numpy(), item_text_embeddings=torch.randn(6, 4).numpy())
    recgpt.save_pretrained(tmp_path / "recgpt")
    item_tokenizer = get_tokenizer_class("random")(codebook_size=3, num_levels=2, seed=0).fit(
        SimpleNamespace(item_ids=item_ids))
    OneRecForConditionalGeneration.from_item_tokenizer(
        item_tokenizer, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2, num_experts=2, moe_intermediate_size=8
    ).save_pretrained(tmp_path / "onerec")
    script = f"""
import json, sys
import genrec
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM
root = {str(tmp_path)!r}
out = {{
    "sasrec": type(AutoModel.from_pretrained(root + "/sasrec")).__name__,
    "popularity": AutoModel.from_pretrained(root + "/popularity").recommend([["a"]], k=1),
    "textknn": [[item, round(score, 6)] for item, score in
                AutoModel.from_pretrained(root + "/textknn").recommend([["a"]], k=1, exclude_history=False)[0]],
    "recgpt": type(AutoModelForCausalLM.from_pretrained(root + "/recgpt")).__name__,
    "onerec": type(AutoModelForSeq2SeqLM.from_pretrained(root + "/onerec")).__name__,
    "p5": type(AutoConfig.for_model("genrec-p5")).__name__,
    "bigrec": AutoModelForCausalLM._model_mapping[type(AutoConfig.for_model("genrec-bigrec"))].__name__,
    "reward": type(AutoConfig.for_model("genrec-reward")).__name__,
}}
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {"sasrec": "SASRecModel", "popularity": [[["b", 2.0]]], "textknn": [["c", round(2 ** -0.5, 6)]],
                "recgpt": "RecGPTForCausalLM", "onerec": "OneRecForConditionalGeneration",
                "p5": "P5Config", "bigrec": "BIGRecForCausalLM", "reward": "RewardModelConfig"}
    assert loaded == expected


def test_benchmark_results_can_be_rewritten(tmp_path):
    """A benchmark's --result file is rewritten on every run; only a missing parent or a folder is refused."""
    import pytest

    from genrec.utils.io import check_output_file

    result = tmp_path / "bench.json"
    assert check_output_file(result) == result
    result.write_text("{}")
    assert check_output_file(result) == result  # an earlier result is replaced
    with pytest.raises(IsADirectoryError):
        check_output_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        check_output_file(tmp_path / "missing" / "bench.json")
