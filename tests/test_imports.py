"""What importing genrec costs: no model and no heavy optional package until something needs it.

``import genrec`` registers the configs with ``AutoConfig`` and each model's classes when one of its configs is first
built (genrec.models.registry.AutoRegisteredConfigMixin), so importing one module (the MoE block) does not import
every model, transformers' modeling stack or optional packages. Each case runs in a fresh interpreter.
"""

import json
import os
import pickle
import subprocess
import sys

import pytest

# optional packages used only inside functions (alignment, plots, W&B, sentence encoders, datasets), and
# transformers' modeling stack, which pulls accelerate, scipy and sympy in
HEAVY = ("peft", "trl", "sentence_transformers", "matplotlib", "wandb", "datasets", "accelerate", "scipy", "sympy",
         "pandas", "pyarrow", "transformers.modeling_utils", "transformers.activations")
ALWAYS_LAZY = ("peft", "trl", "sentence_transformers", "matplotlib", "wandb")


def _run(script: str, tmp_path) -> str:
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _imported_after(statement: str, tmp_path) -> dict:
    script = (f"import json, sys\n{statement}\n"
              f"print(json.dumps({{'heavy': [m for m in {list(HEAVY)!r} if m in sys.modules], "
              "'models': sorted(m for m in sys.modules if m.startswith('genrec.') and '.modeling_' in m)}))")
    return json.loads(_run(script, tmp_path))


@pytest.mark.parametrize("statement, allowed", [
    ("from genrec.models.layers import SparseMoeBlock", ()),
    ("import genrec", ()),
    ("from genrec.data import load_dataset", ("pyarrow",)),  # the splits' columns (cheap); `datasets` is not
])
def test_importing_genrec_or_one_module_imports_no_model_and_no_heavy_package(statement, allowed, tmp_path):
    imported = _imported_after(statement, tmp_path)
    assert not set(ALWAYS_LAZY) & set(imported["heavy"]), imported
    assert imported == {"heavy": list(allowed), "models": []}, imported


def test_a_checkpoint_loads_through_the_auto_classes_after_a_bare_import_genrec(tmp_path):
    from genrec.models.popularity import PopularityModel
    from genrec.models.sasrec import SASRecModel

    ids = ["a", "b", "c", "d"]
    SASRecModel.from_dataset(type("Catalog", (), {"item_ids": ids}), None, hidden_size=8, num_hidden_layers=1,
                             num_attention_heads=2).save_pretrained(tmp_path / "sasrec")
    popularity = PopularityModel.from_sequences([["a", "b", "b"], ["c", "b"]], ids)
    (tmp_path / "config.pkl").write_bytes(pickle.dumps(popularity.config))
    script = f"""
import json, pickle, sys
import genrec
from transformers import AutoConfig, AutoModel
before = [m for m in sys.modules if m.startswith("genrec.") and ".modeling_" in m]
model = AutoModel.from_pretrained({str(tmp_path / "sasrec")!r})
config = AutoConfig.from_pretrained({str(tmp_path / "sasrec")!r})
fresh = AutoModel.from_config(config)
unpickled = pickle.loads(open({str(tmp_path / "config.pkl")!r}, "rb").read())  # no __post_init__ runs here
baseline = AutoModel.from_config(unpickled)
print(json.dumps([before, type(model).__name__, model.item_ids, type(fresh).__name__, type(baseline).__name__]))
"""
    before, name, item_ids, fresh, baseline = json.loads(_run(script, tmp_path))
    assert before == []  # nothing was registered by importing a model module
    assert (name, item_ids, fresh, baseline) == ("SASRecModel", ids, "SASRecModel", "PopularityModel")
