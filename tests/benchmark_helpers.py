"""Load a script of ``benchmarks/`` (not a package) as a module, for the tests of benchmarks/."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` executed as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
