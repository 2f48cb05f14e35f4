"""genrec: generative recommendation on the Hugging Face stack.

``import genrec`` makes every genrec ``model_type`` known to the transformers Auto classes (no
``trust_remote_code``)::

    import genrec
    from transformers import AutoModelForSeq2SeqLM
    model = AutoModelForSeq2SeqLM.from_pretrained("runs/onerec/checkpoint")   # a "genrec-onerec" folder

It also sets ``OMP_WAIT_POLICY=PASSIVE`` when torch is not imported yet and the variable is unset (see below).

Why lazily: importing the model classes costs torch + transformers' modeling stack (about 4 s on CPU), and every
``genrec.*`` import -- ``genrec --help``, ``genrec.utils.io`` -- runs this file (the CLI also sets
``OMP_WAIT_POLICY`` before torch is first imported). So this file only waits for transformers' ``AutoConfig``
module to load (an import hook, or at once when it is already loaded) and then puts a small placeholder per
genrec ``model_type`` in ``CONFIG_MAPPING``. The first time transformers asks a placeholder for its config class
(``AutoConfig.from_pretrained`` / ``for_model``, which every ``AutoModel*.from_pretrained`` call goes through),
it imports the module that owns the model -- :mod:`genrec.models` (registers the configs with ``AutoConfig`` and
the models with ``AutoModel`` / ``AutoModelForSeq2SeqLM`` / ``AutoModelForCausalLM``) or
``genrec.alignment.reward`` -- which replaces the placeholder with the real class. Import errors of those modules
propagate; only a ``genrec.alignment.reward`` that is not installed is skipped (no placeholder).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__version__ = "0.1.0"

# OpenMP's default wait policy lets idle torch threads spin; beside one other busy process on a 2-core machine that
# made beam search ~38x slower (229 -> 6 users/s, HF generate alike), PASSIVE keeps full speed and costs nothing
# on an idle machine. OpenMP reads the variable once, when torch loads it, so it is set here -- every genrec import
# runs this file -- only if torch is not loaded yet and the user has not chosen a policy. With torch imported first
# it is too late: genrec.utils.threads warns once on the hot paths (see the README, "Speed on a shared machine").
OPENMP_WAIT_POLICY_SET = "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules
if OPENMP_WAIT_POLICY_SET:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# model_type -> the module whose import registers it (tests/test_packaging.py checks this table against the
# configs' own ``model_type`` values).
AUTO_MODEL_TYPES: dict[str, str] = {
    "genrec-sasrec": "genrec.models",
    "genrec-recgpt": "genrec.models",
    "genrec-bigrec": "genrec.models",
    "genrec-p5": "genrec.models",
    "genrec-onerec": "genrec.models",
    "genrec-popularity": "genrec.models",
    "genrec-textknn": "genrec.models",
    "genrec-reward": "genrec.models.reward",
}
_OPTIONAL_MODULES = ("genrec.alignment.reward",)  # may be absent from a build; skipped then
_AUTO_CONFIG_MODULE = "transformers.models.auto.configuration_auto"


def _module_exists(name: str) -> bool:
    """Whether ``name`` (a ``genrec.<package>.<module>``) can be imported, without importing its package."""
    import importlib.machinery
    import importlib.util

    package_name = name.rpartition(".")[0]
    package = importlib.util.find_spec(package_name)  # imports only ``genrec`` (this module), not the package
    if package is None or not package.submodule_search_locations:
        return False
    return importlib.machinery.PathFinder.find_spec(name, list(package.submodule_search_locations)) is not None


class _LazyConfigClass:
    """``CONFIG_MAPPING`` placeholder: imports the owning module on first use and hands over to the real class.

    Transformers calls ``from_dict`` / the class itself and reads ``__module__`` / ``__name__`` / ``model_type``;
    every other attribute is forwarded to the real config class.
    """

    def __init__(self, model_type: str, module: str):
        self.model_type = model_type
        self.__module__ = module  # not "transformers.*": AutoConfig treats it as local code, as it is
        self.__name__ = self.__qualname__ = f"<lazy {model_type}>"
        self._module = module

    def resolve(self) -> type:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        importlib.import_module(self._module)  # registers the real classes (replacing this placeholder)
        real = CONFIG_MAPPING._extra_content.get(self.model_type)
        if real is None or isinstance(real, _LazyConfigClass):
            raise ValueError(f"importing {self._module} did not register model_type {self.model_type!r} with "
                             "AutoConfig")
        return real

    def __call__(self, *args: Any, **kwargs: Any):
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_module",):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"<genrec lazy config {self.model_type!r} from {self._module}>"


def _register_placeholders(config_mapping) -> None:
    """One placeholder per genrec model_type not registered yet (real classes are never replaced)."""
    for model_type, module in AUTO_MODEL_TYPES.items():
        if model_type in config_mapping._extra_content:
            continue
        if module in _OPTIONAL_MODULES and not _module_exists(module):
            continue
        config_mapping.register(model_type, _LazyConfigClass(model_type, module))


class _RegisterAfterLoad:
    """Wraps the loader of transformers' ``configuration_auto`` to add the placeholders once it has run."""

    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register_placeholders(module.CONFIG_MAPPING)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, ... of the real loader
        return getattr(self._loader, name)


class _AutoConfigImportHook:
    """One-shot ``sys.meta_path`` entry that catches the import of transformers' ``configuration_auto``."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _AUTO_CONFIG_MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfterLoad(spec.loader)
                return spec
        return None


def _install_auto_registration() -> None:
    loaded = sys.modules.get(_AUTO_CONFIG_MODULE)
    if loaded is not None and hasattr(loaded, "CONFIG_MAPPING"):
        _register_placeholders(loaded.CONFIG_MAPPING)
    elif not any(isinstance(finder, _AutoConfigImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AutoConfigImportHook())


_install_auto_registration()
