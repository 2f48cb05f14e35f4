"""Engagement reward model: how likely a user (their item history) engages with an item or a whole session.

OneRec's preference alignment ranks generated sessions with a reward model (its "P-Score") and trains the generator
with DPO on the best vs. worst session. genrec's reward model is small and trained from interactions alone:

* a causal transformer over the history's item embeddings (genrec's SASRec blocks, reused by import) gives a user
  vector ``u`` after every history position;
* the engagement logit of item ``i`` is ``u . e_i + MLP([u, e_i, u * e_i]) + b_i`` with ``e_i`` the (shared) item
  embedding and ``b_i`` a learned per-item bias (the popularity prior). The dot product is SASRec's score; the MLP
  adds non-linear interactions (on Beauty the sum reached a validation AUC of 0.767 in 10 epochs, the dot product
  alone 0.765 and the MLP alone 0.754);
* :meth:`RewardModel.score` returns ``P(engage) = sigmoid(logit)`` per item, :meth:`RewardModel.session_reward` the
  mean item probability of a session.

:func:`train_reward_model` fits it on the training part of a leave-one-out split: every training position's real
next item is a positive, ``num_negatives`` uniformly sampled items are negatives (binary cross-entropy). It reports
the validation AUC (each user's validation item against sampled items the user never interacted with; validation
items are never trained on) next to a popularity baseline's AUC on the same negatives.

Positions are counted from the *left* (the first history item is position 0), so the user vector after position
``t`` of a training sequence is exactly the user vector of the history ``sequence[: t + 1]`` at inference time:
one forward pass trains every prefix of a sequence, as in SASRec.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput, cached_file, logging

from genrec.models.histories import ItemEmbeddingCatalogMixin, history_rows, left_padded_rows
from genrec.models.sasrec.configuration_sasrec import SASRecConfig
from genrec.models.sasrec.modeling_sasrec import SASRecBlock

logger = logging.get_logger(__name__)

__all__ = [
    "ITEM_IDS_FILE",
    "METRICS_FILE",
    "RewardModel",
    "RewardModelConfig",
    "RewardModelOutput",
    "train_reward_model",
]

ITEM_IDS_FILE = "item_ids.json"
METRICS_FILE = "reward_metrics.json"


class RewardModelConfig(PreTrainedConfig):
    r"""Every architectural number of a :class:`RewardModel`.

    Args:
        num_items (int, defaults to 0): catalog size (0 only for a config not yet bound to a catalog).
        hidden_size (int, defaults to 64): item embedding and transformer width.
        num_layers (int, defaults to 2): causal self-attention blocks over the history.
        num_heads (int, defaults to 2): attention heads; must divide ``hidden_size``.
        intermediate_size (int | None, defaults to None): transformer feed-forward width (``None`` = ``hidden_size``).
        mlp_hidden_size (int | None, defaults to None): width of the scoring MLP over ``[u, e, u * e]``
            (``None`` = ``hidden_size``).
        max_history_items (int, defaults to 50): most recent history items read (older ones dropped).
        dropout (float, defaults to 0.1): dropout on embeddings, attention, feed-forward and the scoring MLP.
        hidden_act (str, defaults to "gelu"): activation of the feed-forward and scoring MLP (a key of ``ACT2FN``).
        layer_norm_eps (float, defaults to 1e-6): LayerNorm epsilon.
        initializer_range (float, defaults to 0.02): std of the normal weight init.
        use_item_bias (bool, defaults to True): add a learned per-item bias (the popularity prior) to the logit.
        pad_token_id (int, defaults to 0): history padding row; fixed to 0 (row ``j + 1`` = catalog item ``j``).

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-reward"

    num_items: int = 0
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int | None = None
    mlp_hidden_size: int | None = None
    max_history_items: int = 50
    dropout: float | int = 0.1
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    use_item_bias: bool = True
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = self.hidden_size
        if self.mlp_hidden_size is None:
            self.mlp_hidden_size = self.hidden_size
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        for name, minimum in (("num_items", 0), ("hidden_size", 1), ("num_layers", 1), ("num_heads", 1),
                              ("intermediate_size", 1), ("mlp_hidden_size", 1), ("max_history_items", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_heads` ({self.num_heads})"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` ({self.dropout!r}) must be a number in [0, 1)")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` ({value!r}) must be a number > 0")
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` ({self.hidden_act!r}) must be one of {sorted(ACT2FN)}")
        if not isinstance(self.use_item_bias, bool):
            raise ValueError(f"`use_item_bias` ({self.use_item_bias!r}) must be True or False")
        if self.pad_token_id != 0:
            raise ValueError(f"`pad_token_id` ({self.pad_token_id!r}) must be 0: row 0 of the item table is padding")

    def block_config(self) -> SASRecConfig:
        """The :class:`SASRecConfig` whose blocks this model reuses (same width, heads, dropout)."""
        return SASRecConfig(
            num_items=self.num_items, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
            max_position_embeddings=self.max_history_items, hidden_dropout_prob=self.dropout,
            attention_dropout=self.dropout, layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )


@dataclass
class RewardModelOutput(ModelOutput):
    """Output of :class:`RewardModel`.

    Args:
        loss: scalar binary cross-entropy over the non-padded ``item_rows``, present when ``labels`` were given.
        logits: ``(batch, m)`` engagement logits (0 where ``item_rows`` is -1 padding).
        user_states: ``(batch, hidden_size)`` the user vector of each history.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    user_states: torch.Tensor | None = None


class RewardModel(ItemEmbeddingCatalogMixin, PreTrainedModel):
    """Engagement reward of (user history, item) pairs and of whole sessions (see the module docstring).

    Args:
        config (RewardModelConfig): architecture; ``config.num_items`` must be > 0.
        item_ids (list[str] | None): catalog ids, ``item_ids[j]`` = catalog row ``j`` (input id ``j + 1``). Needed by
            :meth:`score`; saved by :meth:`save_pretrained` as ``item_ids.json``.

    Example:
        >>> model = RewardModel(RewardModelConfig(num_items=3), item_ids=["a", "b", "c"])   # doctest: +SKIP
        >>> model.score([["a", "b"]], [["c", "a"]])                                          # doctest: +SKIP
        [[0.51, 0.49]]
        >>> model.session_reward([["a", "b"]], [["c", "a"]])                                 # doctest: +SKIP
        [0.5]
    """

    config_class = RewardModelConfig
    config: RewardModelConfig
    base_model_prefix = "reward"
    main_input_name = "input_ids"
    _no_split_modules: ClassVar[list[str]] = ["SASRecBlock"]

    def __init__(self, config: RewardModelConfig, item_ids: Sequence[str] | None = None):
        super().__init__(config)
        if config.num_items < 1:
            raise ValueError(f"`num_items` ({config.num_items}) must be >= 1 to build a RewardModel")
        hidden = config.hidden_size
        block_config = config.block_config()
        self.item_embeddings = nn.Embedding(config.num_items + 1, hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_history_items, hidden)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(SASRecBlock(block_config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.score_in = nn.Linear(3 * hidden, config.mlp_hidden_size)
        self.score_act = ACT2FN[config.hidden_act]
        self.score_dropout = nn.Dropout(config.dropout)
        self.score_out = nn.Linear(config.mlp_hidden_size, 1)
        # Per-item bias (row 0 = padding): the popularity prior; zero-initialised.
        self.item_bias = nn.Parameter(torch.zeros(config.num_items + 1))
        self.item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        if item_ids is not None:
            self.set_item_ids(item_ids)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RewardModel):
            init.zeros_(module.item_bias)

    # ----- forward ---------------------------------------------------------------------------------
    def encode(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """User state after every history position.

        Args:
            input_ids: ``(batch, seq_len)`` item rows + 1, left-padded with 0; ``seq_len <= max_history_items``.

        Returns:
            ``(batch, seq_len, hidden_size)``: position ``t`` summarises the history up to and including ``t``.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        seq_len = input_ids.shape[1]
        if seq_len > self.config.max_history_items:
            raise ValueError(
                f"`input_ids` length ({seq_len}) exceeds `max_history_items` ({self.config.max_history_items}); "
                "keep only the most recent items"
            )
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) > self.config.num_items):
            raise ValueError(
                f"`input_ids` must be item rows + 1 in [0, {self.config.num_items}] (0 = padding), got values in "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        attention_mask = input_ids != 0  # (batch, seq)
        # Left-aligned positions (first real item = 0): a prefix gets the same positions alone as inside its
        # sequence, so training on every position of a sequence trains every prefix's user vector.
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, seq)
        hidden_states = self.embedding_dropout(self.item_embeddings(input_ids) + self.position_embeddings(positions))
        causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=input_ids.device).tril()  # (seq, seq)
        diagonal = torch.eye(seq_len, dtype=torch.bool, device=input_ids.device)
        # real keys only; every query sees itself so padded query rows never attend to nothing (NaN in SDPA)
        mask = ((causal & attention_mask[:, None, :]) | diagonal)[:, None]  # (batch, 1, seq, seq)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
        return self.final_norm(hidden_states)

    def item_logits(self, user_states: torch.Tensor, item_rows: torch.LongTensor) -> torch.Tensor:
        """Engagement logits of items for user states.

        Args:
            user_states: ``(..., hidden_size)``.
            item_rows: ``(..., m)`` catalog rows (0-based; must be valid rows, no padding).

        Returns:
            ``(..., m)`` logits ``u . e + MLP([u, e, u * e]) + b``.
        """
        items = self.item_embeddings(item_rows + 1)  # (..., m, hidden)
        users = user_states.unsqueeze(-2).expand_as(items)  # (..., m, hidden)
        products = users * items  # (..., m, hidden)
        features = torch.cat([users, items, products], dim=-1)  # (..., m, 3 * hidden)
        mlp = self.score_out(self.score_dropout(self.score_act(self.score_in(features)))).squeeze(-1)  # (..., m)
        logits = products.sum(-1) + mlp
        if self.config.use_item_bias:
            logits = logits + self.item_bias[item_rows + 1]
        return logits  # (..., m)

    def forward(
        self,
        input_ids: torch.LongTensor,
        item_rows: torch.LongTensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> RewardModelOutput | tuple:
        """Engagement logits of ``m`` items per history, and the BCE loss when ``labels`` are given.

        Args:
            input_ids: ``(batch, n)`` history rows + 1, left-padded with 0 (the last ``max_history_items`` kept).
            item_rows: ``(batch, m)`` catalog rows to score, -1 = padding.
            labels: ``(batch, m)`` float 1 (engaged) / 0 (not); ignored where ``item_rows`` is -1.

        Returns:
            :class:`RewardModelOutput` (``loss`` with labels, ``logits`` ``(batch, m)``, ``user_states``).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if item_rows.dim() != 2 or item_rows.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"`item_rows` shape {tuple(item_rows.shape)} must be (batch={input_ids.shape[0]}, m)"
            )
        if item_rows.numel() and (int(item_rows.min()) < -1 or int(item_rows.max()) >= self.config.num_items):
            raise ValueError(
                f"`item_rows` must be catalog rows in [0, {self.config.num_items - 1}] or -1 (padding), got values "
                f"in [{int(item_rows.min())}, {int(item_rows.max())}]"
            )
        user_states = self.encode(input_ids)[:, -1]  # (batch, hidden): left padding puts the last item last
        valid = item_rows >= 0  # (batch, m)
        logits = self.item_logits(user_states, item_rows.clamp(min=0)).masked_fill(~valid, 0.0)  # (batch, m)
        loss = None
        if labels is not None:
            if labels.shape != item_rows.shape:
                raise ValueError(f"`labels` shape {tuple(labels.shape)} must equal `item_rows` shape "
                                 f"{tuple(item_rows.shape)}")
            loss = F.binary_cross_entropy_with_logits(logits[valid].float(), labels[valid].float())
        if not return_dict:
            return tuple(value for value in (loss, logits, user_states) if value is not None)
        return RewardModelOutput(loss=loss, logits=logits, user_states=user_states)

    # ----- string-id inference ---------------------------------------------------------------------
    def _require_item_ids(self) -> None:
        if self.item_ids is None:
            raise ValueError("this RewardModel has no `item_ids`; pass them to the constructor or set_item_ids()")

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> torch.LongTensor:
        """String histories (oldest first) -> ``(batch, n)`` left-padded rows + 1 (last ``max_history_items``).

        Raises:
            ValueError: no catalog, a string instead of a list, an empty history or an unknown id.
        """
        self._require_item_ids()
        rows = history_rows(histories, self._item_index, max_len=self.config.max_history_items)
        return left_padded_rows(rows).to(self.item_bias.device)

    def _session_rows(self, sessions: Sequence[Sequence[str]]) -> torch.LongTensor:
        """``(batch, longest)`` catalog rows of each session, right-padded with -1."""
        if isinstance(sessions, str):
            raise ValueError("`sessions` must be a list of sessions (lists of item ids), not a string")
        width = max([len(session) for session in sessions] + [1])
        rows = torch.full((len(sessions), width), -1, dtype=torch.long)
        for number, session in enumerate(sessions):
            if isinstance(session, str):
                raise ValueError(f"session {number} ({session!r}) must be a list of item ids, not a string")
            for slot, item in enumerate(session):
                row = self._item_index.get(str(item))
                if row is None:
                    raise ValueError(f"session {number} contains item id {item!r}, which is not in the reward "
                                     f"model's catalog of {len(self._item_index)} items")
                rows[number, slot] = row
        return rows.to(self.item_bias.device)

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[str]], sessions: Sequence[Sequence[str]], *,
              batch_size: int = 256) -> list[list[float]]:
        """``P(engage)`` of every item of every session, given the user's history.

        Args:
            histories: per user, catalog item ids oldest first (at least one item).
            sessions: per user, the item ids to score (any number, may be empty).
            batch_size: users per forward pass.

        Returns:
            per user, one probability per session item (session order).

        Raises:
            ValueError: lengths differ, or a history/session is malformed or holds an unknown item id.
        """
        self._require_item_ids()
        if len(histories) != len(sessions):
            raise ValueError(f"`histories` ({len(histories)}) and `sessions` ({len(sessions)}) must have one entry "
                             "per user each")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` ({batch_size!r}) must be an integer >= 1")
        was_training = self.training
        self.eval()
        results: list[list[float]] = []
        try:
            for start in range(0, len(histories), batch_size):
                input_ids = self.encode_histories(histories[start:start + batch_size])  # (B, n)
                item_rows = self._session_rows(sessions[start:start + batch_size])  # (B, m)
                probabilities = self(input_ids=input_ids, item_rows=item_rows).logits.float().sigmoid()  # (B, m)
                for session, values in zip(sessions[start:start + batch_size], probabilities.tolist()):
                    results.append(values[: len(session)])
        finally:
            self.train(was_training)
        return results

    def session_reward(self, histories: Sequence[Sequence[str]], sessions: Sequence[Sequence[str]], *,
                       batch_size: int = 256) -> list[float]:
        """Reward of each whole session: the mean ``P(engage)`` of its items.

        Args:
            histories, sessions, batch_size: as in :meth:`score`; every session needs at least one item.

        Returns:
            one float per user.

        Raises:
            ValueError: an empty session (its reward is undefined), or anything :meth:`score` rejects.
        """
        for number, session in enumerate(sessions):
            if not isinstance(session, str) and len(session) == 0:
                raise ValueError(f"session {number} is empty; a session reward needs at least one item")
        return [sum(values) / len(values) for values in self.score(histories, sessions, batch_size=batch_size)]

    # ----- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained`` (config.json + model.safetensors) plus ``item_ids.json``."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.item_ids is not None and kwargs.get("is_main_process", True):
            from genrec.utils.io import atomic_write_json

            atomic_write_json(Path(save_directory) / ITEM_IDS_FILE, {"item_ids": self.item_ids}, indent=0)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also restores ``item_ids.json`` when present."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        # Loaded tensors can sit at unaligned offsets of the memory-mapped safetensors file, where CPU kernels take
        # another (equally correct) path and probabilities differ in the 7th digit; fresh aligned copies make a
        # reloaded model score bit-identically (the model is small, the copy costs nothing).
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.data = parameter.data.clone()
        lookup = {key: kwargs[key] for key in ("cache_dir", "revision", "token", "local_files_only", "subfolder")
                  if key in kwargs}
        path = cached_file(pretrained_model_name_or_path, ITEM_IDS_FILE, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **lookup)
        if path is not None:
            from genrec.models.histories import read_item_ids_file

            model.set_item_ids(read_item_ids_file(path))
        else:
            logger.warning(f"{pretrained_model_name_or_path}: no {ITEM_IDS_FILE}; score() needs set_item_ids()")
        return model


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


def _batches(windows: list[list[int]], batch_size: int, rng: random.Random) -> list[list[list[int]]]:
    """Shuffled batches of windows with similar lengths (little padding): shuffle, sort within pools of 50
    batches by length, cut, shuffle the batch order."""
    order = windows[:]
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=len)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _window_tensors(batch: list[list[int]]) -> tuple[torch.LongTensor, torch.LongTensor]:
    """``(inputs, targets)``, both ``(B, T)``: inputs = window[:-1] rows + 1 left-padded with 0, targets =
    window[1:] rows left-padded with -1 (aligned with the inputs)."""
    width = max(len(window) for window in batch) - 1
    inputs = torch.zeros(len(batch), width, dtype=torch.long)
    targets = torch.full((len(batch), width), -1, dtype=torch.long)
    for number, window in enumerate(batch):
        length = len(window) - 1
        inputs[number, width - length:] = torch.tensor(window[:-1]) + 1
        targets[number, width - length:] = torch.tensor(window[1:])
    return inputs, targets


def _sample_negatives(positives: torch.LongTensor, num_items: int, num_negatives: int,
                      generator: torch.Generator) -> torch.LongTensor:
    """``(n, num_negatives)`` rows drawn uniformly from the catalog, never equal to the row's positive."""
    offsets = torch.randint(1, num_items, (positives.shape[0], num_negatives), generator=generator)
    return (positives[:, None] + offsets) % num_items


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
    item is a positive, ``num_negatives`` uniformly drawn other items are negatives; binary cross-entropy, Adam.

    Validation: for every (kept) user, ``split.valid``'s target (never trained on) against ``num_eval_negatives``
    distinct items the user never interacted with; AUC per user (ties count 1/2), averaged over users. The same
    negatives are scored by training-set item popularity for the baseline ``valid/auc_popularity``.

    Args:
        split: a ``genrec.data.LeaveOneOutSplit``.
        config: architecture (``num_items`` is set from the split's catalog); default ``RewardModelConfig()``.
        num_negatives: sampled negatives per training positive.
        epochs: passes over the training windows.
        batch_size: training windows (user sequences) per step; also the evaluation batch.
        learning_rate, weight_decay: AdamW settings.
        seed: seeds init, shuffling and negative sampling (training and evaluation).
        time_budget: seconds of training after which it stops (checked after every step); None = no limit.
        max_users: train and evaluate on a seeded random subset of this many users (None = all).
        num_eval_negatives: negatives per validation user.
        output_dir: folder to save the model (+ ``reward_metrics.json``) into, atomically; its parent must exist.
        device: where to train (default: CUDA when available, else CPU).
        **config_kwargs: :class:`RewardModelConfig` fields (``hidden_size=32``, ...) instead of ``config``.

    Returns:
        ``(model, metrics)``: the trained model (evaluation mode, on ``device``) and
        ``{"valid/auc", "valid/auc_popularity", "valid/num_users", "valid/num_negatives", "train/loss",
        "train/epochs", "train/steps", "train/num_windows", "train/num_positives", "train/stopped_by_time_budget",
        "train_seconds", "eval_seconds", "num_parameters", "num_users", "num_items"}``.

    Raises:
        ValueError: a bad argument (named), a catalog mismatch with ``config.num_items``, or no training pairs.
    """
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

    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    model = RewardModel(config, item_ids=item_ids).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)

    start_time = time.perf_counter()
    steps, epochs_done, epoch_loss, stopped = 0, 0.0, float("nan"), False
    for epoch in range(epochs):
        model.train()
        batches = _batches(windows, batch_size, rng)
        losses = []
        for number, batch in enumerate(batches):
            inputs, targets = _window_tensors(batch)  # (B, T) each
            hidden_states = model.encode(inputs.to(device))  # (B, T, hidden)
            labelled = targets >= 0  # (B, T)
            positives = targets[labelled]  # (n,)
            negatives = _sample_negatives(positives, num_items, num_negatives, generator)  # (n, K)
            item_rows = torch.cat([positives[:, None], negatives], dim=1).to(device)  # (n, 1 + K)
            logits = model.item_logits(hidden_states[labelled.to(device)], item_rows)  # (n, 1 + K)
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            steps += 1
            if time_budget is not None and time.perf_counter() - start_time > time_budget:
                stopped = True
                epochs_done = epoch + (number + 1) / len(batches)
                break
        epoch_loss = float(np.mean(losses))
        if stopped:
            break
        epochs_done = epoch + 1
        logger.info(f"reward model epoch {epoch + 1}/{epochs}: loss {epoch_loss:.4f}")
    train_seconds = time.perf_counter() - start_time

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
        with atomic_directory(output_dir) as folder:
            model.save_pretrained(folder)
            atomic_write_json(Path(folder) / METRICS_FILE, metrics)
    return model, metrics
