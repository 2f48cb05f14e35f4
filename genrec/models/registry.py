"""The one table of genrec's models: what the CLI, training, alignment and the Auto classes read.

Each :class:`ModelRecord` names a model once: its ``model.type`` in run configs, the ``model_type`` in its
``config.json``, its config and model classes, the transformers Auto classes that load it, its *kind* (what
sort of recommender it is: alignment and training branch on it) and how a run builds it from a dataset.

Classes are named as ``"module:Class"`` strings, so reading this table imports nothing but this file; the
``load_*`` methods import on demand. Adding a model: its folder (``configuration_<m>.py``, ``modeling_<m>.py``,
a ``from_dataset`` builder) plus one :class:`ModelRecord` line below.

Example:
    >>> from genrec.models.registry import get_model_record
    >>> record = get_model_record("onerec")
    >>> record.model_type, record.kind, record.auto_classes[0]
    ('genrec-onerec', 'seq2seq', 'AutoModelForSeq2SeqLM')
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

__all__ = [
    "KINDS",
    "MODEL_NAMES",
    "MODEL_RECORDS",
    "AutoRegisteredConfigMixin",
    "ModelRecord",
    "get_model_record",
    "import_object",
    "record_of",
    "record_for_model_type",
    "register_auto_classes",
    "register_model_classes",
]

# What sort of recommender a model is (the one vocabulary that training and alignment branch on).
KINDS: dict[str, str] = {
    "embedding-ranker": "scores every catalog item from one pass over the history (SASRec)",
    "nonparametric": "fitted from counts or item texts without gradient steps (popularity, text-kNN)",
    "seq2seq": "T5 encoder-decoder generating an item's code tokens under the catalog trie (P5, OneRec)",
    "parallel-codes": "decoder-only model predicting all code levels of the next item at once (RecGPT)",
    "text-lm": "causal LM writing the next item's title, grounded to the catalog (BIGRec)",
    "reward": "scores (history, item) engagement; ranks candidate sessions for alignment (genrec-reward)",
}
AUTO_CLASS_NAMES = ("AutoModel", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")


def import_object(path: str) -> Any:
    """The object named by ``"package.module:Name"`` (``"module:Class.attribute"`` reaches into a class)."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"{path!r} must be 'package.module:Name'")
    value: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class ModelRecord:
    """One genrec model.

    Attributes:
        name: ``model.type`` in run configs (``"sasrec"``).
        model_type: ``config.model_type`` / the ``model_type`` of ``config.json`` (``"genrec-sasrec"``).
        config_class, model_class: ``"module:Class"`` of the ``PreTrainedConfig`` / ``PreTrainedModel``.
        auto_classes: the transformers Auto classes the model registers with, the one users load it with first.
        kind: a key of :data:`KINDS`.
        builder: ``"module:callable"`` with the signature ``(catalog, train_sequences, *, seed, **model_kwargs)
            -> model``: how ``genrec train`` builds the model from a dataset (``catalog`` has at least
            ``item_ids``; ``None``: not built by ``genrec train``, e.g. the reward model, which ``genrec align``
            trains).
        needs_catalog, needs_train_sequences: what the builder reads (checked before it is called).
        extra_model_keys: run-config ``model.`` keys the builder takes beyond the config's fields (mappings).
        path_model_keys: run-config ``model.`` keys the builder takes that name a folder or Hub repo id (strings).
        config_check_kwargs: values the config needs to be constructed when ``genrec train`` validates the
            ``model`` section before any data is loaded (e.g. a catalog size that only the data gives).
    """

    name: str
    model_type: str
    config_class: str
    model_class: str
    auto_classes: tuple[str, ...]
    kind: str
    builder: str | None = None
    needs_catalog: bool = False
    needs_train_sequences: bool = False
    extra_model_keys: tuple[str, ...] = ()
    path_model_keys: tuple[str, ...] = ()
    config_check_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"`kind` ({self.kind!r}) of model {self.name!r} must be one of {list(KINDS)}")
        unknown = [name for name in self.auto_classes if name not in AUTO_CLASS_NAMES]
        if not self.auto_classes or unknown:
            raise ValueError(f"`auto_classes` {list(self.auto_classes)} of model {self.name!r} must be a non-empty "
                             f"subset of {list(AUTO_CLASS_NAMES)}")

    def load_config_class(self) -> type:
        return import_object(self.config_class)

    def load_model_class(self) -> type:
        return import_object(self.model_class)

    def build(self, model_kwargs: Mapping[str, Any], *, item_ids, catalog=None, train_sequences=None,
              seed: int = 0):
        """Build the model for a dataset (see ``builder``).

        Raises:
            ValueError: the model is not built from a dataset, or the catalog / training sequences it reads are
                missing.
        """
        if self.builder is None:
            raise ValueError(f"`model.type` {self.name!r} is not built by `genrec train`")
        if self.needs_catalog and catalog is None:
            raise ValueError(f"`model.type` {self.name!r} needs the item catalog (item texts/titles)")
        if self.needs_train_sequences and train_sequences is None:
            raise ValueError(f"`model.type` {self.name!r} needs the training sequences")
        if catalog is None:  # models that read only the ids (SASRec, popularity)
            catalog = SimpleNamespace(item_ids=list(item_ids))
        return import_object(self.builder)(catalog, train_sequences, seed=seed, **dict(model_kwargs))


_M = "genrec.models"
MODEL_RECORDS: tuple[ModelRecord, ...] = (
    ModelRecord("sasrec", "genrec-sasrec", f"{_M}.sasrec.configuration_sasrec:SASRecConfig",
                f"{_M}.sasrec.modeling_sasrec:SASRecModel", ("AutoModel",), "embedding-ranker",
                builder=f"{_M}.sasrec.modeling_sasrec:SASRecModel.from_dataset", config_check_kwargs={"num_items": 1}),
    ModelRecord("recgpt", "genrec-recgpt", f"{_M}.recgpt.configuration_recgpt:RecGPTConfig",
                f"{_M}.recgpt.modeling_recgpt:RecGPTForCausalLM", ("AutoModelForCausalLM", "AutoModel"),
                "parallel-codes", builder=f"{_M}.recgpt.modeling_recgpt:RecGPTForCausalLM.from_dataset", needs_catalog=True,
                extra_model_keys=("tokenizer",)),
    ModelRecord("bigrec", "genrec-bigrec", f"{_M}.bigrec.configuration_bigrec:BIGRecConfig",
                f"{_M}.bigrec.modeling_bigrec:BIGRecForCausalLM", ("AutoModelForCausalLM", "AutoModel"), "text-lm",
                builder=f"{_M}.bigrec.modeling_bigrec:BIGRecForCausalLM.from_dataset", needs_catalog=True),
    ModelRecord("p5", "genrec-p5", f"{_M}.p5.configuration_p5:P5Config",
                f"{_M}.p5.modeling_p5:P5ForConditionalGeneration", ("AutoModelForSeq2SeqLM", "AutoModel"), "seq2seq",
                builder=f"{_M}.p5.modeling_p5:P5ForConditionalGeneration.from_dataset", needs_catalog=True, needs_train_sequences=True,
                path_model_keys=("item_tokenizer",)),
    ModelRecord("onerec", "genrec-onerec", f"{_M}.onerec.configuration_onerec:OneRecConfig",
                f"{_M}.onerec.modeling_onerec:OneRecForConditionalGeneration", ("AutoModelForSeq2SeqLM", "AutoModel"),
                "seq2seq", builder=f"{_M}.onerec.modeling_onerec:OneRecForConditionalGeneration.from_dataset", needs_catalog=True, needs_train_sequences=True,
                path_model_keys=("item_tokenizer",)),
    ModelRecord("popularity", "genrec-popularity", f"{_M}.popularity.configuration_popularity:PopularityConfig",
                f"{_M}.popularity.modeling_popularity:PopularityModel", ("AutoModel",), "nonparametric",
                builder=f"{_M}.popularity.modeling_popularity:PopularityModel.from_dataset", needs_train_sequences=True),
    ModelRecord("textknn", "genrec-textknn", f"{_M}.textknn.configuration_textknn:TextKNNConfig",
                f"{_M}.textknn.modeling_textknn:TextKNNModel", ("AutoModel",), "nonparametric",
                builder=f"{_M}.textknn.modeling_textknn:TextKNNModel.from_dataset", needs_catalog=True),
    # trained by `genrec align` (genrec.alignment.reward.train_reward_model), not by `genrec train`
    ModelRecord("reward", "genrec-reward", "genrec.models.reward:RewardModelConfig",
                "genrec.models.reward:RewardModel", ("AutoModel",), "reward"),
)
# `model.type` values `genrec train` accepts (models with a builder)
MODEL_NAMES: tuple[str, ...] = tuple(record.name for record in MODEL_RECORDS if record.builder is not None)


def get_model_record(name: str) -> ModelRecord:
    """The record of ``model.type`` ``name``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    for record in MODEL_RECORDS:
        if record.name == name and record.builder is not None:
            return record
    raise ValueError(f"`model.type` ({name!r}) must be one of {list(MODEL_NAMES)}")


def record_for_model_type(model_type: str) -> ModelRecord:
    """The record whose ``config.json`` ``model_type`` is ``model_type``.

    Raises:
        ValueError: not a genrec model type.
    """
    for record in MODEL_RECORDS:
        if record.model_type == model_type:
            return record
    raise ValueError(f"model_type {model_type!r} is not a genrec model; known: "
                     f"{[record.model_type for record in MODEL_RECORDS]}")


def record_of(model: Any) -> ModelRecord:
    """The record of a model instance (read from ``model.config.model_type``).

    Raises:
        ValueError: the model is not a genrec model.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        raise ValueError(f"{type(model).__name__} has no `config.model_type`; expected a genrec model")
    return record_for_model_type(model_type)


def register_auto_classes(records: tuple[ModelRecord, ...] = MODEL_RECORDS, *, models: bool = True) -> None:
    """Register every record's config with ``AutoConfig`` and its model with its Auto classes (idempotent).

    Uses only the public ``AutoConfig.register`` / ``AutoModel*.register`` calls.

    Args:
        records: the records to register (default: all).
        models (bool, defaults to True): also import and register the model classes now. ``import genrec`` passes
            False: it registers the configs only (importing torch and transformers' config code, not the models
            or transformers' modeling stack), and each record's model classes are registered when a config of
            that model is first built (:class:`AutoRegisteredConfigMixin`), which every
            ``AutoModel*.from_pretrained`` / ``from_config`` does before it looks the model class up.
    """
    import transformers

    for record in records:
        config_class = record.load_config_class()
        if config_class.model_type != record.model_type:
            raise ValueError(f"{record.config_class} has model_type {config_class.model_type!r}; the registry says "
                             f"{record.model_type!r}")
        transformers.AutoConfig.register(record.model_type, config_class, exist_ok=True)
        if models:
            _register_models(record, config_class)


_MODELS_REGISTERED: set[str] = set()  # model_type values whose model classes are registered


def _register_models(record: ModelRecord, config_class: type) -> None:
    import transformers

    model_class = record.load_model_class()
    for auto_name in record.auto_classes:
        getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)
    _MODELS_REGISTERED.add(record.model_type)


def register_model_classes(model_type: str) -> None:
    """Register the model classes of the record with ``model_type`` with their Auto classes, once.

    A ``model_type`` that is not a genrec record (a user's subclass of a genrec config) is left alone.
    """
    if model_type in _MODELS_REGISTERED:
        return
    record = next((record for record in MODEL_RECORDS if record.model_type == model_type), None)
    if record is None:
        return
    _MODELS_REGISTERED.add(model_type)  # first: the model module may build a config of its own while importing
    try:
        _register_models(record, record.load_config_class())
    except BaseException:
        _MODELS_REGISTERED.discard(model_type)
        raise


class AutoRegisteredConfigMixin:
    """Mixin of every genrec config (before ``PreTrainedConfig`` in the bases): building a config registers its
    model classes with the transformers Auto classes (:func:`register_model_classes`).

    ``import genrec`` registers only the configs (:func:`register_auto_classes` with ``models=False``), so that
    importing one genrec module (``genrec.models.layers``, ``genrec.data``) does not import every model. Every
    ``AutoModel*.from_pretrained(folder)`` builds the config first (``AutoConfig``), and ``from_config`` is given
    one, so the model class is registered before transformers looks it up. An unpickled config (no
    ``__post_init__``) registers in ``__setstate__``.
    """

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        register_model_classes(type(self).model_type)

    def __setstate__(self, state):
        self.__dict__.update(state)
        register_model_classes(type(self).model_type)
