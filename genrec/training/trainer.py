"""A ``transformers.Trainer`` that validates with leave-one-out full ranking (genrec.evaluation).

``RecommendationTrainer.evaluate`` scores every catalog item for every validation history (no
sampled negatives), logs ``eval_recall@k`` / ``eval_ndcg@k`` / ``eval_mrr@k`` through the Trainer's
reporting (console, progress bar, W&B) and fires ``on_evaluate`` so the callbacks below can early-stop
on validation NDCG@10 and restore the best weights at the end of training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.utils import logging

from genrec.training.collators import encode_rows, left_pad

__all__ = [
    "RankingSet",
    "RecommendationTrainer",
    "random_cut_sampler",
    "BestModelCallback",
    "TimeBudgetCallback",
    "WallClockEvalCallback",
    "LogToFileCallback",
    "check_marks",
    "full_ranking_metrics",
]

logger = logging.get_logger(__name__)


@dataclass
class RankingSet(Dataset):
    """Leave-one-out evaluation examples as model item rows.

    Args:
        histories: per example, item rows oldest first (already cut to the model's max length).
        targets: ``(n,)`` catalog rows (0-based) of the held-out items.
        seen_items: per example, the catalog rows (0-based) of the *whole* history, for ``exclude_history``
            (None: the rows in ``histories``).
    """

    histories: list[list[int]]
    targets: torch.LongTensor
    seen_items: list[list[int]] | None = None

    @classmethod
    def from_split(cls, examples, item_index: Mapping[str, int], *, max_length: int) -> "RankingSet":
        """Build from a ``datasets.Dataset`` (or list of dicts) with ``history`` and ``target`` columns.

        Raises:
            ValueError: a history is empty or an id is not in the catalog.
        """
        histories_column = examples["history"] if not isinstance(examples, list) else [e["history"] for e in examples]
        targets_column = examples["target"] if not isinstance(examples, list) else [e["target"] for e in examples]
        histories, seen_items = [], []
        for number, history in enumerate(histories_column):
            if len(history) == 0:
                raise ValueError(f"evaluation example {number} has an empty history")
            rows = encode_rows(list(history), item_index, where="evaluation history")
            histories.append(rows[-max_length:])
            seen_items.append([row - 1 for row in rows])
        targets = [row - 1 for row in encode_rows(list(targets_column), item_index, where="evaluation target")]
        return cls(histories=histories, targets=torch.tensor(targets, dtype=torch.long), seen_items=seen_items)

    def __len__(self) -> int:
        return len(self.histories)

    def __getitem__(self, index: int) -> dict:
        return {"history": self.histories[index], "target": int(self.targets[index])}


@torch.no_grad()
def full_ranking_metrics(
    model,
    ranking: RankingSet,
    *,
    ks: Sequence[int] = (5, 10, 20),
    batch_size: int = 512,
    exclude_history: bool = False,
    show_progress: bool = False,
    description: str = "ranking",
) -> dict[str, float]:
    """Leave-one-out full-ranking metrics of a model with a ``score(input_ids)`` method.

    Args:
        model: e.g. :class:`genrec.models.sasrec.SASRecModel`; ``score`` returns ``(batch, num_items)``.
        ranking: the examples.
        ks: cut-offs.
        batch_size: histories scored at once (memory = batch_size x num_items floats).
        exclude_history: drop the items already in the history (the whole history, ``ranking.seen_items``, not
            only the model's window) from the ranking; a target in the history then counts as a miss.
        show_progress: tqdm bar over batches.

    Returns:
        ``{"recall@k", "ndcg@k", "mrr@k", ..., "invalid_rate"}`` averaged over all examples (as genrec.evaluation
        names them). ``invalid_rate`` is the share of the top-``max(ks)`` slots without a finite score (before
        ``exclude_history``): 0 for models that score every item; for generative models (P5, OneRec: beam search,
        ``-inf`` outside the beam) the slots where decoding returned no catalog item, as
        :func:`genrec.evaluation.evaluate_rankings` counts ``-1`` entries.
    """
    return ranking_metrics_by_scoring(model, ranking, lambda input_ids: {"": model.score(input_ids)}, ks=ks,
                                      batch_size=batch_size, exclude_history=exclude_history,
                                      show_progress=show_progress, description=description)[""]


def ranking_metrics_by_scoring(model, ranking: RankingSet, score_batch, *, ks: Sequence[int] = (5, 10, 20),
                               batch_size: int = 512, exclude_history: bool = False, show_progress: bool = False,
                               description: str = "ranking") -> dict[Any, dict[str, float]]:
    """:func:`full_ranking_metrics` for several scorings from one pass over the examples.

    Args:
        model: sets the device and is put in eval mode for the pass (e.g. the model ``score_batch`` calls).
        score_batch: ``input_ids (batch, seq)`` → ``{name: (batch, num_items) scores}``, the same names each batch.
        The other arguments: as :func:`full_ranking_metrics`.

    Returns:
        ``{name: metrics}``.
    """
    from genrec.evaluation import MetricAccumulator, evaluate_scores
    from genrec.evaluation.metrics import history_mask

    if len(ranking) == 0:
        raise ValueError("cannot evaluate on an empty set of examples")
    was_training = model.training
    model.eval()
    accumulators: dict[str, MetricAccumulator] = {}
    try:
        for start in tqdm(
            range(0, len(ranking), batch_size), desc=description, disable=not show_progress, leave=False
        ):
            input_ids = left_pad(ranking.histories[start : start + batch_size]).to(model.device)  # (batch, seq)
            targets = ranking.targets[start : start + batch_size]  # (batch,)
            exclude = None
            for name, scores in score_batch(input_ids).items():  # (batch, num_items) each
                if exclude_history and exclude is None:  # (batch, num_items)
                    seen = ranking.seen_items if ranking.seen_items is not None else [
                        [row - 1 for row in history] for history in ranking.histories]
                    exclude = history_mask(seen[start : start + batch_size], scores.shape[1], device=scores.device)
                per_sample = evaluate_scores(scores, targets.to(scores.device), ks=tuple(ks), exclude=exclude,
                                             reduce=False)
                # a generative model scores only the items its search found (-inf elsewhere): a top-K slot without
                # a finite score is a generation that gave no catalog item
                width = min(max(ks), scores.shape[1])
                found = torch.isfinite(scores).sum(dim=1)  # (batch,)
                per_sample["invalid_rate"] = ((width - found).clamp(min=0).double() / width).cpu()
                accumulators.setdefault(name, MetricAccumulator()).update(per_sample)
    finally:
        model.train(was_training)
    return {name: accumulator.compute() for name, accumulator in accumulators.items()}


def tune_text_prior(model, ranking: RankingSet, weights: Sequence[float], *, metric: str = "ndcg@10",
                    ks: Sequence[int] = (5, 10, 20), batch_size: int = 512, exclude_history: bool = False,
                    show_progress: bool = False) -> tuple[float, dict[float, dict[str, float]]]:
    """Choose a model's ``text_prior_weight`` (RecGPT item layout; P5 / OneRec item head) on ``ranking`` (a VALIDATION split) and set it.

    Every weight is scored from one pass of the network (``score_components``); the best ``metric`` wins, ties
    going to the smaller weight. The model's config then holds the chosen weight (saved with the checkpoint).

    Returns:
        ``(chosen weight, {weight: metrics})``.

    Raises:
        ValueError: no weights, a negative or non-finite one, a metric not computed at ``ks``, or a model without
            a text prior (``supports_text_prior``).
    """
    weights = sorted({float(weight) for weight in weights})
    if not weights or any(not 0.0 <= weight < float("inf") for weight in weights):
        raise ValueError(f"text prior weights ({weights!r}) must be a non-empty list of finite numbers >= 0")
    if metric.partition("@")[2] not in {str(k) for k in ks}:
        raise ValueError(f"metric {metric!r} must be '<metric>@k' with k in {list(ks)}")
    if not getattr(model, "supports_text_prior", False):
        raise ValueError("a text prior needs an item-layout RecGPT, or a P5 / OneRec with an item head and item "
                         f"vectors (`loss_type: items`); got {type(model).__name__}")

    def score_batch(input_ids):
        parts = model.score_components(input_ids)
        return {weight: parts["model"] + weight * parts["text_prior"] if weight else parts["model"]
                for weight in weights}

    results = ranking_metrics_by_scoring(model, ranking, score_batch, ks=ks, batch_size=batch_size,
                                         exclude_history=exclude_history, show_progress=show_progress,
                                         description="text prior sweep")
    best = max(weights, key=lambda weight: (results[weight][metric], -weight))
    model.config.text_prior_weight = best
    return best, results


def random_cut_sampler(dataset, args):
    """The sampler of ``training.train_targets: random_cut`` for a window dataset (P5 / OneRec training data).

    Args:
        dataset: a :class:`genrec.data.datasets.GenerativeRecDataset` built with ``window_users``.
        args: the training arguments (``seed``, ``train_sampling_strategy``, the batch size).

    Raises:
        ValueError: the dataset does not know the user of each window (a model not trained on windows).
    """
    from genrec.data.datasets import OneWindowPerUserSampler

    users = getattr(dataset, "window_users", None)
    if users is None:
        raise ValueError("`training.train_targets: random_cut` needs training windows that know their user (P5 / "
                         f"OneRec build them); this model's training data is a {type(dataset).__name__}")
    grouped = args.train_sampling_strategy == "group_by_length"
    lengths = [len(history) for history, _ in dataset.windows] if grouped else None
    return OneWindowPerUserSampler(users, seed=args.seed, lengths=lengths,
                                   group_size=args.train_batch_size * args.gradient_accumulation_steps if grouped else None)


class RecommendationTrainer(Trainer):
    """``Trainer`` whose evaluation is full-catalog ranking of the next item.

    ``eval_dataset`` must be a :class:`RankingSet`; ``args`` a
    :class:`genrec.training.arguments.GenRecTrainingArguments` (reads ``eval_ks`` and
    ``exclude_history_items``).
    """

    def _get_train_sampler(self, train_dataset=None):
        """``training.train_targets: random_cut``: one window per user per epoch (:class:`OneWindowPerUserSampler`,
        grouped by history length under ``train_sampling_strategy: group_by_length``); else transformers' sampler."""
        if getattr(self.args, "train_targets", "all_windows") != "random_cut":
            return super()._get_train_sampler(train_dataset)
        return random_cut_sampler(train_dataset if train_dataset is not None else self.train_dataset, self.args)

    def evaluate(
        self,
        eval_dataset: RankingSet | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Full-ranking metrics, logged and passed to the callbacks' ``on_evaluate``.

        Returns:
            ``{f"{metric_key_prefix}_{name}": value}``, e.g. ``eval_ndcg@10``, plus ``..._runtime``.
        """
        ranking = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(ranking, RankingSet):
            raise ValueError(
                f"`eval_dataset` must be a genrec RankingSet, got {type(ranking).__name__}; "
                "build one with RankingSet.from_split(split.valid, item_index, max_length=...)"
            )
        start = time.time()
        metrics = full_ranking_metrics(
            self.model,
            ranking,
            ks=getattr(self.args, "eval_ks", (5, 10, 20)),
            batch_size=self.args.per_device_eval_batch_size,
            exclude_history=getattr(self.args, "exclude_history_items", False),
            show_progress=self.is_local_process_zero() and not self.args.disable_tqdm,
            description=f"{metric_key_prefix} ranking",
        )
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def _broadcast_flag(flag: bool) -> bool:
    """Make every process agree with process 0 (avoids a hang when only one rank would stop)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tensor = torch.tensor([int(flag)], dtype=torch.long)
        torch.distributed.broadcast(tensor, src=0)
        return bool(tensor.item())
    return flag


class BestModelCallback(TrainerCallback):
    """Track the best validation metric, early-stop after ``patience`` evaluations without
    improvement, and load the best weights back into the model when training ends.

    The best weights are kept in memory (a CPU copy of the state dict), so no intermediate
    checkpoints are written.

    Args:
        metric: key in the evaluation metrics, e.g. ``"eval_ndcg@10"`` (higher is better).
        patience: evaluations without improvement before stopping; ``None`` = never stop early.
    """

    def __init__(self, metric: str = "eval_ndcg@10", patience: int | None = 10):
        self.metric = metric
        self.patience = patience
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.best_epoch: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, float] | None = None  # the whole evaluation of the best weights
        self.bad_evaluations = 0

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.metric not in metrics:
            raise ValueError(f"early-stopping metric {self.metric!r} not in evaluation metrics {sorted(metrics or {})}")
        value = float(metrics[self.metric])
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_step, self.best_epoch = value, state.global_step, state.epoch
            self.best_state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}
            self.best_metrics = dict(metrics)
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
            if self.patience is not None and self.bad_evaluations >= self.patience:
                logger.info(
                    f"early stopping: {self.metric} did not improve for {self.bad_evaluations} evaluations "
                    f"(best {self.best_value:.5f} at epoch {self.best_epoch})"
                )
                control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.best_state is not None and model is not None:
            model.load_state_dict(self.best_state)
            logger.info(f"restored the best weights ({self.metric}={self.best_value:.5f}, epoch {self.best_epoch})")
        return control


class TimeBudgetCallback(TrainerCallback):
    """Stop training once ``seconds`` have passed, evaluating the last weights one more time.

    Args:
        seconds: wall-clock training budget measured from ``on_train_begin``.
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start: float | None = None
        self.stopped_early = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        over = self.start is not None and time.monotonic() - self.start > self.seconds
        if _broadcast_flag(over) and not control.should_training_stop:
            logger.info(f"time budget of {self.seconds:.0f}s reached at step {state.global_step}; stopping")
            self.stopped_early = True
            control.should_training_stop = True
            if args.eval_strategy != "no":
                control.should_evaluate = True
        return control


def check_marks(marks: Sequence[float], name: str = "marks_minutes") -> list[float]:
    """Validate wall-clock marks: a list of positive, strictly increasing numbers (minutes).

    Raises:
        ValueError: naming ``name``, when the marks are not a non-empty list of increasing positive numbers.
    """
    if isinstance(marks, (str, bytes)) or not isinstance(marks, Sequence) or len(marks) == 0:
        raise ValueError(f"`{name}` ({marks!r}) must be a non-empty list of minutes, e.g. [1, 2, 5, 10]")
    for value in marks:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
            raise ValueError(f"`{name}` ({list(marks)!r}) must hold positive numbers of minutes; got {value!r}")
    if any(later <= earlier for earlier, later in zip(marks, marks[1:])):
        raise ValueError(f"`{name}` ({list(marks)!r}) must be strictly increasing")
    return [float(value) for value in marks]


class WallClockEvalCallback(TrainerCallback):
    """Validate when the training wall-clock time first passes each mark, and record a time-to-quality curve.

    The clock starts at ``on_train_begin`` and includes validation time, like :class:`TimeBudgetCallback`. At the
    end of the first step after a mark the callback asks the Trainer for a validation (``should_evaluate``);
    several marks passed within one step give one validation, and a mark passed during any validation (a slow
    one) counts as served by it, not as one more validation of the same weights. Every validation -- the marks' and the Trainer's
    own per-epoch or final ones -- adds a point ``[minutes, value]`` to :attr:`curve`, where ``minutes`` is when
    that validation *started* (the weights it measured) and ``value`` is ``metric``. Put it before
    :class:`BestModelCallback` or after, either way the mark validations count for the best state (and for
    early-stopping patience).

    Args:
        marks_minutes: increasing positive minutes, e.g. ``[1, 2, 5, 10]``; ``None`` or empty = only record
            the Trainer's own validations.
        metric: evaluation key recorded in the curve, e.g. ``"eval_ndcg@10"``.
        clock: seconds source (default ``time.monotonic``; tests pass a fake clock).

    Attributes:
        curve: ``[[minutes, value], ...]`` in the order the validations ran.
        steps: the global step of each curve point.

    Raises:
        ValueError: invalid marks (see :func:`check_marks`).
    """

    def __init__(self, marks_minutes: Sequence[float] | None = None, metric: str = "eval_ndcg@10", *,
                 clock: Callable[[], float] = time.monotonic):
        self.marks = check_marks(marks_minutes) if marks_minutes else []
        self.metric = metric
        self.clock = clock
        self.curve: list[list[float]] = []
        self.steps: list[int] = []
        self.start: float | None = None
        self._next_mark = 0

    def elapsed_minutes(self) -> float:
        """Minutes since ``on_train_begin`` (0 before it)."""
        return 0.0 if self.start is None else (self.clock() - self.start) / 60.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.clock()
        self._next_mark = 0
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if not self.marks:  # only recording: no per-step collective under DDP
            return control
        elapsed = self.elapsed_minutes()
        passed = self._next_mark < len(self.marks) and elapsed >= self.marks[self._next_mark]
        if _broadcast_flag(passed):
            while self._next_mark < len(self.marks) and self.marks[self._next_mark] <= elapsed:
                self._next_mark += 1
            control.should_evaluate = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.metric not in metrics:
            raise ValueError(f"curve metric {self.metric!r} not in evaluation metrics {sorted(metrics or {})}")
        # the validation started `runtime` seconds ago; its weights are those of that moment
        runtime_minutes = float(metrics.get("eval_runtime", 0.0)) / 60.0
        self.curve.append([round(max(self.elapsed_minutes() - runtime_minutes, 0.0), 4), float(metrics[self.metric])])
        self.steps.append(int(state.global_step))
        # a mark the clock passed DURING this validation is served by it (the weights have not changed since):
        # without this, a long validation just before a mark was followed by a second one of the same weights
        elapsed = self.elapsed_minutes()
        while self._next_mark < len(self.marks) and self.marks[self._next_mark] <= elapsed:
            self._next_mark += 1
        return control


class LogToFileCallback(TrainerCallback):
    """Write every Trainer log record (loss, learning rate, eval metrics) as a JSON line to the logger."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            logger.info("log " + json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}, sort_keys=True))
        return control
