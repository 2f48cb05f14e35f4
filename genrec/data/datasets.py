"""Histories -> token sequences for generative recommenders (via a model's item tokenizer / prompt encoder).

A generative model (P5, OneRec) reads encoder tokens built from a history and is trained to emit the next
item's (or next session's) code tokens. :func:`next_item_windows` cuts every training sequence into
``(history, next items)`` windows; :class:`GenerativeRecDataset` turns each window into
``{"input_ids", "labels"}`` with the model's example encoder (``model.example_encoder()``: P5 samples a prompt
template per example, OneRec concatenates codes); :class:`Seq2SeqRecCollator` pads a batch.

Example::

    windows = next_item_windows(split.train_sequences.values(), data.item_index, max_history=20, num_targets=1)
    dataset = GenerativeRecDataset(windows, model.example_encoder(), seed=0)
    batch = Seq2SeqRecCollator(pad_token_id=model.config.pad_token_id)([dataset[0], dataset[1]])
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from genrec.utils.checks import is_int

__all__ = ["GenerativeRecDataset", "Seq2SeqRecCollator", "next_item_windows"]


def next_item_windows(
    sequences: Iterable[Sequence[str]],
    item_index: Mapping[str, int],
    *,
    max_history: int,
    num_targets: int = 1,
    min_history: int = 1,
) -> list[tuple[list[int], list[int]]]:
    """Every ``(history, next items)`` window of the training sequences, as catalog rows.

    Args:
        sequences: chronological item ids per user (training part only, e.g. ``split.train_sequences.values()``).
        item_index: catalog id -> row.
        max_history: most recent items kept per history.
        num_targets: next items per window (the first is the next item; fewer at the end of a sequence).
        min_history: shortest history kept.

    Returns:
        list of ``(history_rows, target_rows)``.

    Raises:
        ValueError: an unknown item id or bad sizes.

    Example:
        ``[a, b, c]`` with ``num_targets=2`` gives ``([a], [b, c])`` and ``([a, b], [c])``.
    """
    for name, value in (("max_history", max_history), ("num_targets", num_targets), ("min_history", min_history)):
        if not is_int(value) or value < 1:
            raise ValueError(f"`{name}` ({value!r}) must be an integer >= 1")
    windows: list[tuple[list[int], list[int]]] = []
    for sequence in sequences:
        try:
            rows = [item_index[item] for item in sequence]
        except KeyError as error:
            raise ValueError(f"training sequence holds item id {error.args[0]!r}, which is not in the catalog") from None
        for t in range(min_history, len(rows)):
            windows.append((rows[max(0, t - max_history): t], rows[t: t + num_targets]))
    if not windows:
        raise ValueError("no training sequence has 2 or more items; nothing to train on")
    return windows


class GenerativeRecDataset(Dataset):
    """Windows encoded on the fly by a model's example encoder (templates/negatives re-drawn each access).

    Args:
        windows: from :func:`next_item_windows`.
        encoder: object with ``training_example(history_rows, target_rows, rng) -> dict`` (``model.example_encoder()``).
        seed: seeds the per-dataset random generator (template and candidate sampling).
    """

    def __init__(self, windows: Sequence[tuple[list[int], list[int]]], encoder: Any, *, seed: int = 0):
        if len(windows) == 0:
            raise ValueError("`windows` is empty; nothing to train on")
        self.windows = windows
        self.encoder = encoder
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        history, targets = self.windows[index]
        return self.encoder.training_example(history, targets, self.rng)


class Seq2SeqRecCollator:
    """Right-pad ``input_ids`` (with ``pad_token_id``) and ``labels`` (with -100) into a batch.

    Args:
        pad_token_id: the model's pad id.

    Example:
        >>> Seq2SeqRecCollator(pad_token_id=0)([{"input_ids": [5, 6, 1], "labels": [7, 8]},
        ...                                     {"input_ids": [9, 1], "labels": [7, 8, 7, 9]}])["labels"]
        tensor([[   7,    8, -100, -100],
                [   7,    8,    7,    9]])
    """

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        width = max(len(f["input_ids"]) for f in features)
        label_width = max(len(f["labels"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)  # (batch, src)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), label_width), -100, dtype=torch.long)  # (batch, tgt)
        for i, feature in enumerate(features):
            if len(feature["input_ids"]) == 0 or len(feature["labels"]) == 0:
                raise ValueError(f"feature {i} has empty `input_ids` or `labels`")
            input_ids[i, : len(feature["input_ids"])] = torch.as_tensor(feature["input_ids"])
            attention_mask[i, : len(feature["input_ids"])] = 1
            labels[i, : len(feature["labels"])] = torch.as_tensor(feature["labels"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
