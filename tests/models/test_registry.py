"""The model registry: one record per model, read by training, the CLI, alignment and the Auto classes."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import transformers

from genrec.models import registry
from genrec.models.registry import (
    KINDS,
    MODEL_NAMES,
    MODEL_RECORDS,
    ModelRecord,
    get_model_record,
    record_for_model_type,
    record_of,
)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "genrec" / "models"


def test_every_model_folder_has_one_record_and_every_record_resolves():
    folders = sorted(p.name for p in MODELS.iterdir() if (p / "__init__.py").is_file() and p.name != "generative")
    assert folders == sorted(r.name for r in MODEL_RECORDS if r.config_class.startswith("genrec.models."))
    assert len({r.name for r in MODEL_RECORDS}) == len({r.model_type for r in MODEL_RECORDS}) == len(MODEL_RECORDS)
    for record in MODEL_RECORDS:
        config_class, model_class = record.load_config_class(), record.load_model_class()
        assert config_class.model_type == record.model_type
        assert model_class.config_class is config_class or issubclass(config_class, model_class.config_class)
        assert record.kind in KINDS
        auto_config = transformers.AutoConfig.for_model(record.model_type)
        assert type(auto_config) is config_class  # `import genrec` (conftest) registered it
        for auto_name in record.auto_classes:
            assert getattr(transformers, auto_name)._model_mapping[config_class] is model_class
        if record.builder is not None:
            assert callable(registry.import_object(record.builder))


def test_lookups_name_the_known_values():
    assert get_model_record("onerec").auto_classes[0] == "AutoModelForSeq2SeqLM"
    assert record_for_model_type("genrec-recgpt").name == "recgpt"
    assert "reward" not in MODEL_NAMES  # trained by `genrec align`, not `genrec train`
    with pytest.raises(ValueError, match=r"`model.type` \('nope'\) must be one of \['sasrec'"):
        get_model_record("nope")
    with pytest.raises(ValueError, match="'genrec-nope' is not a genrec model"):
        record_for_model_type("genrec-nope")
    with pytest.raises(ValueError, match="has no `config.model_type`"):
        record_of(object())
    with pytest.raises(ValueError, match="`kind` \\('cnn'\\)"):
        ModelRecord("x", "genrec-x", "a:B", "a:C", ("AutoModel",), "cnn")
    with pytest.raises(ValueError, match="auto_classes"):
        ModelRecord("x", "genrec-x", "a:B", "a:C", ("AutoModelForMaskedLM",), "seq2seq")


def test_build_checks_what_the_builder_reads_and_passes_an_ids_only_catalog():
    with pytest.raises(ValueError, match="'textknn' needs the item catalog"):
        get_model_record("textknn").build({}, item_ids=["a"], catalog=None, train_sequences={"u": ["a"]})
    with pytest.raises(ValueError, match="'popularity' needs the training sequences"):
        get_model_record("popularity").build({}, item_ids=["a"], catalog=None, train_sequences=None)
    model = get_model_record("popularity").build({}, item_ids=["a", "b", "c"],
                                                 train_sequences={"u": ["b", "b", "c"], "v": ["b"]})
    assert model.recommend([["a"]], k=2) == [[("b", 3.0), ("c", 1.0)]]
    sasrec = get_model_record("sasrec").build({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2},
                                              item_ids=["a", "b"], catalog=SimpleNamespace(item_ids=["a", "b"]))
    assert sasrec.config.num_items == 2 and sasrec.item_ids == ["a", "b"]
    reward = next(r for r in MODEL_RECORDS if r.name == "reward")
    with pytest.raises(ValueError, match="not built by `genrec train`"):
        reward.build({}, item_ids=["a"])


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


@pytest.mark.parametrize("path", sorted(MODELS.rglob("configuration_*.py")), ids=lambda p: p.parent.name)
def test_configuration_modules_import_no_modeling_code(path):
    imported = _imported_modules(path)
    assert not [m for m in imported if "modeling" in m or m == "torch" or m.startswith("torch.")], imported


def test_base_modules_do_not_import_their_subclasses_or_the_models():
    subclass_packages = {f"genrec.models.{r.name}" for r in MODEL_RECORDS}
    for path in [*sorted((MODELS / "generative").glob("*.py")), MODELS / "layers.py", MODELS / "registry.py",
                 MODELS / "__init__.py"]:
        imported = _imported_modules(path)
        offending = [m for m in imported if any(m == p or m.startswith(p + ".") for p in subclass_packages)]
        assert not offending, f"{path.name} imports {offending}"


def test_package_inits_name_their_classes_lazily():
    """``genrec.models`` and each model package export their classes without importing their modules (PEP 562),
    so that reading a config or a layer does not import every model (``import genrec`` registers only the configs:
    tests/test_imports.py)."""
    for init in [MODELS / "__init__.py", *sorted(MODELS.glob("*/__init__.py"))]:
        top_level = [node for node in ast.parse(init.read_text()).body if isinstance(node, ast.ImportFrom)]
        assert not [n.module for n in top_level if "modeling" in (n.module or "")], init
    import genrec.models
    import genrec.models.p5

    assert genrec.models.SASRecModel.__name__ == "SASRecModel"
    assert genrec.models.p5.PromptBuilder.__name__ == "PromptBuilder"
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        genrec.models.Nope  # noqa: B018
