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

An epoch over ``dataset`` is every window (~131k on Beauty). :class:`OneWindowPerUserSampler` instead draws ONE window
per user per epoch (a random cut of each user's sequence, re-drawn every epoch): what ``training.train_targets:
random_cut`` plugs into the Trainer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from genrec.utils.checks import is_int

__all__ = ["GenerativeRecDataset", "OneWindowPerUserSampler", "Seq2SeqRecCollator", "next_item_windows"]


def next_item_windows(
    sequences: Iterable[Sequence[str]],
    item_index: Mapping[str, int],
    *,
    max_history: int,
    num_targets: int = 1,
    min_history: int = 1,
    with_users: bool = False,
):
    """Every ``(history, next items)`` window of the training sequences, as catalog rows.

    Args:
        sequences: chronological item ids per user (training part only, e.g. ``split.train_sequences.values()``).
        item_index: catalog id -> row.
        max_history: most recent items kept per history.
        num_targets: next items per window (the first is the next item; fewer at the end of a sequence).
        min_history: shortest history kept.
        with_users: also return, per window, the index of its sequence in ``sequences``.

    Returns:
        list of ``(history_rows, target_rows)``; with ``with_users``, ``(windows, users)`` where ``users`` is an int64
        array ``(num_windows,)``.

    Raises:
        ValueError: an unknown item id or bad sizes.

    Example:
        ``[a, b, c]`` with ``num_targets=2`` gives ``([a], [b, c])`` and ``([a, b], [c])``.
    """
    for name, value in (("max_history", max_history), ("num_targets", num_targets), ("min_history", min_history)):
        if not is_int(value) or value < 1:
            raise ValueError(f"`{name}` ({value!r}) must be an integer >= 1")
    windows: list[tuple[list[int], list[int]]] = []
    users: list[int] = []
    for user, sequence in enumerate(sequences):
        try:
            rows = [item_index[item] for item in sequence]
        except KeyError as error:
            raise ValueError(f"training sequence holds item id {error.args[0]!r}, which is not in the catalog") from None
        for t in range(min_history, len(rows)):
            windows.append((rows[max(0, t - max_history): t], rows[t: t + num_targets]))
        users.extend([user] * max(0, len(rows) - min_history))
    if not windows:
        raise ValueError("no training sequence has 2 or more items; nothing to train on")
    return (windows, np.asarray(users, dtype=np.int64)) if with_users else windows


class GenerativeRecDataset(Dataset):
    """Windows encoded on the fly by a model's example encoder (templates/negatives re-drawn each access).

    Args:
        windows: from :func:`next_item_windows`.
        encoder: object with ``training_example(history_rows, target_rows, rng) -> dict`` (``model.example_encoder()``).
        seed: seeds the per-dataset random generator (template and candidate sampling).
        window_users: optional int ``(num_windows,)``: the user (sequence index) of each window, which
            :class:`OneWindowPerUserSampler` needs (``next_item_windows(..., with_users=True)``).
    """

    def __init__(self, windows: Sequence[tuple[list[int], list[int]]], encoder: Any, *, seed: int = 0,
                 window_users: Sequence[int] | None = None):
        if len(windows) == 0:
            raise ValueError("`windows` is empty; nothing to train on")
        if window_users is not None and len(window_users) != len(windows):
            raise ValueError(f"`window_users` has {len(window_users)} entries for {len(windows)} windows")
        self.windows = windows
        self.encoder = encoder
        self.rng = random.Random(seed)
        self.window_users = None if window_users is None else np.asarray(window_users, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        history, targets = self.windows[index]
        return self.encoder.training_example(history, targets, self.rng)


class OneWindowPerUserSampler(Sampler[int]):
    """Per epoch, ONE window per user, drawn uniformly among that user's windows (``training.train_targets:
    random_cut``): every user's sequence is cut at a random point, the items before it are the history and the items
    from it on the target.

    Over epochs every window is seen, as with the full sliding-window pass, but an epoch is one example per user
    (22,363 on Beauty instead of ~131k windows) and users weigh equally, as they do in leave-one-out evaluation
    (the full pass weighs a user by its sequence length). GRID's TIGER recipe trains on every contiguous
    sub-sequence; this is the sampled form of it, with the history always the most recent items before the cut.

    The draws are a function of ``(seed, epoch)`` only (``set_epoch``, which the Trainer calls every epoch, also for
    the epoch a run resumes in the middle of), so every process of a distributed run draws the same windows and a
    resumed run ends with the weights of one never stopped (tests/models/test_generative_item_inputs.py).

    Args:
        window_users: int ``(num_windows,)``: the user of each window (``GenerativeRecDataset.window_users``).
        seed: base seed.
        lengths: optional ``(num_windows,)`` history lengths; with ``group_size`` the drawn windows are grouped by
            length (as transformers' ``LengthGroupedSampler``: shuffled, then sorted by length, longest first, within
            mega-batches of 50 groups), so a batch pads to similar histories.
        group_size: the training batch size when grouping by length, else ``None``.

    Example:
        users ``[0, 0, 0, 1]`` (user 0 has three windows, user 1 one): each epoch yields two indices, one of
        ``{0, 1, 2}`` and ``3``, in random order.
    """

    MEGABATCH_GROUPS = 50

    def __init__(self, window_users: Sequence[int], *, seed: int = 0, lengths: Sequence[int] | None = None,
                 group_size: int | None = None):
        users = np.asarray(window_users, dtype=np.int64)
        if users.ndim != 1 or len(users) == 0:
            raise ValueError("`window_users` must be a non-empty 1-d sequence of user indices")
        if group_size is not None and (lengths is None or len(lengths) != len(users)):
            raise ValueError("grouping by length (`group_size`) needs one history length per window (`lengths`)")
        order = np.argsort(users, kind="stable")  # windows grouped by user: a CSR layout
        _, starts, counts = np.unique(users[order], return_index=True, return_counts=True)
        self.order, self.starts, self.counts = order, starts, counts
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        picks = self.order[self.starts + (rng.random(len(self.counts)) * self.counts).astype(np.int64)]
        picks = picks[rng.permutation(len(picks))]
        if self.group_size is not None:
            size = self.group_size * self.MEGABATCH_GROUPS
            picks = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                    for chunk in np.array_split(picks, range(size, len(picks), size))])
        return iter(picks.tolist())


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
