"""Direct preference optimisation of genrec recommenders through TRL (``trl.DPOConfig`` / ``trl.DPOTrainer``).

One entry point, :func:`build_dpo_trainer`, and one config, TRL's ``DPOConfig`` (``beta``, ``loss_type`` list +
``loss_weights``, ``label_smoothing``, ``precompute_ref_log_probs``, ``sync_ref_model``, logging, ...):

* **BIGRec** (a causal LM writing item titles) -> :class:`BIGRecDPOTrainer`, TRL's own ``DPOTrainer`` on
  ``model.llm`` with ``processing_class=model.tokenizer`` and the string columns ``prompt`` / ``chosen`` /
  ``rejected``. LoRA: a new adapter from ``peft_config`` (reference = adapters disabled) or the model's existing
  adapter (reference = TRL's frozen copy of it, adapter "ref"); full fine-tuning: reference = a frozen deep copy.
  Never a Hub download.
* **P5 / OneRec / RecGPT** -> :class:`GenRecDPOTrainer`, a ``trl.DPOTrainer`` subclass that reads the structured
  columns ``history`` / ``chosen_items`` / ``rejected_items`` (+ ``target_items``), builds token features with
  :class:`GenRecPreferenceCollator`, and feeds TRL's own loss code (every ``loss_type``, its metrics and ``log``,
  ``precompute_ref_log_probs``, ``sync_ref_model``) through :mod:`genrec.alignment.adapters`, which returns the
  per-token log-probability fields TRL expects. A session of ``m`` items is the concatenation of their code tokens
  (``log p(session)`` = sum over its tokens) for P5/OneRec; RecGPT scores sessions of exactly one item.

Objective of :class:`GenRecDPOTrainer` per batch (OneRec's iterative preference alignment, "NTP + lambda DPO")::

    loss = sum_k loss_weights[k] * DPO_k(pairs)          # TRL's losses over the rows that carry a pair
         + aux_loss(DPO forward)                          # MoE router losses of the policy forward
         + sft_weight * NTP(target_items) + aux_loss(NTP forward)   # when sft_weight > 0

``NTP`` is the model's own next-token loss (mean token cross-entropy) of ``target_items`` given ``history``; rows
with an empty ``chosen_items`` carry no pair (NTP only). Logged: TRL's ``rewards/*``, ``logps/*``, ``logits/*``,
``entropy``, ``mean_token_accuracy``, plus ``aux_loss`` (MoE models), ``ntp_loss`` and OneRec's ``moe/*`` load.

Example:
    >>> from trl import DPOConfig
    >>> args = DPOConfig(output_dir="runs/dpo", beta=0.1, per_device_train_batch_size=32, use_cpu=True, bf16=False,
    ...                  report_to="none")
    >>> trainer = build_dpo_trainer(onerec, preference_dataset, args, sft_weight=1.0)   # doctest: +SKIP
    >>> trainer.train(); trainer.save_model("runs/dpo/final")                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from genrec.alignment.adapters import MODEL_KINDS, genrec_fused_forward, model_kind
from torch import nn
from transformers import GenerationConfig, PreTrainedTokenizerFast
from transformers.utils import logging
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import add_fused_lm_head

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
_PAIR_KEYS = ("input_ids", "attention_mask", "completion_mask", "context_input_ids", "context_attention_mask",
              *REF_COLUMNS)
_MISSING = object()


# ----------------------------------------------------------------------------------------------------- helpers
def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number >= 0")
    return float(value)


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients: the DPO reference (never downloaded)."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


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


def _instance_forwards(modules: Sequence[nn.Module | None]) -> list[tuple[nn.Module, Any]]:
    """Each module's instance-level ``forward`` (or ``_MISSING``), to undo the fused LM head TRL patches on."""
    return [(m, m.__dict__.get("forward", _MISSING)) for m in modules if m is not None]


def _restore_forwards(saved: list[tuple[nn.Module, Any]]) -> None:
    for module, previous in reversed(saved):
        if previous is _MISSING:
            module.__dict__.pop("forward", None)
        else:
            module.forward = previous


def _is_trl_fused(forward: Any) -> bool:
    """Whether an instance ``forward`` is TRL's ``add_fused_lm_head`` patch (``functools.wraps`` renames it)."""
    code = getattr(getattr(forward, "__func__", None), "__code__", None)
    return code is not None and code.co_name == "_fused_forward"


def _placeholder_tokenizer() -> PreTrainedTokenizerFast:
    """RecGPT reads catalog rows, not text: TRL still wants a tokenizer with a pad token (never saved)."""
    from tokenizers import Tokenizer, models

    # pad only: the Trainer copies the tokenizer's special ids into the model config, and RecGPT's pad id is 0
    backend = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


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
            model._require_catalog()
            self.item_index = dict(model._item_index)
            self.item_tokens = model.catalog_codes[1:].tolist()  # (num_items, C) codes in [0, codebook_size)
            self.history_encoder = None
            self.max_history = model.config.max_position_embeddings

    def fingerprint_parts(self) -> tuple:
        """What the features depend on (for the ``datasets`` cache fingerprint)."""
        return (self.kind, self.with_targets, sorted(self.item_index.items()), self.item_tokens, self.max_history,
                type(self.history_encoder).__name__, getattr(self.history_encoder, "max_history_items", None))

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
                raise ValueError(f"collator input lacks `{key}`; rows must come from GenRecDPOTrainer's prepared dataset")
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
    """``save_model`` that writes a folder other than ``args.output_dir`` atomically (single process)."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Write a complete genrec model folder that the model class' ``from_pretrained`` restores.

        A folder other than ``args.output_dir`` is built aside and swapped in (single process); ``args.output_dir``
        itself, which also holds the checkpoints, is written in place.
        """
        target = output_dir if output_dir is not None else self.args.output_dir
        single = self.accelerator.num_processes == 1 and not self.is_deepspeed_enabled and not self.is_fsdp_enabled
        if not single or Path(target).resolve() == Path(self.args.output_dir).resolve():
            return super().save_model(target, _internal_call=_internal_call)
        with atomic_directory(target) as tmp:
            super().save_model(str(tmp), _internal_call=True)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)
        return None


class GenRecDPOTrainer(_AtomicSaveMixin, DPOTrainer):
    """``trl.DPOTrainer`` for genrec's P5, OneRec and RecGPT (see the module docstring).

    Reuses TRL's ``_compute_loss`` (every ``DPOConfig.loss_type``, ``loss_weights``, ``label_smoothing``,
    ``ld_alpha``, ``use_weighting``, f-divergences), metrics and ``log``, ``compute_ref_log_probs`` /
    ``_precompute_ref_logps`` and ``SyncRefModelCallback``; only the dataset preparation, the collator, the model
    forward (:mod:`genrec.alignment.adapters`), the next-token term and saving are genrec's.

    Args:
        model: a bound P5 / OneRec (:class:`~genrec.models.generative.GenerativeT5Model`) or RecGPT model.
        ref_model: the reference policy (default: a frozen deep copy of ``model``; none is kept when
            ``args.precompute_ref_log_probs`` is set, since the log-probs are computed before training).
        args: ``trl.DPOConfig``; ``router_aux_loss_coef`` must stay None (genrec models weight their router losses
            with their own config's ``router_aux_loss_coef`` / ``router_z_loss_coef``).
        train_dataset / eval_dataset: ``datasets.Dataset`` (or list of dicts) with ``history``, ``chosen_items``,
            ``rejected_items`` (lists of item ids) and, when ``sft_weight > 0``, ``target_items``.
        sft_weight: weight of the next-token loss on ``target_items`` (0 = DPO only).
        callbacks / optimizers: as ``transformers.Trainer``.

    Raises:
        ValueError: missing columns, unknown item ids, unpaired rows, RecGPT sessions longer than one item, a bad
            ``sft_weight``, ``args.router_aux_loss_coef`` set, or no usable row.
        TypeError: ``args`` is not a ``DPOConfig``, or the model is not P5 / OneRec / RecGPT.
    """

    _tag_names = ["trl", "dpo", "genrec"]  # noqa: RUF012 (TRL's class attribute)

    def __init__(self, model: nn.Module, ref_model: nn.Module | None = None, args: DPOConfig | None = None,
                 train_dataset: Dataset | IterableDataset | list | None = None,
                 eval_dataset: Dataset | IterableDataset | dict | list | None = None, *, sft_weight: float = 0.0,
                 callbacks: list | None = None, optimizers: tuple = (None, None),
                 processing_class: Any = None):
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
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        if getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing:  # TRL's default is on
            logger.warning("activation (gradient) checkpointing is turned off for genrec recommenders: they are small, "
                           "and their MoE layers keep per-forward routing state that recomputation cannot replay")
            args.gradient_checkpointing = False
            if hasattr(args, "activation_checkpointing"):  # transformers >= 5.2x: the new name, mirrored by the old
                args.activation_checkpointing = False
        self.sft_weight = _check_weight("sft_weight", sft_weight)
        self._kind = kind
        self._row_encoder = _PreferenceRowEncoder(model, kind, with_targets=self.sft_weight > 0)
        train_dataset = _as_dataset(train_dataset, "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: _as_dataset(v, f"eval_dataset[{k!r}]") for k, v in eval_dataset.items()}
        else:
            eval_dataset = _as_dataset(eval_dataset, "eval_dataset")
        if processing_class is None:
            processing_class = model.tokenizer if kind == "seq2seq" else _placeholder_tokenizer()
        if ref_model is None and (not args.precompute_ref_log_probs or getattr(args, "fsdp", None)):
            ref_model = _frozen_copy(model)
        collator = GenRecPreferenceCollator(
            kind,
            pad_token_id=model.config.pad_token_id if kind == "seq2seq" else 0,
            decoder_start_token_id=(model.config.decoder_start_token_id or 0) if kind == "seq2seq" else 0,
        )
        # TRL writes the tokenizer's pad id into the model config and generation config; RecGPT has no generation
        # config and no text vocabulary, so both are put back as they were afterwards.
        pad_token_id = model.config.pad_token_id
        forwards = _instance_forwards([model, ref_model])
        no_generation_config = getattr(model, "generation_config", None) is None
        if no_generation_config:
            model.generation_config = GenerationConfig()
        try:
            super().__init__(model=model, ref_model=ref_model, args=args, data_collator=collator,
                             train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=processing_class,
                             callbacks=callbacks, optimizers=optimizers)
        finally:
            model.config.pad_token_id = pad_token_id
            if no_generation_config:
                model.generation_config = None
            # TRL patched its causal-LM fused head onto the instances; genrec's fused forward is installed per call
            _restore_forwards(forwards)
        # MoE: the model returns its already-weighted router losses; TRL adds `coef * outputs.aux_loss` and logs it
        self.aux_loss_enabled = _has_moe(model)
        self.router_aux_loss_coef = 1.0
        from genrec.models.generative import GenerativeT5Model, MoeLoggingCallback

        if isinstance(model, GenerativeT5Model) and self.aux_loss_enabled:
            self.callback_handler.callbacks.insert(0, MoeLoggingCallback(model))

    # ----- data ---------------------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """Structured preference rows -> token features (idempotent: prepared datasets pass through)."""
        columns = _column_names(dataset)
        if all(column in columns for column in FEATURE_COLUMNS):
            return dataset
        required = [*PREFERENCE_COLUMNS, *([TARGET_COLUMN] if self.sft_weight > 0 else [])]
        missing = [column for column in required if column not in columns]
        if missing:
            raise ValueError(
                f"the {dataset_name} dataset lacks column(s) {missing}; genrec DPO reads {list(PREFERENCE_COLUMNS)} "
                f"(+ '{TARGET_COLUMN}' when sft_weight > 0); found {columns}"
            )
        map_kwargs: dict[str, Any] = {"with_indices": True}
        if isinstance(dataset, Dataset):
            from datasets.fingerprint import Hasher

            fingerprint = Hasher.hash((dataset._fingerprint, self._row_encoder.fingerprint_parts()))
            map_kwargs.update(new_fingerprint=fingerprint, desc=f"Encoding {dataset_name} preferences",
                              num_proc=args.dataset_num_proc)
        drop = [column for column in (*FEATURE_COLUMNS, *REF_COLUMNS) if column in columns]
        dataset = dataset.map(self._row_encoder, remove_columns=drop or None, **map_kwargs)
        before = len(dataset) if isinstance(dataset, Dataset) else None
        filter_kwargs = {"new_fingerprint": Hasher.hash((fingerprint, "usable"))} if isinstance(dataset, Dataset) else {}
        dataset = dataset.filter(lambda row: len(row["chosen_ids"]) > 0 or len(row["target_ids"]) > 0, **filter_kwargs)
        if before is not None:
            dropped = before - len(dataset)
            if dropped:
                logger.warning(f"{dataset_name}: {dropped} of {before} rows carry neither a preference pair nor a "
                               f"next-token target (sft_weight={self.sft_weight}) and are skipped")
            if len(dataset) == 0:
                raise ValueError(
                    f"the {dataset_name} dataset has no usable row: every `chosen_items` is empty and "
                    + ("every `target_items` is empty" if self.sft_weight > 0 else "sft_weight is 0")
                )
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [*FEATURE_COLUMNS, *REF_COLUMNS]

    # ----- loss ---------------------------------------------------------------------------------------------
    def _unwrapped(self, model: nn.Module | None) -> nn.Module | None:
        return None if model is None else self.accelerator.unwrap_model(model)

    @staticmethod
    def _pair_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: inputs[key] for key in _PAIR_KEYS if key in inputs}

    def compute_ref_log_probs(self, model, inputs):
        """TRL's reference log-probs of the pair rows, scattered back to ``(B,)`` (0 on rows without a pair)."""
        has_pair = inputs["row_has_pair"]
        chosen = torch.zeros(has_pair.shape[0], device=has_pair.device)
        rejected = torch.zeros_like(chosen)
        if bool(has_pair.any()):
            with genrec_fused_forward(self._unwrapped(model)):
                pair_chosen, pair_rejected = super().compute_ref_log_probs(model, self._pair_inputs(inputs))
            chosen[has_pair], rejected[has_pair] = pair_chosen.float(), pair_rejected.float()
        return chosen, rejected

    def _precompute_ref_logps(self, dataset, name, batch_size):
        with genrec_fused_forward(self._unwrapped(self.ref_model), self._unwrapped(self.model)):
            return super()._precompute_ref_logps(dataset, name, batch_size)

    def next_token_loss(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own next-token loss on the batch's ``target_items`` rows.

        Returns:
            ``(ntp, aux_loss)``: mean token cross-entropy of the target tokens (T5: the session's code tokens;
            RecGPT: the item's C codes) and the forward's MoE auxiliary loss (0 for dense models).
        """
        out = model(input_ids=inputs["target_context_input_ids"], attention_mask=inputs["target_context_attention_mask"],
                    labels=inputs["target_labels"])
        if self._kind == "seq2seq":
            return out.lm_loss, out.aux_loss
        return out.loss - out.aux_loss, out.aux_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's DPO loss over the rows with a pair + ``sft_weight`` x next-token loss (+ MoE aux losses)."""
        if return_outputs:
            raise ValueError("GenRecDPOTrainer does not return logits (`compute_metrics` is not supported); "
                             "the DPO metrics are logged by the trainer")
        mode = "train" if self.model.training else "eval"
        loss = None
        if bool(inputs["row_has_pair"].any()):
            with genrec_fused_forward(self._unwrapped(model), self._unwrapped(self.ref_model)):
                loss = super().compute_loss(model, self._pair_inputs(inputs))
        if self.sft_weight > 0 and inputs["target_labels"].shape[0] > 0:
            # Under DDP one step may run only ONE forward of the wrapped model (its reducer expects one backward
            # per forward): after the pair forward, the next-token forward runs on the unwrapped module. Its
            # gradients still reach the same parameters, and DDP's per-parameter hooks fire once in the backward.
            ntp_model = self._unwrapped(model) if loss is not None else model
            ntp, aux_loss = self.next_token_loss(ntp_model, inputs)
            self._metrics[mode]["ntp_loss"].append(self.accelerator.gather_for_metrics(ntp.detach()).mean().item())
            term = self.sft_weight * ntp
            if self.aux_loss_enabled:
                term = term + aux_loss
                self._metrics[mode]["aux_loss"].append(
                    self.accelerator.gather_for_metrics(aux_loss.detach()).mean().item())
            loss = term if loss is None else loss + term
        if loss is None:  # only reachable with a custom collator: keep the step differentiable
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        return loss

    # ----- saving -------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """The model's own ``save_pretrained`` (weights, config, tokenizer, item tokenizer, catalog) + the DPO
        config as JSON (no pickled training arguments)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict)
        atomic_write_text(Path(output_dir) / "dpo_config.json", self.args.to_json_string())


# ------------------------------------------------------------------------------------------------------ BIGRec
def _is_peft(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a genrec dependency
        return False
    return isinstance(model, PeftModel)


class BIGRecDPOTrainer(_AtomicSaveMixin, DPOTrainer):
    """TRL's ``DPOTrainer`` on a BIGRec model's LM, keeping the BIGRec wrapper in sync (see the module docstring).

    After construction ``recommender.llm`` is the trained LM (a new peft model when ``peft_config`` was given).
    TRL's fused LM head is installed only while a loss is computed: TRL's own patch stays on the instance and
    captures the original forward in a closure, so a ``copy.deepcopy`` of the model (e.g. the next reference in
    iterative alignment) would silently run the old weights.

    Args:
        recommender: :class:`~genrec.models.bigrec.BIGRecForCausalLM`.
        args: ``trl.DPOConfig``.
        train_dataset / eval_dataset: rows with string ``prompt`` / ``chosen`` / ``rejected`` (genrec's
            ``build_preference_dataset`` renders them); rows whose ``chosen_items`` (or ``chosen``) is empty are
            skipped.
        ref_model: an explicit reference LM (default: see :func:`build_dpo_trainer`).
        peft_config: a new LoRA adapter to train (the model must not have one yet).
    """

    _tag_names = ["trl", "dpo", "genrec"]  # noqa: RUF012 (TRL's class attribute)

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
            ref_model = _frozen_copy(lm)  # full fine-tuning: TRL would otherwise load the base from its Hub id
        self.recommender = recommender
        forwards = _instance_forwards([lm, lm.get_base_model() if _is_peft(lm) else None, ref_model])
        train_dataset = self._usable_rows(_as_dataset(train_dataset, "train_dataset"), "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._usable_rows(_as_dataset(v, k), k) for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._usable_rows(_as_dataset(eval_dataset, "eval_dataset"), "eval_dataset")
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
        self._fused_outputs = ("log_probs", "entropy", "mean_logits", "is_top1") + (
            ("log_sum_sq_probs",) if self.use_weighting else ())
        # TRL's patch stays on the instance and is unsafe to deepcopy: undo it, it is re-installed per loss call
        _restore_forwards(forwards)

    @staticmethod
    def _usable_rows(dataset, name: str):
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

    def _patch_targets(self) -> list[nn.Module]:
        policy = self.accelerator.unwrap_model(self.model)
        targets = [policy.get_base_model() if _is_peft(policy) else policy]
        if self.ref_model is not None:
            targets.append(self.accelerator.unwrap_model(self.ref_model))
        return targets

    @contextlib.contextmanager
    def _fused_head(self) -> Iterator[None]:
        """TRL's ``add_fused_lm_head`` on the policy (and reference) LM for the duration of the block."""
        targets = [m for m in self._patch_targets() if not _is_trl_fused(m.__dict__.get("forward"))]
        saved = _instance_forwards(targets)
        try:
            for module in targets:
                is_policy = module is self._patch_targets()[0]
                add_fused_lm_head(module, outputs=self._fused_outputs if is_policy else ("log_probs",))
            yield
        finally:
            _restore_forwards(saved)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with self._fused_head():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def compute_ref_log_probs(self, model, inputs):
        with self._fused_head():
            return super().compute_ref_log_probs(model, inputs)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        with self._fused_head():
            return super()._precompute_ref_logps(dataset, name, batch_size)

    def train(self, *args, **kwargs):
        """TRL's training loop; the BIGRec wrapper's cached title embeddings are dropped afterwards."""
        try:
            return super().train(*args, **kwargs)
        finally:
            self.recommender.reset_item_embeddings()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """A complete BIGRec folder (config, ``adapter/`` or ``model/``, ``tokenizer/``, catalog) + the DPO config;
        TRL's frozen reference adapter ("ref") is left out."""
        import shutil

        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        self.recommender.save_pretrained(output_dir)
        shutil.rmtree(Path(output_dir) / "adapter" / "ref", ignore_errors=True)
        atomic_write_text(Path(output_dir) / "dpo_config.json", self.args.to_json_string())



# ------------------------------------------------------------------------------------------------ entry point
def build_dpo_trainer(model: nn.Module, train_dataset, args: DPOConfig, *, ref_model: nn.Module | None = None,
                      eval_dataset=None, peft_config: Any = None, sft_weight: float = 0.0,
                      callbacks: list | None = None) -> DPOTrainer:
    """A TRL DPO trainer for any genrec generative recommender.

    Args:
        model: BIGRec, P5, OneRec or RecGPT.
        train_dataset: preference rows (``genrec.alignment.preference.build_preference_dataset``): ``history``,
            ``chosen_items``, ``rejected_items`` (+ ``target_items``) for P5/OneRec/RecGPT; ``prompt``, ``chosen``,
            ``rejected`` strings for BIGRec.
        args: ``trl.DPOConfig`` (``beta``, ``loss_type``, ``loss_weights`` = lambda, ...). On CPU pass
            ``use_cpu=True, bf16=False``.
        ref_model: reference policy; default: LoRA -> adapters disabled / TRL's frozen adapter copy, otherwise a
            frozen deep copy of the model (never a Hub download).
        eval_dataset: same format as ``train_dataset``.
        peft_config: BIGRec only: a ``peft.LoraConfig`` for a new adapter.
        sft_weight: P5/OneRec/RecGPT only: weight of the next-token loss on ``target_items``.
        callbacks: extra ``TrainerCallback`` s.

    Returns:
        :class:`BIGRecDPOTrainer` or :class:`GenRecDPOTrainer` (both ``trl.DPOTrainer``).

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
