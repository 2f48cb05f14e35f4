"""genrec.alignment uses transformers / TRL / peft / accelerate / datasets through public names only.

Every ``_private`` name the alignment code touches -- an attribute (``self._metrics``), a method it overrides
(``def _save``), a keyword or parameter (``_internal_call=``), an imported name -- is checked against the private
names those libraries define (scanned from their installed sources). Recognising a patch by its code object
(``__code__``, ``co_name``, ``__func__``) is refused outright. An upgrade of any of them then cannot silently
change what genrec relies on.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALIGNMENT = ROOT / "alignment"
LIBRARIES = ("transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub")
# the library modules genrec's alignment code builds on (trainers, configs, models, datasets, hub access)
LIBRARY_SOURCES = {
    "transformers": ["trainer.py", "trainer_utils.py", "trainer_callback.py", "trainer_pt_utils.py", "training_args.py",
                     "modeling_utils.py", "configuration_utils.py", "utils/hub.py", "generation/utils.py"],
    "trl": ["trainer/*.py", "models/*.py", "*.py"],
    "peft": ["peft_model.py", "tuners/tuners_utils.py", "tuners/lora/model.py"],
    "accelerate": ["accelerator.py", "state.py"],
    "datasets": ["arrow_dataset.py", "fingerprint.py", "iterable_dataset.py"],
    "huggingface_hub": ["file_download.py"],
}
FORBIDDEN_ATTRIBUTES = ("__code__", "co_name", "__func__", "__closure__")
DEFINITION = re.compile(r"(?:\bdef\s+|\bclass\s+|\bself\.|\b)(_[A-Za-z]\w*)\s*(?:\(|(?::[^=\n]*)?=(?!=))")


def _is_private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def library_private_names() -> set[str]:
    """Private names the libraries define: functions, classes, attributes, parameters with defaults."""
    names: set[str] = set()
    for library, patterns in LIBRARY_SOURCES.items():
        spec = importlib.util.find_spec(library)
        assert spec is not None and spec.origin, f"{library} is a genrec dependency"
        package = Path(spec.origin).parent
        files = [path for pattern in patterns for path in package.glob(pattern)]
        assert files, f"no sources of {library} matched {patterns}"
        for path in files:
            names.update(name for name in DEFINITION.findall(path.read_text(encoding="utf-8"))
                         if _is_private(name))
    return names


def private_uses(source: str, filename: str) -> list[tuple[str, int, str]]:
    """``(name, line, what)`` for every private name a module uses in a way that could reach a library."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_ATTRIBUTES or _is_private(node.attr):
                found.append((node.attr, node.lineno, "attribute"))
        elif isinstance(node, ast.keyword) and _is_private(node.arg):
            found.append((node.arg, node.value.lineno, "keyword"))
        elif isinstance(node, ast.arg) and _is_private(node.arg):
            found.append((node.arg, node.lineno, "parameter"))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_private(item.name):
                    found.append((item.name, item.lineno, "method"))
                if isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    found.extend((t.id, item.lineno, "class attribute") for t in targets
                                 if isinstance(t, ast.Name) and _is_private(t.id))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            parts = node.module.split(".")
            found.extend((part, node.lineno, f"module {node.module}") for part in parts if _is_private(part))
            found.extend((alias.name, node.lineno, f"import from {node.module}") for alias in node.names
                         if _is_private(alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in LIBRARIES:
                    found.extend((part, node.lineno, f"module {alias.name}") for part in parts if _is_private(part))
    return found


def violations(source: str, filename: str, library_names: set[str]) -> list[str]:
    out = []
    for name, line, what in private_uses(source, filename):
        if name in FORBIDDEN_ATTRIBUTES or what.startswith(("module ", "import from ")) or name in library_names:
            out.append(f"{filename}:{line}: {what} {name!r}")
    return out


@pytest.fixture(scope="module")
def library_names() -> set[str]:
    names = library_private_names()
    # the scan must see the internals genrec once used, or it proves nothing
    assert {"_prepare_dataset", "_set_signature_columns_if_needed", "_precompute_ref_logps", "_metrics", "_save",
            "_internal_call", "_fingerprint", "_raise_exceptions_for_missing_entries"} <= names
    return names


def test_the_detector_flags_library_internals(library_names):
    bad = '''
from trl.trainer.utils import _private_helper
from transformers.utils import cached_file


class Trainer2(DPOTrainer):
    def _prepare_dataset(self, dataset):
        return dataset

    def save_model(self, output_dir=None, _internal_call=False):
        self._metrics["train"]["x"].append(1)
        cached_file("x", "y", _raise_exceptions_for_missing_entries=False)
        return dataset._fingerprint


def patched(forward):
    return forward.__func__.__code__.co_name == "_fused_forward"
'''
    found = "\n".join(violations(bad, "bad.py", library_names))
    for name in ("_private_helper", "_prepare_dataset", "_internal_call", "_metrics",
                 "_raise_exceptions_for_missing_entries", "_fingerprint", "__func__", "__code__", "co_name"):
        assert repr(name) in found, (name, found)
    good = '''
class Mine(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return self.my_helper(model, inputs)
'''
    assert violations(good, "good.py", library_names) == []


def test_alignment_uses_no_private_library_name(library_names):
    files = sorted(ALIGNMENT.glob("*.py"))
    assert {"dpo.py", "adapters.py", "losses.py", "reward.py", "ipa.py", "preference.py"} <= {p.name for p in files}
    problems = [problem for path in files
                for problem in violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)),
                                          library_names)]
    assert not problems, ("genrec.alignment touches library internals (use public API):\n  "
                          + "\n  ".join(problems))
