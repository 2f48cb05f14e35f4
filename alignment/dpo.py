"""Direct preference optimisation of genrec recommenders, configured with ``trl.DPOConfig``.

One entry point, :func:`build_dpo_trainer`, and one config, TRL's ``DPOConfig`` (``beta``, ``loss_type`` list +
``loss_weights``, ``label_smoothing``, ``precompute_ref_log_probs``, ``sync_ref_model``, logging, ...):

* **BIGRec** (a causal LM writing item titles) -> :class:`BIGRecDPOTrainer`, TRL's own ``DPOTrainer`` on
  ``model.llm`` with ``processing_class=model.tokenizer`` and the string columns ``prompt`` / ``chosen`` /
  ``rejected``, through its public API only. LoRA: a new adapter from ``peft_config`` (reference = adapters
  disabled) or the model's existing adapter (reference = TRL's frozen copy of it, adapter "ref"); full
  fine-tuning: reference = a frozen copy built from the LM's config and weights. Never a Hub download.
* **P5 / OneRec / RecGPT** -> :class:`GenRecDPOTrainer`, a small ``transformers.Trainer`` subclass that owns the
  preference loss: it reads the structured columns ``history`` / ``chosen_items`` / ``rejected_items``
  (+ ``target_items``), batches them with :class:`GenRecPreferenceCollator`, scores sessions with the models' own
  ``forward`` (:mod:`genrec.alignment.adapters`) and computes every ``DPOConfig.loss_type`` in
  :mod:`genrec.alignment.losses`. A session of ``m`` items is the concatenation of their code tokens
  (``log p(session)`` = sum over its tokens) for P5/OneRec; RecGPT scores sessions of exactly one item.

Objective of :class:`GenRecDPOTrainer` per batch (OneRec's iterative preference alignment, "NTP + lambda DPO")::

    loss = sum_k loss_weights[k] * DPO_k(pairs)          # over the rows that carry a pair
         + aux_loss(DPO forward)                          # MoE router losses of the policy forward
         + sft_weight * NTP(target_items) + aux_loss(NTP forward)   # when sft_weight > 0

``NTP`` is the model's own next-token loss (mean token cross-entropy) of ``target_items`` given ``history``; rows
with an empty ``chosen_items`` carry no pair (NTP only). Logged through ``Trainer.log``: ``rewards/chosen``,
``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``,
``logits/chosen``, ``logits/rejected``, plus ``aux_loss`` (MoE models), ``ntp_loss`` and OneRec's ``moe/*`` load.

Example:
    >>> from trl import DPOConfig
    >>> args = DPOConfig(output_dir="runs/dpo", beta=0.1, per_device_train_batch_size=32, use_cpu=True, bf16=False,
    ...                  report_to="none")
    >>> trainer = build_dpo_trainer(onerec, preference_dataset, args, sft_weight=1.0)   # doctest: +SKIP
    >>> trainer.train(); trainer.save_model("runs/dpo/final")                          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from torch import nn
from transformers import Trainer
from transformers.utils import logging
from trl import DPOConfig, DPOTrainer

from genrec.alignment.adapters import MODEL_KINDS, model_kind, preference_token_log_probs
from genrec.alignment.losses import check_preference_args, preference_loss, sequence_log_probs
from genrec.utils.io import atomic_directory, atomic_write_text

logger = logging.get_logger(__name__)

__all__ = [
    "BIGRecDPOTrainer",
    "GenRecDPOTrainer",
    "GenRecPreferenceCollator",
    "build_dpo_trainer",
]

PREFERENCE_COLUMNS = ("history", "chosen_items", "rejected_items")
TARGET_COLUMN = "target_items"
FEATURE_COLUMNS = ("context_ids", "chosen_ids", "rejected_ids", "target_ids")
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
DPO_CONFIG_FILE = "dpo_config.json"


# ----------------------------------------------------------------------------------------------------- helpers
def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number >= 0")
    return float(value)


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients: the DPO reference of a genrec model (never downloaded)."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def _frozen_lm_copy(lm: nn.Module) -> nn.Module:
    """A frozen copy of a causal LM built from its config and weights.

    Not ``copy.deepcopy``: TRL's ``DPOTrainer`` adds its fused LM head to the LM instance it trains
    (``trl.trainer.utils.add_fused_lm_head``, documented), and a deep copy of that instance would keep calling the
    original's forward for plain (non-fused) calls.
    """
    reference = type(lm)(lm.config)
    reference.load_state_dict(lm.state_dict())
    reference.to(device=lm.device, dtype=lm.dtype)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def _disable_dropout(model: nn.Module) -> None:
    """``DPOConfig.disable_dropout`` (default True), as TRL applies it: every ``nn.Dropout`` gets ``p = 0`` so the
    policy's log-probabilities are comparable with the (eval-mode) reference's."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def _as_dataset(data: Any, name: str) -> Dataset | IterableDataset | None:
    if data is None or isinstance(data, (Dataset, IterableDataset)):
        return data
    if isinstance(data, Sequence) and not isinstance(data, str):
        return Dataset.from_list(list(data))
    raise TypeError(f"`{name}` must be a datasets.Dataset or a list of dicts, got {type(data).__name__}")


def _column_names(dataset: Dataset | IterableDataset) -> list[str]:
    names = dataset.column_names
    if names is None:  # IterableDataset with unknown features
        names = list(next(iter(dataset)).keys())
    return list(names)


def _has_moe(model: nn.Module) -> bool:
    from genrec.models.layers import SparseMoeBlock

    return any(isinstance(module, SparseMoeBlock) for module in model.modules())


def _write_folder(target: str | Path, output_dir: str, write, single_process: bool) -> None:
    """Run ``write(folder)``: atomically (built aside, swapped in) for a folder other than ``output_dir`` in a
    single-process run; in place for ``output_dir`` itself, which also holds the checkpoints."""
    target = Path(target)
    if not single_process or target.resolve() == Path(output_dir).resolve():
        target.mkdir(parents=True, exist_ok=True)
        write(target)
        return
    with atomic_directory(target) as folder:
        write(folder)


# ----------------------------------------------------------------------------------------------- row features
class _PreferenceRowEncoder:
    """One preference row (item ids) -> token features of a P5/OneRec or RecGPT model (``Dataset.map`` function).

    Output per row: ``context_ids`` (T5: encoder tokens of the history; RecGPT: the history's catalog rows + 1),
    ``chosen_ids`` / ``rejected_ids`` (T5: concatenated code tokens of the session; RecGPT: the item's C codes;
    both empty = no pair), ``target_ids`` (T5: code tokens of ``target_items``; RecGPT: ``[row + 1]``; empty = no
    next-token term).
    """

    def __init__(self, model: nn.Module, kind: str, with_targets: bool):
        self.kind, self.with_targets = kind, with_targets
        if kind == "seq2seq":
            model._require_bound()
            self.item_index = model.item_index
            self.item_tokens = [model.item_tokens(row) for row in range(model.item_token_table.shape[0])]
            self.history_encoder = model.example_encoder()
            self.max_history = None
        else:
            if model.catalog_codes is None:
                raise ValueError("this RecGPT model has no catalog; call set_catalog() or load a checkpoint saved "
                                 "with one")
            self.item_index = dict(model.item_index)
            self.item_tokens = model.catalog_codes[1:].tolist()  # (num_items, C) codes in [0, codebook_size)
            self.history_encoder = None
            self.max_history = model.config.max_position_embeddings

    def _rows(self, items: Any, field: str, index: int) -> list[int]:
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise ValueError(f"row {index}: `{field}` ({items!r}) must be a list of item ids")  # noqa: TRY004 (data)
        rows = []
        for item in items:
            row = self.item_index.get(item) if isinstance(item, str) else None
            if row is None:
                raise ValueError(f"row {index}: `{field}` holds item id {item!r}, which is not in the model's catalog "
                                 f"of {len(self.item_index)} items")
            rows.append(row)
        return rows

    def _session(self, rows: list[int], field: str, index: int, items: Any) -> list[int]:
        if self.kind == "parallel-codes":
            if len(rows) != 1:
                raise ValueError(f"row {index}: `{field}` has {len(rows)} items ({list(items)!r}); RecGPT predicts one "
                                 "next item, so its sessions must hold exactly 1 item")
            return list(self.item_tokens[rows[0]])
        return [token for row in rows for token in self.item_tokens[row]]

    def __call__(self, example: dict[str, Any], index: int) -> dict[str, list[int]]:
        history = example["history"]
        if isinstance(history, str) or not history:
            raise ValueError(f"row {index}: `history` ({history!r}) must be a non-empty list of item ids")
        history_rows = self._rows(history, "history", index)
        if self.kind == "seq2seq":
            context = list(self.history_encoder.encode(history_rows))
        else:
            context = [row + 1 for row in history_rows[-self.max_history:]]
        chosen_items, rejected_items = example["chosen_items"], example["rejected_items"]
        chosen = self._rows(chosen_items, "chosen_items", index)
        rejected = self._rows(rejected_items, "rejected_items", index)
        if bool(chosen) != bool(rejected):
            raise ValueError(f"row {index}: `chosen_items` ({list(chosen_items)!r}) and `rejected_items` "
                             f"({list(rejected_items)!r}) must both be non-empty (a pair) or both empty (no pair)")
        features = {
            "context_ids": context,
            "chosen_ids": self._session(chosen, "chosen_items", index, chosen_items) if chosen else [],
            "rejected_ids": self._session(rejected, "rejected_items", index, rejected_items) if rejected else [],
            "target_ids": [],
        }
        if self.with_targets:
            target_items = example[TARGET_COLUMN]
            target = self._rows(target_items if target_items is not None else [], TARGET_COLUMN, index)
            if target and self.kind == "parallel-codes":
                if len(target) != 1:
                    raise ValueError(f"row {index}: `{TARGET_COLUMN}` has {len(target)} items; RecGPT's next-token "
                                     "term takes exactly 1 target item (or none)")
                features["target_ids"] = [target[0] + 1]
            elif target:
                features["target_ids"] = [token for row in target for token in self.item_tokens[row]]
        return features


# -------------------------------------------------------------------------------------------------- collator
def _pad(sequences: list[list[int]], value: int, *, left: bool = False, min_width: int = 1) -> torch.Tensor:
    width = max([len(s) for s in sequences] + [min_width])
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            values = torch.tensor(sequence, dtype=torch.long)
            if left:
                out[row, width - len(sequence):] = values
            else:
                out[row, : len(sequence)] = values
    return out


@dataclass
class GenRecPreferenceCollator:
    """Batches rows of :class:`_PreferenceRowEncoder` features for :class:`GenRecDPOTrainer`.

    Pair part (TRL's layout: the first P rows are the chosen sessions, the next P the rejected ones):
    ``input_ids`` / ``attention_mask`` / ``completion_mask`` ``(2P, 1 + L)`` = ``[start] + session tokens``
    right-padded (``completion_mask`` is 0 on the start token and the padding), ``context_input_ids`` /
    ``context_attention_mask`` ``(P, S)`` the histories (T5: right-padded encoder tokens; RecGPT: left-padded rows
    + 1), ``ref_chosen_logps`` / ``ref_rejected_logps`` ``(P,)`` when precomputed. Next-token part:
    ``target_context_input_ids`` / ``target_context_attention_mask`` ``(T, S')`` and ``target_labels`` (T5: ``(T,
    L')`` code tokens, -100 padded; RecGPT: ``(T, n)`` zeros but the last column = target row + 1) over the T rows
    with a non-empty ``target_ids``. ``row_has_pair`` ``(B,)`` bool marks the rows with a pair.

    Args:
        kind: the model registry's kind: ``"seq2seq"`` (P5/OneRec) or ``"parallel-codes"`` (RecGPT).
        pad_token_id: encoder/decoder padding (T5); RecGPT pads with 0.
        decoder_start_token_id: first token of every scored sequence (T5: the decoder start; RecGPT: 0, unused).

    Example:
        >>> collator = GenRecPreferenceCollator("seq2seq", pad_token_id=0, decoder_start_token_id=0)
        >>> batch = collator([{"context_ids": [5, 6, 1], "chosen_ids": [7, 8], "rejected_ids": [9, 10],
        ...                    "target_ids": []}])
        >>> batch["input_ids"].tolist(), batch["completion_mask"].tolist()
        ([[0, 7, 8], [0, 9, 10]], [[0, 1, 1], [0, 1, 1]])
    """

    kind: str
    pad_token_id: int = 0
    decoder_start_token_id: int = 0

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"`kind` ({self.kind!r}) must be one of {list(MODEL_KINDS)}")

    def _context(self, contexts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "parallel-codes":
            ids = _pad(contexts, 0, left=True)
            return ids, (ids != 0).long()
        ids = _pad(contexts, self.pad_token_id)
        mask = _pad([[1] * len(c) for c in contexts], 0)
        return ids, mask

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        for key in FEATURE_COLUMNS:
            if examples and key not in examples[0]:
                raise ValueError(f"collator input lacks `{key}`; rows must come from GenRecDPOTrainer's encoded dataset")
        has_pair = [len(e["chosen_ids"]) > 0 for e in examples]
        pairs = [e for e, keep in zip(examples, has_pair) if keep]
        start = self.decoder_start_token_id if self.kind == "seq2seq" else 0
        sequences = [[start, *e["chosen_ids"]] for e in pairs] + [[start, *e["rejected_ids"]] for e in pairs]
        pad = self.pad_token_id if self.kind == "seq2seq" else 0
        attention = _pad([[1] * len(s) for s in sequences], 0)
        completion = attention.clone()
        completion[:, 0] = 0
        batch = {"row_has_pair": torch.tensor(has_pair, dtype=torch.bool), "input_ids": _pad(sequences, pad),
                 "attention_mask": attention, "completion_mask": completion}
        batch["context_input_ids"], batch["context_attention_mask"] = self._context([e["context_ids"] for e in pairs])
        for key in REF_COLUMNS:
            if pairs and key in pairs[0]:
                batch[key] = torch.tensor([float(e[key]) for e in pairs])
        targets = [e for e in examples if e["target_ids"]]
        batch["target_context_input_ids"], batch["target_context_attention_mask"] = self._context(
            [e["context_ids"] for e in targets])
        if self.kind == "seq2seq":
            batch["target_labels"] = _pad([e["target_ids"] for e in targets], -100)
        else:
            labels = torch.zeros_like(batch["target_context_input_ids"])
            if targets:
                labels[:, -1] = torch.tensor([e["target_ids"][0] for e in targets])
            batch["target_labels"] = labels
        return batch


# ------------------------------------------------------------------------------------- P5 / OneRec / RecGPT
class _AtomicSaveMixin:
    """``save_model`` writing the model's own folder (what its class' ``from_pretrained`` restores) + the DPO config
    as JSON, atomically for a folder other than ``args.output_dir`` (no pickled training arguments)."""

    def write_model_folder(self, folder: Path) -> None:  # pragma: no cover - each trainer defines it
        raise NotImplementedError

    def save_model(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write a complete genrec model folder (``Trainer.save_model``'s hook; checkpoints go through it too)."""
        target = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return

        def write(folder: Path) -> None:
            self.write_model_folder(folder)
            atomic_write_text(folder / DPO_CONFIG_FILE, self.args.to_json_string())

        _write_folder(target, self.args.output_dir, write, self.accelerator.num_processes == 1)


class GenRecDPOTrainer(_AtomicSaveMixin, Trainer):
    """A ``transformers.Trainer`` that trains genrec's P5, OneRec and RecGPT on preference pairs (see the module
    docstring): the preference loss of every ``DPOConfig.loss_type`` (:mod:`genrec.alignment.losses`) + the
    ``sft_weight`` x next-token term + the MoE router losses, against a frozen reference.

    Configured by a ``trl.DPOConfig`` (a ``TrainingArguments`` subclass; the same presets as TRL's trainer): the loss
    fields (``loss_type``, ``loss_weights``, ``beta``, ``label_smoothing``, ``f_divergence_type``,
    ``f_alpha_divergence_coef``, ``discopop_tau``, ``ld_alpha``, ``use_weighting``), ``precompute_ref_log_probs`` /
    ``precompute_ref_batch_size``, ``sync_ref_model`` / ``ref_model_sync_steps`` / ``ref_model_mixup_alpha``
    (TRL's public ``SyncRefModelCallback``), ``disable_dropout`` (default True: the policy's dropout layers get
    ``p = 0``, as TRL does), and every ``TrainingArguments`` field. ``remove_unused_columns`` and
    gradient checkpointing are turned off (the batches are the collator's; the models are small and their MoE layers
    keep per-forward routing state that recomputation cannot replay).

    Args:
        model: a bound P5 / OneRec (:class:`~genrec.models.generative.GenerativeT5Model`) or RecGPT model.
        ref_model: the reference policy (default: a frozen deep copy of ``model``; with
            ``args.precompute_ref_log_probs`` its log-probabilities are computed once, before training, and no
            reference is kept).
        args: ``trl.DPOConfig``; ``router_aux_loss_coef`` must stay None (genrec models weight their router losses
            with their own config's ``router_aux_loss_coef`` / ``router_z_loss_coef``).
        train_dataset / eval_dataset: ``datasets.Dataset`` (or list of dicts) with ``history``, ``chosen_items``,
            ``rejected_items`` (lists of item ids) and, when ``sft_weight > 0``, ``target_items``.
        sft_weight: weight of the next-token loss on ``target_items`` (0 = DPO only).
        callbacks / optimizers: as ``transformers.Trainer``.

    Raises:
        ValueError: missing columns, unknown item ids, unpaired rows, RecGPT sessions longer than one item, a bad
            ``sft_weight`` or loss field, ``args.router_aux_loss_coef`` set, or no usable row.
        TypeError: ``args`` is not a ``DPOConfig``, or the model is not P5 / OneRec / RecGPT.
    """

    def __init__(self, model: nn.Module, ref_model: nn.Module | None = None, args: DPOConfig | None = None,
                 train_dataset: Dataset | IterableDataset | list | None = None,
                 eval_dataset: Dataset | IterableDataset | dict | list | None = None, *, sft_weight: float = 0.0,
                 callbacks: list | None = None, optimizers: tuple = (None, None)):
        if not isinstance(args, DPOConfig):
            raise TypeError(f"`args` must be a trl.DPOConfig, got {type(args).__name__}")
        kind = model_kind(model)
        if ref_model is not None and model_kind(ref_model) != kind:
            raise ValueError(f"`ref_model` ({type(ref_model).__name__}) must be the same kind of model as `model` "
                             f"({type(model).__name__})")
        if args.router_aux_loss_coef is not None:
            raise ValueError(
                f"`router_aux_loss_coef` ({args.router_aux_loss_coef}) must be None for genrec models: their MoE router "
                "losses are already weighted by the model config's `router_aux_loss_coef` / `router_z_loss_coef` and "
                "always stay in the objective; change those instead"
            )
        if args.sync_ref_model and args.precompute_ref_log_probs:
            raise ValueError("`sync_ref_model` and `precompute_ref_log_probs` exclude each other: precomputed "
                             "reference log-probabilities assume a fixed reference")
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        self.loss_types, self.loss_weights = check_preference_args(args)
        self.sft_weight = _check_weight("sft_weight", sft_weight)
        if getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing:  # TRL's default is on
            logger.info("activation (gradient) checkpointing is turned off for genrec recommenders: they are small, "
                        "and their MoE layers keep per-forward routing state that recomputation cannot replay")
            args.gradient_checkpointing = False
            if hasattr(args, "activation_checkpointing"):  # transformers >= 5.2x: the new name, mirrored by the old
                args.activation_checkpointing = False
        args.remove_unused_columns = False  # the dataset holds the collator's feature columns only
        self.kind = kind
        self.row_encoder = _PreferenceRowEncoder(model, kind, with_targets=self.sft_weight > 0)
        self.preference_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list),
                                                                       "eval": defaultdict(list)}
        train_dataset = self.encode_preferences(_as_dataset(train_dataset, "train_dataset"), "train")
        eval_dataset = self.encode_eval_datasets(eval_dataset)
        if args.disable_dropout:
            _disable_dropout(model)
        if ref_model is None:
            ref_model = _frozen_copy(model)
        elif args.disable_dropout:
            _disable_dropout(ref_model)
        collator = GenRecPreferenceCollator(
            kind,
            pad_token_id=model.config.pad_token_id if kind == "seq2seq" else 0,
            decoder_start_token_id=(model.config.decoder_start_token_id or 0) if kind == "seq2seq" else 0,
        )
        super().__init__(model=model, args=args, data_collator=collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, callbacks=callbacks, optimizers=optimizers)
        self.ref_model = ref_model.to(self.args.device)
        self.aux_loss_enabled = _has_moe(model)
        if args.precompute_ref_log_probs:
            self.train_dataset = self.precompute_reference_log_probs(self.train_dataset, "train")
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {name: self.precompute_reference_log_probs(data, name)
                                     for name, data in self.eval_dataset.items()}
            elif self.eval_dataset is not None:
                self.eval_dataset = self.precompute_reference_log_probs(self.eval_dataset, "eval")
            self.ref_model = None  # not kept in memory
        if args.sync_ref_model:
            from trl import SyncRefModelCallback

            self.add_callback(SyncRefModelCallback(ref_model=self.ref_model, accelerator=self.accelerator))
        from genrec.models.generative import GenerativeT5Model
        from genrec.training.callbacks import MoeLoggingCallback

        if isinstance(model, GenerativeT5Model) and self.aux_loss_enabled:
            self.callback_handler.callbacks.insert(0, MoeLoggingCallback(model))

    # ----- data ---------------------------------------------------------------------------------------------
    def encode_preferences(self, dataset: Dataset | IterableDataset, name: str) -> Dataset | IterableDataset:
        """Structured preference rows -> the collator's token features (encoded datasets pass through).

        Raises:
            ValueError: missing columns, bad rows (see :class:`_PreferenceRowEncoder`), or no usable row.
        """
        columns = _column_names(dataset)
        if all(column in columns for column in FEATURE_COLUMNS):
            return dataset
        required = [*PREFERENCE_COLUMNS, *([TARGET_COLUMN] if self.sft_weight > 0 else [])]
        missing = [column for column in required if column not in columns]
        if missing:
            raise ValueError(
                f"the {name} dataset lacks column(s) {missing}; genrec DPO reads {list(PREFERENCE_COLUMNS)} "
                f"(+ '{TARGET_COLUMN}' when sft_weight > 0); found {columns}"
            )
        extra = {"desc": f"Encoding {name} preferences"} if isinstance(dataset, Dataset) else {}
        dataset = dataset.map(self.row_encoder, with_indices=True, remove_columns=columns, **extra)
        before = len(dataset) if isinstance(dataset, Dataset) else None
        dataset = dataset.filter(lambda row: len(row["chosen_ids"]) > 0 or len(row["target_ids"]) > 0)
        if before is not None:
            dropped = before - len(dataset)
            if dropped:
                logger.warning(f"{name}: {dropped} of {before} rows carry neither a preference pair nor a "
                               f"next-token target (sft_weight={self.sft_weight}) and are skipped")
            if len(dataset) == 0:
                raise ValueError(
                    f"the {name} dataset has no usable row: every `chosen_items` is empty and "
                    + ("every `target_items` is empty" if self.sft_weight > 0 else "sft_weight is 0")
                )
        return dataset

    def encode_eval_datasets(self, eval_dataset):
        if isinstance(eval_dataset, dict):
            return {key: self.encode_preferences(_as_dataset(value, f"eval_dataset[{key!r}]"), key)
                    for key, value in eval_dataset.items()}
        if eval_dataset is None:
            return None
        return self.encode_preferences(_as_dataset(eval_dataset, "eval_dataset"), "eval")

    @torch.no_grad()
    def precompute_reference_log_probs(self, dataset: Dataset, name: str) -> Dataset:
        """``dataset`` + columns ``ref_chosen_logps`` / ``ref_rejected_logps`` from the reference (0 on rows without
        a pair); every process computes them (the models are small), so no cache file is shared.

        Raises:
            ValueError: an ``IterableDataset``, or no reference (it is dropped once precomputed).
        """
        if not isinstance(dataset, Dataset):
            raise ValueError(f"`precompute_ref_log_probs=True` needs a map-style datasets.Dataset ({name} is "
                             f"{type(dataset).__name__})")
        if all(column in dataset.column_names for column in REF_COLUMNS):
            return dataset
        if self.ref_model is None:
            raise ValueError(f"cannot precompute reference log-probs for the {name} dataset: with "
                             "`precompute_ref_log_probs=True` the reference is dropped after the datasets given at "
                             "construction; pass this one as `eval_dataset` there, or pass an explicit `ref_model`")
        batch_size = self.args.precompute_ref_batch_size or self.args.per_device_train_batch_size
        chosen, rejected = [], []
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {key: value.to(self.args.device) for key, value in self.data_collator(rows).items()}
            has_pair = batch["row_has_pair"]
            row_chosen = torch.zeros(has_pair.shape[0], device=has_pair.device)
            row_rejected = torch.zeros_like(row_chosen)
            if bool(has_pair.any()):
                row_chosen[has_pair], row_rejected[has_pair] = self.reference_log_probs(batch)
            chosen.extend(row_chosen.tolist())
            rejected.extend(row_rejected.tolist())
        return dataset.add_column(REF_COLUMNS[0], chosen).add_column(REF_COLUMNS[1], rejected)

    # ----- loss ---------------------------------------------------------------------------------------------
    def sequence_log_probs(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """``(chosen, rejected, token_scores)``: ``(P,)`` sequence log-probs under ``model`` and its per-token
        :class:`~genrec.alignment.adapters.TokenLogProbs` (``(2P, L)``)."""
        scores = preference_token_log_probs(model, self.kind, batch)
        chosen, rejected = sequence_log_probs(scores.log_probs, scores.mask, self.args.ld_alpha).chunk(2)
        return chosen, rejected, scores

    @torch.no_grad()
    def reference_log_probs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P,)`` reference log-probs of the chosen and rejected sessions (precomputed columns when present)."""
        if REF_COLUMNS[0] in batch:
            return batch[REF_COLUMNS[0]].float(), batch[REF_COLUMNS[1]].float()
        self.ref_model.eval()
        chosen, rejected, _ = self.sequence_log_probs(self.ref_model, batch)
        return chosen, rejected

    def pair_loss(self, model: nn.Module, batch: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
        """The weighted preference losses over the batch's pairs (+ the policy forward's MoE aux loss)."""
        chosen, rejected, scores = self.sequence_log_probs(model, batch)
        ref_chosen, ref_rejected = self.reference_log_probs(batch)
        lengths = scores.mask.sum(-1)  # (2P,)
        chosen_tokens, _ = scores.log_probs.chunk(2)
        chosen_mask, _ = scores.mask.chunk(2)
        pair_weights = None
        if self.args.use_weighting:  # WPO: the policy's length-normalised sequence probabilities, no gradient
            with torch.no_grad():
                aligned = ((scores.log_probs - scores.log_sum_sq_probs) * scores.mask).sum(-1) / lengths.clamp(min=1)
                weights = aligned.exp()
                pair_weights = weights.chunk(2)[0] * weights.chunk(2)[1]
        loss = preference_loss(
            chosen, rejected, ref_chosen, ref_rejected, loss_types=self.loss_types, loss_weights=self.loss_weights,
            beta=self.args.beta, chosen_lengths=lengths.chunk(2)[0], rejected_lengths=lengths.chunk(2)[1],
            chosen_token_log_probs=chosen_tokens, chosen_mask=chosen_mask, label_smoothing=self.args.label_smoothing,
            f_divergence_type=self.args.f_divergence_type, f_alpha_divergence_coef=self.args.f_alpha_divergence_coef,
            discopop_tau=self.args.discopop_tau, pair_weights=pair_weights)
        metrics = self.preference_metrics[mode]
        gather = self.accelerator.gather_for_metrics
        if self.aux_loss_enabled:
            loss = loss + scores.aux_loss
            metrics["aux_loss"].append(gather(scores.aux_loss.detach()).mean().item())
        chosen_rewards = self.args.beta * (chosen - ref_chosen).detach()
        rejected_rewards = self.args.beta * (rejected - ref_rejected).detach()
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["logps/chosen"].append(gather(chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected.detach()).mean().item())
        for side, logits, mask in zip(("chosen", "rejected"), scores.mean_logits.chunk(2), scores.mask.chunk(2)):
            totals = gather(torch.stack([logits[mask].sum(), mask.sum().to(logits.dtype)])[None]).sum(0)
            metrics[f"logits/{side}"].append((totals[0] / totals[1].clamp(min=1)).item())
        return loss

    def next_token_loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own next-token loss on the batch's ``target_items`` rows.

        Returns:
            ``(ntp, aux_loss)``: mean token cross-entropy of the target tokens (T5: the session's code tokens;
            RecGPT: the item's C codes) and the forward's MoE auxiliary loss (0 for dense models).
        """
        out = model(input_ids=inputs["target_context_input_ids"], attention_mask=inputs["target_context_attention_mask"],
                    labels=inputs["target_labels"])
        if self.kind == "seq2seq":
            return out.lm_loss, out.aux_loss
        return out.loss - out.aux_loss, out.aux_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The preference loss over the rows with a pair + ``sft_weight`` x next-token loss (+ MoE aux losses)."""
        if return_outputs:
            raise ValueError("GenRecDPOTrainer does not return logits (`compute_metrics` is not supported); "
                             "the DPO metrics are logged by the trainer")
        mode = "train" if self.model.training else "eval"
        loss = None
        if bool(inputs["row_has_pair"].any()):
            loss = self.pair_loss(model, inputs, mode)
        if self.sft_weight > 0 and inputs["target_labels"].shape[0] > 0:
            # Under DDP one step may run only ONE forward of the wrapped model (its reducer expects one backward
            # per forward): after the pair forward, the next-token forward runs on the unwrapped module. Its
            # gradients still reach the same parameters, and DDP's per-parameter hooks fire once in the backward.
            ntp_model = self.accelerator.unwrap_model(model) if loss is not None else model
            ntp, aux_loss = self.next_token_loss(ntp_model, inputs)
            metrics = self.preference_metrics[mode]
            metrics["ntp_loss"].append(self.accelerator.gather_for_metrics(ntp.detach()).mean().item())
            term = self.sft_weight * ntp
            if self.aux_loss_enabled:
                term = term + aux_loss
                metrics["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss.detach()).mean().item())
            loss = term if loss is None else loss + term
        if loss is None:  # only reachable with a custom collator: keep the step differentiable
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: the same loss (the batches carry no ``labels`` for the default prediction step)."""
        inputs = {key: value.to(self.args.device) if isinstance(value, torch.Tensor) else value
                  for key, value in inputs.items()}
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """``Trainer.evaluate``; a dataset passed here is encoded (and its reference log-probs precomputed) first."""
        if eval_dataset is not None and not isinstance(eval_dataset, str):
            eval_dataset = self.encode_eval_datasets(eval_dataset)
            if self.args.precompute_ref_log_probs:
                if isinstance(eval_dataset, dict):
                    eval_dataset = {name: self.precompute_reference_log_probs(data, name)
                                    for name, data in eval_dataset.items()}
                else:
                    eval_dataset = self.precompute_reference_log_probs(eval_dataset, "eval")
        return super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys,
                                metric_key_prefix=metric_key_prefix)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """``Trainer.log`` plus the means of the preference metrics gathered since the last log."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        buffer = self.preference_metrics[mode]
        logs.update({f"{prefix}{key}": sum(values) / len(values) for key, values in buffer.items() if values})
        buffer.clear()
        super().log(logs, start_time)

    # ----- saving -------------------------------------------------------------------------------------------
    def write_model_folder(self, folder: Path) -> None:
        """The model's own ``save_pretrained`` (weights, config, tokenizer, item tokenizer, catalog)."""
        self.accelerator.unwrap_model(self.model).save_pretrained(folder)


# ------------------------------------------------------------------------------------------------------ BIGRec
def _is_peft(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a genrec dependency
        return False
    return isinstance(model, PeftModel)


class BIGRecDPOTrainer(_AtomicSaveMixin, DPOTrainer):
    """TRL's ``DPOTrainer`` on a BIGRec model's LM (public API only), keeping the BIGRec wrapper in sync.

    After construction ``recommender.llm`` is the trained LM (a new peft model when ``peft_config`` was given).
    TRL adds its fused LM head to that LM instance (documented: without ``fused_lm_head=True`` the forward is the
    original one, so generation is unchanged); copy a trained LM by saving and reloading it, not ``copy.deepcopy``.

    Args:
        recommender: :class:`~genrec.models.bigrec.BIGRecForCausalLM`.
        args: ``trl.DPOConfig``.
        train_dataset / eval_dataset: rows with string ``prompt`` / ``chosen`` / ``rejected`` (genrec's
            ``build_preference_dataset`` renders them); rows whose ``chosen_items`` (or ``chosen``) is empty are
            skipped.
        ref_model: an explicit reference LM (default: see :func:`build_dpo_trainer`).
        peft_config: a new LoRA adapter to train (the model must not have one yet).
    """

    def __init__(self, recommender: nn.Module, *, args: DPOConfig, train_dataset, ref_model: nn.Module | None = None,
                 eval_dataset=None, peft_config: Any = None, callbacks: list | None = None,
                 optimizers: tuple = (None, None)):
        if not isinstance(args, DPOConfig):
            raise TypeError(f"`args` must be a trl.DPOConfig, got {type(args).__name__}")
        lm = recommender.llm
        if peft_config is not None and _is_peft(lm):
            raise ValueError("`peft_config` was given but the BIGRec model already has a LoRA adapter; pass "
                             "peft_config=None to keep training it, or call merge_and_unload() first")
        if ref_model is None and peft_config is None and not _is_peft(lm):
            ref_model = _frozen_lm_copy(lm)  # full fine-tuning: TRL would otherwise load the base from its Hub id
        self.recommender = recommender
        train_dataset = self.usable_rows(_as_dataset(train_dataset, "train_dataset"), "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self.usable_rows(_as_dataset(v, k), k) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self.usable_rows(_as_dataset(eval_dataset, "eval_dataset"), "eval_dataset")
        super().__init__(model=lm, ref_model=ref_model, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=recommender.tokenizer, callbacks=callbacks,
                         optimizers=optimizers, peft_config=peft_config)
        if peft_config is not None:
            recommender.llm = self.accelerator.unwrap_model(self.model)
            recommender.config.use_lora = True
            recommender.llm.peft_config["default"].base_model_name_or_path = recommender.config.base_model_name_or_path
            for field in ("r", "lora_alpha", "lora_dropout"):
                if hasattr(peft_config, field):
                    setattr(recommender.config, "lora_r" if field == "r" else field, getattr(peft_config, field))

    @staticmethod
    def usable_rows(dataset, name: str):
        """The rows with a preference pair (BIGRec DPO has no next-token term).

        Raises:
            ValueError: the string columns are missing, or no row has a pair.
        """
        if dataset is None:
            return None
        columns = _column_names(dataset)
        missing = [c for c in ("prompt", "chosen", "rejected") if c not in columns]
        if missing:
            raise ValueError(f"`{name}` lacks column(s) {missing}; BIGRec DPO reads the string columns prompt / chosen "
                             f"/ rejected; found {columns}")
        has_items = "chosen_items" in columns

        def keep(row: dict[str, Any]) -> bool:
            return bool(row["chosen"]) and (not has_items or len(row["chosen_items"]) > 0)
        before = len(dataset) if isinstance(dataset, Dataset) else None
        dataset = dataset.filter(keep)
        if before is not None and len(dataset) < before:
            logger.warning(f"{name}: {before - len(dataset)} of {before} rows have no preference pair and are skipped "
                           "(BIGRec DPO has no next-token term)")
        if before is not None and len(dataset) == 0:
            raise ValueError(f"`{name}` has no row with a preference pair")
        return dataset

    def train(self, *args, **kwargs):
        """TRL's training loop; the BIGRec wrapper's cached title embeddings are dropped afterwards."""
        try:
            return super().train(*args, **kwargs)
        finally:
            self.recommender.reset_item_embeddings()

    def write_model_folder(self, folder: Path) -> None:
        """A complete BIGRec folder (config, ``adapter/`` or ``model/``, ``tokenizer/``, catalog); TRL's frozen
        reference adapter ("ref", saved by peft beside the trained one) is left out."""
        self.recommender.save_pretrained(folder)
        shutil.rmtree(Path(folder) / "adapter" / "ref", ignore_errors=True)


# ------------------------------------------------------------------------------------------------ entry point
def build_dpo_trainer(model: nn.Module, train_dataset, args: DPOConfig, *, ref_model: nn.Module | None = None,
                      eval_dataset=None, peft_config: Any = None, sft_weight: float = 0.0,
                      callbacks: list | None = None) -> Trainer:
    """A DPO trainer for any genrec generative recommender.

    Args:
        model: BIGRec, P5, OneRec or RecGPT.
        train_dataset: preference rows (``genrec.alignment.preference.build_preference_dataset``): ``history``,
            ``chosen_items``, ``rejected_items`` (+ ``target_items``) for P5/OneRec/RecGPT; ``prompt``, ``chosen``,
            ``rejected`` strings for BIGRec.
        args: ``trl.DPOConfig`` (``beta``, ``loss_type``, ``loss_weights`` = lambda, ...). On CPU pass
            ``use_cpu=True, bf16=False``.
        ref_model: reference policy; default: LoRA -> adapters disabled / TRL's frozen adapter copy, otherwise a
            frozen copy of the model (never a Hub download).
        eval_dataset: same format as ``train_dataset``.
        peft_config: BIGRec only: a ``peft.LoraConfig`` for a new adapter.
        sft_weight: P5/OneRec/RecGPT only: weight of the next-token loss on ``target_items``.
        callbacks: extra ``TrainerCallback`` s.

    Returns:
        :class:`BIGRecDPOTrainer` (a ``trl.DPOTrainer``) or :class:`GenRecDPOTrainer` (a ``transformers.Trainer``).

    Raises:
        ValueError: ``peft_config`` for a non-BIGRec model, ``sft_weight`` for BIGRec, or bad data (see the trainers).
        TypeError: an unsupported model.
    """
    from genrec.models.bigrec import BIGRecForCausalLM

    if isinstance(model, BIGRecForCausalLM):
        if _check_weight("sft_weight", sft_weight) > 0:
            raise ValueError(f"`sft_weight` ({sft_weight}) is not supported for BIGRec; use TRL's own SFT term: "
                             "DPOConfig(loss_type=['sigmoid', 'sft'], loss_weights=[lambda, w])")
        return BIGRecDPOTrainer(model, args=args, train_dataset=train_dataset, ref_model=ref_model,
                                eval_dataset=eval_dataset, peft_config=peft_config, callbacks=callbacks)
    if peft_config is not None:
        raise ValueError(f"`peft_config` is only supported for BIGRec (a pretrained LLM); {type(model).__name__} is "
                         "trained in full")
    return GenRecDPOTrainer(model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                            eval_dataset=eval_dataset, sft_weight=sft_weight, callbacks=callbacks)
