"""Run configuration: YAML (values only) -> model config + dataclasses.

A run config has three sections::

    model:            # model choice + every architectural number of its PreTrainedConfig
      type: sasrec
      hidden_size: 64
    data:             # DataArguments
      dataset: amazon-beauty
    training:         # GenRecTrainingArguments (a transformers.TrainingArguments subclass)
      num_train_epochs: 200
      learning_rate: 0.001

``load_run_config(path, overrides=["training.learning_rate=0.002"])`` parses it; unknown sections or
keys raise a ``ValueError`` naming the key and listing what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from transformers import TrainingArguments

from genrec.models.registry import MODEL_NAMES, get_model_record
from genrec.utils.checks import is_int

__all__ = [
    "DataArguments",
    "GenRecTrainingArguments",
    "RunConfig",
    "MODEL_TYPES",
    "load_run_config",
    "apply_overrides",
    "build_run_config",
    "read_yaml_config",
]

# Short model names accepted as `model.type` (YAML holds values only, never Python import paths): the model
# registry's names (adding a model adds its record in genrec/models/registry.py, nothing here).
MODEL_TYPES = MODEL_NAMES

_RUN_ONLY_TRAINING_KEYS = ("output_dir",)  # set from --output, never from the YAML
# `training.train_targets` values (GenRecTrainingArguments.train_targets); "random_cut" needs a window dataset
TRAIN_TARGETS = ("all_windows", "random_cut")
WINDOW_MODEL_KINDS = ("seq2seq",)  # model kinds whose training rows are (history, next items) windows


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


@dataclass
class DataArguments:
    """Which data a run trains and evaluates on."""

    dataset: str = field(
        default="amazon-beauty",
        metadata={"help": "Bundled dataset name (e.g. 'amazon-beauty') or a folder understood by genrec.data.load_dataset."},
    )
    max_users: int | None = field(
        default=None,
        metadata={"help": "Keep only the first N users (file order) for quick runs and tests; null = all users."},
    )
    keep_duplicates: bool = field(
        default=False,
        metadata={"help": "Keep duplicate events (same user, item and timestamp). By default they are dropped, "
                          "counted in metrics.json (data/duplicates_dropped) and logged."},
    )
    user_col: str | None = field(
        default=None,
        metadata={"help": "Interactions tables (CSV/TSV/Parquet): the user id column; null = the first of user_id, "
                          "user, userId, ... (genrec.data.readers.USER_COLUMNS)."},
    )
    item_col: str | None = field(
        default=None, metadata={"help": "Interactions tables: the item id column; null = detect (item_id, item, ...)."},
    )
    time_col: str | None = field(
        default=None,
        metadata={"help": "Interactions tables: the timestamp column (numbers or dates); null = detect (timestamp, "
                          "time, ts, ...; without one the file order is the time order)."},
    )
    min_user_interactions: int = field(
        default=0,
        metadata={"help": "k-core filter: drop users with fewer interactions (leave-one-out needs 3 per user); "
                          "0 = off."},
    )
    min_item_interactions: int = field(
        default=0, metadata={"help": "k-core filter: drop items with fewer interactions (iterated with users); 0 = off."},
    )

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"`data.dataset` ({self.dataset!r}) must be a non-empty dataset name or folder path")
        if self.max_users is not None and (
            not is_int(self.max_users) or self.max_users < 1
        ):
            raise ValueError(f"`data.max_users` ({self.max_users!r}) must be a positive integer or null")
        if not isinstance(self.keep_duplicates, bool):
            raise ValueError(f"`data.keep_duplicates` ({self.keep_duplicates!r}) must be true or false")
        for name in ("user_col", "item_col", "time_col"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"`data.{name}` ({value!r}) must be a column name or null (detect)")
        for name in ("min_user_interactions", "min_item_interactions"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"`data.{name}` ({value!r}) must be an integer >= 0 (0 = no filter)")

    def load_options(self) -> dict[str, Any]:
        """``load_dataset``'s keyword arguments for this data section (not the dataset itself, nor ``max_users``)."""
        return {"keep_duplicates": self.keep_duplicates, "user_col": self.user_col, "item_col": self.item_col,
                "time_col": self.time_col, "min_user_interactions": self.min_user_interactions,
                "min_item_interactions": self.min_item_interactions}


@dataclass
class GenRecTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` plus full-ranking evaluation and run-budget options.

    Defaults differ from transformers where recommendation needs it: evaluation every epoch,
    no intermediate checkpoints (the best weights are kept in memory and restored at the end),
    AdamW at 1e-3, and ``report_to="none"`` (pass ``wandb`` to log to Weights & Biases).
    """

    output_dir: str | None = field(default=None, metadata={"help": "Set by the run from --output."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Users per training batch."})
    per_device_eval_batch_size: int = field(default=512, metadata={"help": "Histories scored at once in evaluation."})
    num_train_epochs: float = field(default=200.0, metadata={"help": "Upper bound on epochs (early stopping usually ends sooner)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to run validation: 'epoch', 'steps' or 'no'."})
    save_strategy: str = field(default="no", metadata={"help": "Trainer checkpoints; 'no' because the best model is kept in memory."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log the training loss."})
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin host memory (only useful with a GPU)."})
    eval_ks: list[int] = field(default_factory=lambda: [5, 10, 20], metadata={"help": "Cut-offs for recall/ndcg/mrr."})
    metric_for_early_stopping: str = field(
        default="ndcg@10", metadata={"help": "Validation metric used for early stopping and best-model selection."}
    )
    early_stopping_patience: int | None = field(
        default=10,
        metadata={"help": "Stop after this many evaluations without improvement; null disables early stopping."},
    )
    max_train_seconds: float | None = field(
        default=None, metadata={"help": "Stop training (at the end of the current step) after this many seconds."}
    )
    eval_at_minutes: list[float] | None = field(
        default=None,
        metadata={
            "help": "Also validate when the training wall-clock time (validation included, as for "
            "max_train_seconds) first passes each of these minutes, e.g. [1, 2, 5, 10]; the (minutes, value) "
            "points of every validation are written to metrics.json as curve/valid/<metric>."
        },
    )
    exclude_history_items: bool = field(
        default=False,
        metadata={
            "help": "Full ranking: drop items already in the user's history before ranking (S3-Rec/RecBole "
            "code does; genrec.evaluation's default and generative decoding do not)."
        },
    )

    train_targets: str = field(
        default="all_windows",
        metadata={
            "help": "Which training examples an epoch holds, for models trained on (history, next items) windows "
            "(P5, OneRec). 'all_windows': every window of every training sequence (~131k on Beauty). 'random_cut': "
            "ONE window per user per epoch, drawn uniformly, i.e. each sequence cut at a random point, re-drawn "
            "every epoch (GRID's every-sub-sequence recipe, sampled; 22,363 on Beauty): 6x shorter epochs, so "
            "validation, early stopping and an LR schedule see many more epochs in the same time, and users weigh "
            "equally, as in leave-one-out evaluation. Over epochs it sees the same windows. The models that learn "
            "from every position in one forward (SASRec, RecGPT) already train on one row per user and take only "
            "'all_windows'."
        },
    )

    text_prior_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "Item-layout RecGPT, or P5 / OneRec with `loss_type: items`: after training, choose "
            "`model.text_prior_weight` (last-item text-kNN "
            "mixed into the ranking) among these weights on the VALIDATION split by metric_for_early_stopping, "
            "e.g. [0, 0.25, 0.5, 1, 2]; the chosen weight is saved in the checkpoint's config and the reported "
            "valid/test metrics use it. null: keep the model's own weight."
        },
    )

    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every parameter is used in every step, so DDP can skip the search."}
    )

    def __post_init__(self):
        if self.output_dir is None:
            self.output_dir = "genrec_trainer_scratch"
        if not self.use_cpu and not _has_accelerator():
            # Without `use_cpu`, accelerate starts a process group under `accelerate launch --multi_gpu`
            # but reports "not distributed", so each CPU process would train alone on all the data.
            self.use_cpu = True
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`training.{name}` ({value!r}) must be an integer >= 1")
        if (self.max_steps is None or self.max_steps <= 0) and not self.num_train_epochs > 0:
            raise ValueError(
                f"`training.num_train_epochs` ({self.num_train_epochs!r}) must be > 0 (or set `max_steps` > 0); "
                "0 would save an untrained model"
            )
        if not self.learning_rate >= 0:
            raise ValueError(f"`training.learning_rate` ({self.learning_rate!r}) must be >= 0")
        super().__post_init__()
        if isinstance(self.eval_ks, int):
            self.eval_ks = [self.eval_ks]
        if not self.eval_ks or any(not is_int(k) or k < 1 for k in self.eval_ks):
            raise ValueError(f"`training.eval_ks` ({self.eval_ks!r}) must be a non-empty list of positive integers")
        metric_k = self.metric_for_early_stopping.partition("@")[2]
        if not metric_k.isdigit() or int(metric_k) not in self.eval_ks:
            raise ValueError(
                f"`training.metric_for_early_stopping` ({self.metric_for_early_stopping!r}) must be "
                f"'<metric>@k' with k in `eval_ks` {self.eval_ks}, e.g. 'ndcg@10'"
            )
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                f"`training.early_stopping_patience` ({self.early_stopping_patience}) must be >= 1 or null"
            )
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise ValueError(f"`training.max_train_seconds` ({self.max_train_seconds}) must be > 0 or null")
        if self.train_targets not in TRAIN_TARGETS:
            raise ValueError(f"`training.train_targets` ({self.train_targets!r}) must be one of {list(TRAIN_TARGETS)}")
        if self.text_prior_weights is not None:
            weights = self.text_prior_weights
            if not isinstance(weights, list) or not weights or any(
                    isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf for w in weights):
                raise ValueError(f"`training.text_prior_weights` ({weights!r}) must be null or a non-empty list of "
                                 "finite numbers >= 0, e.g. [0, 0.5, 1, 2]")
        if self.eval_at_minutes is not None:
            from genrec.training.trainer import check_marks

            self.eval_at_minutes = check_marks(self.eval_at_minutes, "training.eval_at_minutes")


@dataclass
class RunConfig:
    """A parsed run: model type + config kwargs, data arguments and training arguments."""

    model_type: str
    model_kwargs: dict[str, Any]
    data: DataArguments
    training: GenRecTrainingArguments
    raw: dict[str, Any]  # the resolved YAML values (what gets written to the run folder)

    def to_dict(self) -> dict[str, Any]:
        """Values-only dict (round-trips through :func:`build_run_config`)."""
        return copy.deepcopy(self.raw)


def _allowed_model_keys(model_type: str) -> list[str]:
    record = get_model_record(model_type)
    fields = [f.name for f in dataclasses.fields(record.load_config_class()) if not f.name.startswith("_")]
    # extra: e.g. recgpt's `tokenizer` section; paths: e.g. P5/OneRec's `item_tokenizer` folder
    return sorted(fields + list(record.extra_model_keys) + list(record.path_model_keys))


def _parse_value(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (``0.1`` -> float, ``true`` -> bool, ``null`` -> None).

    Raises:
        ValueError: ``text`` is not valid YAML.
    """
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(
            f"the value {text!r} is not valid YAML ({problem}); write a number, true/false, null, a quoted "
            "'\"string\"', a [list] or a {mapping}"
        ) from None


def apply_overrides(values: dict[str, Any], overrides: Sequence[str],
                    sections: Sequence[str] = ("model", "data", "training")) -> dict[str, Any]:
    """Apply ``--set section.key=value`` overrides to a raw config dict (returns a copy).

    The one ``--set`` parser of genrec (``genrec train`` and ``genrec align`` alike); values are YAML
    (:func:`_parse_value`).

    Args:
        sections: the config's sections; an override naming another section is refused.

    Raises:
        ValueError: an override is not of the form ``section.key=value`` with a known section, or its value is
            not valid YAML.
    """
    values = copy.deepcopy(values)
    for override in overrides:
        key, sep, text = override.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in sections or not name:
            raise ValueError(
                f"--set {override!r}: expected 'section.key=value' with section in {list(sections)}, "
                "e.g. training.learning_rate=0.002"
            )
        if values.get(section) is None:  # absent, or `section:` with nothing under it
            values[section] = {}
        if not isinstance(values[section], dict):
            raise ValueError(
                f"--set {override!r}: config section `{section}` is {values[section]!r}, not a mapping of keys to values"
            )
        try:
            values[section][name] = _parse_value(text)
        except ValueError as error:
            raise ValueError(f"--set {override!r}: {error}") from None
    return values


def _field_types(cls) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (forward references that do not resolve are skipped)."""
    import torch

    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        module = __import__(klass.__module__, fromlist=["_"])
        namespace = {**vars(typing), "torch": torch, **vars(module)}
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, namespace)  # what typing.get_type_hints does, per field
                except (NameError, AttributeError, TypeError, SyntaxError):  # e.g. a TYPE_CHECKING-only name
                    continue  # such a field is left to the class's own checks
            inherited = typing.get_args(hints.get(name))
            if annotation is str and any(_is_enum(arm) for arm in inherited):
                continue  # our `eval_strategy: str` narrows transformers' `IntervalStrategy | str`: keep the choices
            hints[name] = annotation
    return hints


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _accepts_float(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts_float(arm) for arm in typing.get_args(annotation))
    return annotation is float


def _describe(annotation: Any) -> str:
    """Plain words for what a type annotation allows ("an integer", "a list of integers or null")."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if any(_is_enum(arm) for arm in arguments):  # `SchedulerType | str`: the str arm is for convenience
            arguments = tuple(arm for arm in arguments if arm is not str)
        words = list(dict.fromkeys(_describe(arm) for arm in arguments))
        if "a number" in words and "an integer" in words:
            words.remove("an integer")
        return " or ".join(words)
    if origin is typing.Literal:
        return f"one of {list(arguments)}"
    if origin is list or annotation is list:
        return f"a list of {_describe(arguments[0]).removeprefix('a ').removeprefix('an ')}s" if arguments else "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {[member.value for member in annotation]}"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _matches(value: Any, annotation: Any) -> bool | None:
    """Whether ``value`` (from YAML) fits ``annotation``; None when the annotation is not one we check."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        enums = [arm for arm in arguments if _is_enum(arm)]
        if enums and isinstance(value, str):
            return any(_matches(value, arm) for arm in enums)
        verdicts = [_matches(value, arm) for arm in arguments]
        return True if any(verdicts) else (None if None in verdicts else False)
    if origin is typing.Literal:
        return value in arguments
    if origin is list or annotation is list:
        return isinstance(value, list) and all(_matches(item, arguments[0]) is not False for item in value[:1000]) \
            if arguments else isinstance(value, list)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in [member.value for member in annotation]
    return None  # torch.dtype, accelerate objects, ...: left to the class's own checks


def check_value_types(section: str, values: dict[str, Any], cls) -> None:
    """Check each ``values[key]`` against the annotation of field ``key`` of dataclass ``cls``.

    Numeric strings (YAML's ``1e-3``) given for a float field are converted in ``values``.

    Raises:
        ValueError: naming ``section.key``, the value and the allowed type(s).
    """
    hints = _field_types(cls)
    for key, value in values.items():
        if key not in hints or _matches(value, hints[key]) is not False:
            continue
        if isinstance(value, str) and _accepts_float(hints[key]):
            # YAML 1.1 reads `1e-3` (no dot) as a string; take it as the number it spells.
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and math.isfinite(number):
                values[key] = number
                continue
        raise ValueError(f"`{section}.{key}` ({value!r}) is not allowed: it must be {_describe(hints[key])}")


def build_run_config(values: dict[str, Any], *, output_dir: str | os.PathLike | None = None) -> RunConfig:
    """Validate a raw config dict and build the run's objects.

    Args:
        values: ``{"model": {...}, "data": {...}, "training": {...}}``.
        output_dir: where the Trainer may write (the run's staging folder).

    Raises:
        ValueError: unknown section/key or an invalid value (the message names it).
    """
    if not isinstance(values, dict):
        raise ValueError(f"a run config must be a mapping with sections model/data/training, got {type(values).__name__}")
    unknown = sorted(set(values) - {"model", "data", "training"})
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; allowed: ['data', 'model', 'training']")
    raw = copy.deepcopy(values)
    for section in ("model", "data", "training"):
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise ValueError(f"config section `{section}` must be a mapping of keys to values, got {raw[section]!r}")

    model_values = dict(raw["model"])
    model_type = model_values.pop("type", "sasrec")
    record = get_model_record(model_type)
    allowed = _allowed_model_keys(model_type)
    bad = sorted(set(model_values) - set(allowed))
    if bad:
        raise ValueError(f"unknown `model` key(s) {bad} for model type {model_type!r}; allowed: ['type'] + {allowed}")
    for key in record.extra_model_keys:  # builder sections (recgpt's `tokenizer`): mappings of their own fields
        if not isinstance(model_values.get(key, {}), (dict, type(None))):
            raise ValueError(f"`model.{key}` ({model_values[key]!r}) must be a mapping or null")
    for key in record.path_model_keys:  # a folder or Hub repo id (P5/OneRec's fitted `item_tokenizer`)
        value = model_values.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"`model.{key}` ({value!r}) must be a folder path, a Hugging Face Hub repo id or null")
    # Build once to validate the numbers now rather than after loading data.
    config_class = record.load_config_class()
    builder_keys = (*record.extra_model_keys, *record.path_model_keys)
    config_values = {key: value for key, value in model_values.items() if key not in builder_keys}
    check_value_types("model", config_values, config_class)
    try:
        config_class(**{**record.config_check_kwargs, **config_values})
    except (ValueError, TypeError) as error:  # the config classes name the bare field: say which section
        message = re.sub(r"`(\w+)`", lambda m: f"`model.{m[1]}`" if m[1] in allowed else m[0], str(error))
        raise ValueError(message if "`model." in message else f"invalid `model` value: {message}") from None

    data_fields = [f.name for f in dataclasses.fields(DataArguments)]
    bad = sorted(set(raw["data"]) - set(data_fields))
    if bad:
        raise ValueError(f"unknown `data` key(s) {bad}; allowed: {sorted(data_fields)}")
    check_value_types("data", raw["data"], DataArguments)
    data = DataArguments(**raw["data"])

    training_values = dict(raw["training"])
    training_fields = [f.name for f in dataclasses.fields(GenRecTrainingArguments) if f.init]
    bad = sorted(set(training_values) - set(training_fields))
    if bad:
        raise ValueError(
            f"unknown `training` key(s) {bad}; allowed: any transformers.TrainingArguments field "
            "plus eval_ks, metric_for_early_stopping, early_stopping_patience, max_train_seconds, eval_at_minutes, "
            "exclude_history_items, train_targets, text_prior_weights"
        )
    for key in _RUN_ONLY_TRAINING_KEYS:
        if key in training_values:
            raise ValueError(f"`training.{key}` cannot be set in the config; pass --output instead")
    check_value_types("training", training_values, GenRecTrainingArguments)
    training_values["output_dir"] = str(output_dir) if output_dir is not None else None
    try:
        training = GenRecTrainingArguments(**training_values)
    except TypeError as error:  # wrong value types surface as TypeError inside TrainingArguments
        raise ValueError(f"invalid `training` value: {error}") from None
    except ValueError as error:  # transformers' own checks do not always name the section
        message = str(error)
        raise ValueError(message if "`training." in message else f"invalid `training` value: {message}") from None
    if training.text_prior_weights is not None and not (
            model_values.get("input_granularity") == "item"
            and (model_type == "recgpt" or (model_type in ("p5", "onerec") and model_values.get("loss_type") == "items"))):
        raise ValueError("`training.text_prior_weights` needs `model.type: recgpt` with `model.input_granularity: "
                         "item`, or p5 / onerec with `input_granularity: item` and `loss_type: items` (the models "
                         f"with a text prior); got model.type {model_type!r}")
    if training.train_targets != "all_windows" and record.kind not in WINDOW_MODEL_KINDS:
        raise ValueError(f"`training.train_targets` ({training.train_targets!r}) applies to models trained on history "
                         f"windows (P5, OneRec); {model_type!r} trains on one row per user already: use 'all_windows'")
    return RunConfig(model_type=model_type, model_kwargs=model_values, data=data, training=training, raw=raw)


def load_run_config(
    path: str | os.PathLike, overrides: Sequence[str] = (), *, output_dir: str | os.PathLike | None = None
) -> RunConfig:
    """Read a YAML run config, apply ``--set`` overrides and validate it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the YAML is malformed or holds unknown/invalid values.
    """
    return build_run_config(apply_overrides(read_yaml_config(path), overrides), output_dir=output_dir)


def read_yaml_config(path: str | os.PathLike) -> dict[str, Any]:
    """The values of a YAML config file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the YAML is malformed, empty or not a mapping.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config file {str(path)!r} is a folder; expected a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text (byte {error.start}); expected YAML") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"config file {str(path)!r} is not valid YAML{where}: {problem}") from None
    if values is None or values == {}:
        raise ValueError(
            f"config file {str(path)!r} is empty; a run config needs the sections model/data/training "
            "(see scripts/configs/*.yaml)"
        )
    if not isinstance(values, dict):
        raise ValueError(
            f"config file {str(path)!r} holds a {type(values).__name__}, not a mapping with the sections "
            "model/data/training"
        )
    return values
