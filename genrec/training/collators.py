"""Datasets and collators that turn item-id histories into left-padded SASRec batches."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["NextItemDataset", "NextItemCollator", "encode_rows", "left_pad"]


def encode_rows(item_ids: Sequence[str], item_index: Mapping[str, int], *, where: str = "history") -> list[int]:
    """Map catalog ids to model item rows (``catalog row + 1``; row 0 is padding).

    Raises:
        ValueError: an id is not in the catalog.
    """
    try:
        return [item_index[item_id] + 1 for item_id in item_ids]
    except KeyError as error:
        raise ValueError(f"{where} holds item id {error.args[0]!r}, which is not in the catalog") from None


def left_pad(rows: Sequence[Sequence[int]], *, value: int = 0) -> torch.LongTensor:
    """Stack integer lists into ``(batch, max_len)``, padding on the left.

    Example:
        >>> left_pad([[3, 4, 5], [7]])
        tensor([[3, 4, 5],
                [0, 0, 7]])
    """
    width = max((len(row) for row in rows), default=0)
    batch = torch.full((len(rows), width), value, dtype=torch.long)
    for number, row in enumerate(rows):
        if len(row):
            batch[number, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
    return batch


class NextItemDataset(Dataset):
    """One training example per user: every position predicts the next item (SASRec's objective).

    Args:
        sequences: chronological training item ids per user (e.g. ``split.train_sequences.values()``).
        item_index: catalog id -> catalog row.
        max_length: the model's ``max_position_embeddings``; only the most recent ``max_length + 1``
            items are kept (inputs are the first ``max_length`` of those, labels the last).

    Users with fewer than 2 training items give no (input, next item) pair and are skipped.

    Example:
        a user with items ``[a, b, c]`` (rows 1, 2, 3) gives ``input_ids [1, 2]`` and ``labels [2, 3]``.
    """

    def __init__(self, sequences: Sequence[Sequence[str]], item_index: Mapping[str, int], *, max_length: int):
        if max_length < 1:
            raise ValueError(f"`max_length` ({max_length}) must be >= 1")
        self.examples: list[list[int]] = []
        for sequence in sequences:
            rows = encode_rows(list(sequence)[-(max_length + 1) :], item_index, where="training sequence")
            if len(rows) >= 2:
                self.examples.append(rows)
        if not self.examples:
            raise ValueError("no training sequence has 2 or more items; nothing to train on")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        rows = self.examples[index]
        return {"input_ids": rows[:-1], "labels": rows[1:]}


class NextItemCollator:
    """Left-pad ``input_ids``/``labels`` lists into a batch; padded labels are ``-100``.

    Example:
        >>> NextItemCollator()([{"input_ids": [1, 2], "labels": [2, 3]}, {"input_ids": [4], "labels": [5]}])
        {'input_ids': tensor([[1, 2],
                [0, 4]]), 'attention_mask': tensor([[1, 1],
                [0, 1]]), 'labels': tensor([[   2,    3],
                [-100,    5]])}
    """

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        for feature in features:
            if len(feature["input_ids"]) != len(feature["labels"]):
                raise ValueError(
                    f"`input_ids` ({len(feature['input_ids'])}) and `labels` ({len(feature['labels'])}) "
                    "must have the same length"
                )
        input_ids = left_pad([feature["input_ids"] for feature in features])  # (batch, seq)
        labels = left_pad([feature["labels"] for feature in features], value=-100)  # (batch, seq)
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": labels}
