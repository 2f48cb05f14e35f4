"""Guard tests: the folders are parts of the genrec namespace and never top-level packages."""

import importlib
import importlib.util
import tomllib
from pathlib import Path

import pytest

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
