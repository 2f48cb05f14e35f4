"""Training of genrec's engagement reward model (:mod:`genrec.models.reward`) with ``transformers.Trainer``.

:func:`train_reward_model` fits a :class:`~genrec.models.reward.RewardModel` on the training part of a leave-one-out
split: every training position's real next item is a positive, ``num_negatives`` uniformly sampled items are
negatives (binary cross-entropy in the model's ``forward``). The ``Trainer`` runs the loop like every other genrec
model (one model trained data-parallel under ``torchrun``; ``time_budget`` through genrec's
``TimeBudgetCallback``). It reports the validation AUC (each user's validation item against sampled items the user
never interacted with; validation items are never trained on) next to a popularity baseline's AUC on the same
negatives.

The model classes live in :mod:`genrec.models.reward`; they are re-exported here for existing imports.
"""

from __future__ import annotations

import copy
import math
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from genrec.models.histories import left_padded_rows
from genrec.models.reward import ITEM_IDS_FILE, RewardModel, RewardModelConfig, RewardModelOutput

logger = logging.get_logger(__name__)

__all__ = [
    "ITEM_IDS_FILE",
    "METRICS_FILE",
    "RewardModel",
    "RewardModelConfig",
    "RewardModelOutput",
    "RewardNegativeSamplingCollator",
    "train_reward_model",
]

METRICS_FILE = "reward_metrics.json"


# ===================================================================================================== training
def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}")


def _check_positive_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number > 0")


def _training_windows(rows: Sequence[int], max_len: int) -> list[list[int]]:
    """Cut one training sequence of rows into windows of at most ``max_len + 1`` rows, the last one ending at the
    sequence's end; consecutive windows share one row so every item after the first is a target exactly once.

    Example: rows ``[0..9]``, ``max_len`` 4 -> ``[[5, 6, 7, 8, 9], [1, 2, 3, 4, 5], [0, 1]]``.
    """
    windows, end = [], len(rows)
    while end > 1:
        start = max(0, end - max_len - 1)
        windows.append(list(rows[start:end]))
        end = start + 1
    return windows


@dataclass
class RewardNegativeSamplingCollator:
    """Training windows (lists of catalog rows) -> a per-position :class:`RewardModel` batch with fresh negatives.

    Output: ``input_ids`` ``(B, T)`` = ``window[:-1]`` rows + 1, left-padded with 0; ``item_rows`` ``(B, T, 1 + K)``
    = the next row (positive) then ``K`` uniformly drawn other rows (never the positive), -1 on padding;
    ``labels`` ``(B, T, 1 + K)`` = 1 for the positive, 0 for the negatives.

    Args:
        num_items: catalog size (>= 2).
        num_negatives: K.
        seed: seeds the negative sampler (each call draws new negatives).

    Example:
        >>> collator = RewardNegativeSamplingCollator(num_items=5, num_negatives=1)
        >>> batch = collator([{"input_ids": [3, 1, 4]}, {"input_ids": [2, 0]}])
        >>> batch["input_ids"].tolist(), batch["item_rows"][..., 0].tolist()
        ([[4, 2], [0, 3]], [[1, 4], [-1, 0]])
    """

    num_items: int
    num_negatives: int
    seed: int = 0

    def __post_init__(self):
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        windows = [list(example["input_ids"]) for example in examples]
        width = max(len(window) for window in windows) - 1
        inputs = torch.zeros(len(windows), width, dtype=torch.long)
        targets = torch.full((len(windows), width), -1, dtype=torch.long)
        for number, window in enumerate(windows):
            length = len(window) - 1
            inputs[number, width - length:] = torch.tensor(window[:-1]) + 1
            targets[number, width - length:] = torch.tensor(window[1:])
        # uniform over the other rows: positive + an offset in [1, num_items) modulo the catalog
        offsets = torch.randint(1, self.num_items, (*targets.shape, self.num_negatives), generator=self.generator)
        negatives = (targets.clamp(min=0)[..., None] + offsets) % self.num_items  # (B, T, K)
        item_rows = torch.cat([targets[..., None], negatives], dim=-1)  # (B, T, 1 + K)
        item_rows[targets < 0] = -1
        labels = torch.zeros(item_rows.shape, dtype=torch.float32)
        labels[..., 0] = 1.0
        return {"input_ids": inputs, "item_rows": item_rows, "labels": labels}


def _auc_against_negatives(positive: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Per-user AUC of one positive score ``(n,)`` against negative scores ``(n, k)``; ties count one half."""
    return ((negatives < positive[:, None]).sum(1) + 0.5 * (negatives == positive[:, None]).sum(1)) / negatives.shape[1]


def _evaluation_negatives(histories: list[list[int]], targets: list[int], num_items: int, num_negatives: int,
                          seed: int) -> np.ndarray:
    """``(n, num_negatives)`` distinct rows per user, uniform over the items absent from its history and target.

    Raises:
        ValueError: a user has interacted with too much of the catalog to draw ``num_negatives`` unseen items.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((len(targets), num_negatives), dtype=np.int64)
    for number, (history, target) in enumerate(zip(histories, targets)):
        seen = set(history) | {target}
        if num_items - len(seen) < num_negatives:
            raise ValueError(f"`num_eval_negatives` ({num_negatives}) exceeds the {num_items - len(seen)} items user "
                             f"{number} has not interacted with; lower it")
        chosen: list[int] = []
        taken = set(seen)
        while len(chosen) < num_negatives:
            for row in rng.integers(0, num_items, 2 * num_negatives).tolist():
                if row not in taken:
                    taken.add(row)
                    chosen.append(row)
                    if len(chosen) == num_negatives:
                        break
        out[number] = chosen
    return out


@torch.no_grad()
def _model_scores(model: RewardModel, histories: list[list[int]], item_rows: np.ndarray,
                  batch_size: int) -> np.ndarray:
    """``(n, m)`` logits of ``item_rows`` for histories of catalog rows (evaluation mode)."""
    model.eval()
    device = model.item_bias.device
    out = []
    for start in range(0, len(histories), batch_size):
        chunk = [history[-model.config.max_history_items:] for history in histories[start:start + batch_size]]
        input_ids = left_padded_rows(chunk).to(device)
        rows = torch.as_tensor(item_rows[start:start + batch_size], device=device)
        out.append(model(input_ids=input_ids, item_rows=rows).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, item_rows.shape[1]), dtype=np.float32)


def train_reward_model(
    split,
    *,
    config: RewardModelConfig | None = None,
    num_negatives: int = 4,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    time_budget: float | None = None,
    max_users: int | None = None,
    num_eval_negatives: int = 100,
    output_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **config_kwargs: Any,
) -> tuple[RewardModel, dict[str, Any]]:
    """Train a :class:`RewardModel` on a leave-one-out split and measure its validation AUC.

    Training data: every position of ``split.train_sequences`` (validation and test items excluded) -- the real next
    item is a positive, ``num_negatives`` uniformly drawn other items are negatives
    (:class:`RewardNegativeSamplingCollator`); binary cross-entropy in the model's ``forward``, ``Trainer`` + AdamW.

    Validation: for every (kept) user, ``split.valid``'s target (never trained on) against ``num_eval_negatives``
    distinct items the user never interacted with; AUC per user (ties count 1/2), averaged over users. The same
    negatives are scored by training-set item popularity for the baseline ``valid/auc_popularity``.

    Args:
        split: a ``genrec.data.LeaveOneOutSplit``.
        config: architecture (``num_items`` is set from the split's catalog); default ``RewardModelConfig()``.
        num_negatives: sampled negatives per training positive.
        epochs: passes over the training windows.
        batch_size: training windows (user sequences) per step and process; also the evaluation batch.
        learning_rate, weight_decay: AdamW settings (constant learning rate, no gradient clipping).
        seed: seeds init, shuffling and negative sampling (training and evaluation).
        time_budget: seconds of training after which it stops (genrec's ``TimeBudgetCallback``, checked after
            every step); None = no limit.
        max_users: train and evaluate on a seeded random subset of this many users (None = all).
        num_eval_negatives: negatives per validation user.
        output_dir: folder to save the model (+ ``reward_metrics.json``) into, atomically; its parent must exist.
        device: ``"cpu"`` or ``"cuda"`` (default: CUDA when available, else CPU); under ``torchrun`` every process
            trains the same model data-parallel (the ``Trainer``'s DDP) and only the caller that passes
            ``output_dir`` saves.
        **config_kwargs: :class:`RewardModelConfig` fields (``hidden_size=32``, ...) instead of ``config``.

    Returns:
        ``(model, metrics)``: the trained model (evaluation mode, on ``device``) and
        ``{"valid/auc", "valid/auc_popularity", "valid/num_users", "valid/num_negatives", "train/loss",
        "train/epochs", "train/steps", "train/num_windows", "train/num_positives", "train/stopped_by_time_budget",
        "train_seconds", "eval_seconds", "num_parameters", "num_users", "num_items"}``.

    Raises:
        ValueError: a bad argument (named), a catalog mismatch with ``config.num_items``, or no training pairs.
    """
    from datasets import Dataset

    from genrec.training.trainer import TimeBudgetCallback
    from genrec.utils.io import atomic_directory, atomic_write_json, check_output_parent

    for name, value, minimum in (("num_negatives", num_negatives, 1), ("epochs", epochs, 1),
                                 ("batch_size", batch_size, 1), ("num_eval_negatives", num_eval_negatives, 1)):
        _check_positive_int(name, value, minimum)
    _check_positive_int("seed", seed, 0)
    _check_positive_number("learning_rate", learning_rate)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"`weight_decay` ({weight_decay!r}) must be a number >= 0")
    if time_budget is not None:
        _check_positive_number("time_budget", time_budget)
    if max_users is not None:
        _check_positive_int("max_users", max_users)
    if config is not None and not isinstance(config, RewardModelConfig):
        raise ValueError(f"`config` must be a RewardModelConfig or None, got {type(config).__name__}")
    if config_kwargs:
        fields = sorted(set(RewardModelConfig.__annotations__) - {"num_items", "pad_token_id"})
        unknown = sorted(set(config_kwargs) - set(fields))
        if unknown:
            raise ValueError(f"unknown train_reward_model argument(s) {unknown}; RewardModelConfig fields are {fields}")
        if config is not None:
            raise ValueError(f"pass either `config` or RewardModelConfig fields ({sorted(config_kwargs)}), not both")
        config = RewardModelConfig(**config_kwargs)
    if output_dir is not None:
        check_output_parent(output_dir)
    for attribute in ("train_sequences", "valid", "data"):
        if not hasattr(split, attribute):
            raise ValueError(f"`split` must be a genrec.data.LeaveOneOutSplit (it has no `{attribute}`)")

    item_ids = list(split.data.item_ids)
    index = {item: row for row, item in enumerate(item_ids)}
    num_items = len(item_ids)
    if num_items < 2:
        raise ValueError(f"the catalog has {num_items} item(s); negatives need at least 2")
    if config is None:
        config = RewardModelConfig(num_items=num_items)
    else:
        if config.num_items not in (0, num_items):
            raise ValueError(f"`config.num_items` ({config.num_items}) does not match the split's catalog "
                             f"({num_items} items); use 0 to take it from the split")
        config = copy.deepcopy(config)
        config.num_items = num_items

    users = list(split.train_sequences)
    if max_users is not None and max_users < len(users):
        kept = set(random.Random(seed).sample(users, max_users))
        users = [user for user in users if user in kept]
    kept_users = set(users)
    windows = [window for user in users
               for window in _training_windows([index[item] for item in split.train_sequences[user]],
                                               config.max_history_items)]
    if not windows:
        raise ValueError("no training pairs: every kept user's training sequence has a single item")

    device_type = torch.device(device).type if device is not None else None
    if device_type not in (None, "cpu", "cuda"):
        raise ValueError(f"`device` ({device!r}) must be 'cpu', 'cuda' or None")
    torch.manual_seed(seed)
    model = RewardModel(config, item_ids=item_ids)
    train_dataset = Dataset.from_dict({"input_ids": windows, "length": [len(window) for window in windows]})
    budget = TimeBudgetCallback(time_budget) if time_budget is not None else None
    with tempfile.TemporaryDirectory(prefix="genrec-reward-") as scratch:  # the Trainer keeps nothing there
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, weight_decay=weight_decay, lr_scheduler_type="constant", warmup_steps=0,
            max_grad_norm=0.0,  # no clipping, constant learning rate: plain AdamW steps
            seed=seed, data_seed=seed, train_sampling_strategy="group_by_length",  # windows of similar lengths
            logging_strategy="epoch", save_strategy="no", eval_strategy="no", report_to="none",
            use_cpu=device_type == "cpu" or (device_type is None and not torch.cuda.is_available()), bf16=False,
            remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True,
        )
        collator = RewardNegativeSamplingCollator(num_items=num_items, num_negatives=num_negatives, seed=seed)
        trainer = Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator,
                          callbacks=[budget] if budget is not None else None)
        start_time = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start_time
    model = trainer.accelerator.unwrap_model(trainer.model)
    epoch_logs = [record["loss"] for record in trainer.state.log_history if "loss" in record]
    epoch_loss = float(epoch_logs[-1]) if epoch_logs else float("nan")  # the last (possibly partial) epoch
    epochs_done, steps = float(trainer.state.epoch or 0.0), int(trainer.state.global_step)
    stopped = bool(budget is not None and budget.stopped_early)
    logger.info(f"reward model: {steps} steps, {epochs_done:.2f} epochs, last epoch loss {epoch_loss:.4f}")

    # ----- validation AUC (valid targets were never trained on) ------------------------------------------------
    eval_start = time.perf_counter()
    valid_users = list(split.valid["user_id"])
    valid_histories = list(split.valid["history"])
    valid_targets = list(split.valid["target"])
    histories, targets = [], []
    for user, history, target in zip(valid_users, valid_histories, valid_targets):
        if user in kept_users and len(history) > 0:
            histories.append([index[item] for item in history])
            targets.append(index[target])
    negatives = _evaluation_negatives(histories, targets, num_items, num_eval_negatives, seed)  # (n, E)
    candidates = np.concatenate([np.asarray(targets, dtype=np.int64)[:, None], negatives], axis=1)  # (n, 1 + E)
    scores = _model_scores(model, histories, candidates, batch_size)  # (n, 1 + E)
    popularity = np.zeros(num_items, dtype=np.float64)
    for user in users:
        for item in split.train_sequences[user]:
            popularity[index[item]] += 1
    popularity_scores = popularity[candidates]  # (n, 1 + E)
    metrics: dict[str, Any] = {
        "valid/auc": float(_auc_against_negatives(scores[:, 0], scores[:, 1:]).mean()) if targets else float("nan"),
        "valid/auc_popularity": float(_auc_against_negatives(popularity_scores[:, 0], popularity_scores[:, 1:]).mean())
        if targets else float("nan"),
        "valid/num_users": len(targets),
        "valid/num_negatives": num_eval_negatives,
        "train/loss": epoch_loss,
        "train/epochs": round(epochs_done, 4),
        "train/steps": steps,
        "train/num_windows": len(windows),
        "train/num_positives": sum(len(window) - 1 for window in windows),
        "train/stopped_by_time_budget": stopped,
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(time.perf_counter() - eval_start, 3),
        "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "num_users": len(users),
        "num_items": num_items,
    }
    model.eval()
    logger.info(f"reward model: valid AUC {metrics['valid/auc']:.4f} (popularity {metrics['valid/auc_popularity']:.4f})"
                f", {train_seconds:.1f}s training")
    if output_dir is not None:
        from genrec.models.model_card import set_card_info

        set_card_info(model, dataset=getattr(getattr(split, "data", None), "name", None), metrics=metrics,
                      data={"num_users": len(users), "num_items": num_items}, written_by="genrec align (reward model)",
                      notes=[f"valid AUC: each user's validation item against {num_eval_negatives} items the user "
                             "never had; auc_popularity: training-set popularity on the same negatives"])
        with atomic_directory(output_dir) as folder:
            model.save_pretrained(folder)
            atomic_write_json(Path(folder) / METRICS_FILE, metrics)
    return model, metrics
