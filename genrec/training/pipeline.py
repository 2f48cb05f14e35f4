"""One training run, end to end: data -> model -> Trainer -> full-ranking metrics -> output folder.

``genrec train``, ``genrec quickstart`` and ``scripts/train.py`` all call :func:`run_training`.

The run folder (built in a temporary sibling and swapped in only when the run succeeds)::

    OUTPUT/
      config.yaml            the run config as given (+ overrides); `genrec train --config` re-runs it
      resolved_config.json   every value actually used (full model config, data and training arguments)
      checkpoint/            save_pretrained folder: config.json, model.safetensors, item_ids.json
      metrics.json           flat keys: "valid/ndcg@10", "test/recall@10", "train/seconds", "machine/cpu", ...,
                             "curve/valid/ndcg@10": [[minutes, value], ...] of every validation during training
                             (per epoch and at `training.eval_at_minutes`)
      log_history.json       the Trainer's log records (loss, learning rate, eval metrics per epoch)
      train.log              the run's log

Models that declare ``requires_training = False`` (the popularity and text-kNN baselines) are fitted by
:func:`build_model` and never see the ``Trainer``: same run folder, ``train/stopped_by`` = ``"fitted"``, zero
steps, and a one-point curve at their fit time.

A run holds a lock on ``OUTPUT`` (a second run with the same ``--output`` is refused while it lasts)
and removes the staging folders that killed runs left. A run that fails or is interrupted leaves
``OUTPUT`` as it was (nothing half-written) and appends its log and the error to ``OUTPUT.failed.log``
beside it. With ``training.save_strategy`` other than ``no`` the Trainer's checkpoints go to
``OUTPUT.checkpoints/`` (kept by a kill, removed when the run folder is in place) and ``resume=True``
continues from the newest one (see :mod:`genrec.training.resume`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging as std_logging
import os
import platform
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import set_seed
from transformers.utils import logging

from genrec.models.registry import get_model_record
from genrec.training.arguments import RunConfig
from genrec.training.callbacks import MoeLoggingCallback, use_compact_console
from genrec.training.collators import NextItemCollator, NextItemDataset
from genrec.training.resume import (
    ResumeStateCallback,
    checkpoints_folder,
    prepare_checkpoints,
    restore_state,
    saves_checkpoints,
)
from genrec.training.trainer import (
    BestModelCallback,
    LogToFileCallback,
    RankingSet,
    RecommendationTrainer,
    TimeBudgetCallback,
    WallClockEvalCallback,
    full_ranking_metrics,
    random_cut_sampler,
)
from genrec.utils.io import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    check_output_folder,
    clean_stale_staging,
    output_lock,
    replace_directory,
    staging_directory,
)
from genrec.utils.runtime import finish_wandb, is_main_process

__all__ = ["run_training", "prepare_output", "machine_info", "build_model", "load_split", "evaluate_checkpoint",
           "load_checkpoint", "check_checkpoint_files", "log_to_file", "resolve_checkpoint"]

logger = logging.get_logger(__name__)

LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoint"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, torch threads and versions (recorded beside every metric)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import transformers

    return {
        "machine/cpu": cpu,
        "machine/cpu_count": os.cpu_count() or 0,
        "machine/torch_threads": torch.get_num_threads(),
        "machine/device": "cuda" if torch.cuda.is_available() else "cpu",
        "machine/platform": platform.platform(),
        "machine/python": platform.python_version(),
        "machine/torch": torch.__version__,
        "machine/transformers": transformers.__version__,
    }


def prepare_output(output: str | os.PathLike, *, overwrite: bool = False,
                   protect: dict[str, str | os.PathLike] | None = None) -> Path:
    """Check a run's output folder before any work starts (see :func:`genrec.utils.io.check_output_folder`)."""
    return check_output_folder(output, overwrite=overwrite, protect=protect)


def load_split(dataset: str, max_users: int | None = None, *, keep_duplicates: bool = False, **load_options):
    """Load a dataset and its leave-one-out split, optionally keeping only the first ``max_users`` users.

    ``keep_duplicates`` and ``load_options`` (``user_col``, ``item_col``, ``time_col``, ``min_user_interactions``,
    ... : ``DataArguments.load_options()``) are ``load_dataset``'s: duplicate events are dropped (and counted) by
    default.

    Returns:
        ``(data, train_sequences, valid, test)``; the catalog is always the full one.
    """
    from genrec.data import leave_one_out, load_dataset

    data = load_dataset(dataset, keep_duplicates=keep_duplicates, **load_options)
    split = leave_one_out(data)
    train_sequences, valid, test = split.train_sequences, split.valid, split.test
    if max_users is not None and max_users < data.num_users:
        keep = set(data.user_ids[:max_users])
        train_sequences = {user: items for user, items in train_sequences.items() if user in keep}
        valid = valid.filter(lambda row: row["user_id"] in keep)
        test = test.filter(lambda row: row["user_id"] in keep)
    return data, train_sequences, valid, test


def build_model(model_type: str, model_kwargs: dict[str, Any], item_ids: list[str], catalog=None,
                train_sequences=None, *, seed: int = 0):
    """Instantiate the configured model for a catalog: the builder of its registry record.

    P5 / OneRec first fit their item tokenizer on ``catalog`` and ``train_sequences`` (training part only);
    the popularity baseline counts ``train_sequences`` and text-kNN embeds the ``catalog`` texts: both come
    back fitted (``requires_training = False``).

    Raises:
        ValueError: unknown ``model_type``, a missing catalog / training sequences, or invalid architecture values.
    """
    return get_model_record(model_type).build(model_kwargs, item_ids=item_ids, catalog=catalog,
                                              train_sequences=train_sequences, seed=seed)


@contextlib.contextmanager
def log_to_file(path: Path):
    """Send genrec INFO and transformers WARNING records to ``path`` for the duration of the block."""
    handler = std_logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(std_logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    genrec_logger, hf_logger = std_logging.getLogger("genrec"), std_logging.getLogger("transformers")
    old_level = genrec_logger.level
    genrec_logger.setLevel(std_logging.INFO)
    handler.setLevel(std_logging.INFO)
    genrec_logger.addHandler(handler)
    hf_handler = std_logging.FileHandler(path, encoding="utf-8")
    hf_handler.setFormatter(handler.formatter)
    hf_handler.setLevel(std_logging.WARNING)
    hf_logger.addHandler(hf_handler)
    try:
        yield
    finally:
        genrec_logger.removeHandler(handler)
        hf_logger.removeHandler(hf_handler)
        genrec_logger.setLevel(old_level)
        handler.close()
        hf_handler.close()


@contextlib.contextmanager
def _progress_bars(enabled: bool):
    """``training.disable_tqdm`` also silences transformers' own bars (loading/writing weights) for the run."""
    was_enabled = logging.is_progress_bar_enabled()
    if not enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            logging.enable_progress_bar()


@contextlib.contextmanager
def _wandb_dir(folder: Path | None):
    """Point W&B's files into the run folder for this run only (unless WANDB_DIR is set by the user)."""
    if folder is None or "WANDB_DIR" in os.environ:
        yield
        return
    os.environ["WANDB_DIR"] = str(folder)
    try:
        yield
    finally:
        os.environ.pop("WANDB_DIR", None)


def run_training(run: RunConfig, output: str | os.PathLike, *, overwrite: bool = False,
                 resume: bool = False) -> dict[str, Any]:
    """Train and evaluate one configured model; write the run folder atomically.

    Args:
        run: the parsed config (:func:`genrec.training.arguments.load_run_config`).
        output: run folder to create; its parent must exist.
        overwrite: replace a non-empty ``output`` (only once the new run has succeeded).
        resume: continue from the newest complete checkpoint in ``OUTPUT.checkpoints/`` (same config only).

    Returns:
        the metrics written to ``metrics.json``.

    Raises:
        FileNotFoundError / FileExistsError / NotADirectoryError: see :func:`prepare_output`.
        OutputInUseError: another run holds ``output``.
        UserInputError: ``resume`` with another config, or an interrupted run's checkpoints without ``resume``.
        FileExistsError: something other than a genrec run filled ``output`` (without ``overwrite``)
            while this run trained; this run's folder is kept as ``OUTPUT.kept-<time>-<pid>``.
        ValueError: invalid data or config values.
    """
    output = prepare_output(output, overwrite=overwrite, protect=_protected_inputs(run))
    if "wandb" in (run.training.report_to or []):
        os.environ.setdefault("WANDB_MODE", "offline")  # never reach the network unless asked to
    checkpoints = checkpoints_folder(output) if saves_checkpoints(run.training) else None
    if not is_main_process():
        # Other ranks train in lockstep but write nothing (the Trainer only saves on process 0; each rank adds
        # its RNG state to the checkpoints).
        run.training.output_dir = str(checkpoints or output)
        resume_from = prepare_checkpoints(output, run.to_dict(), resume=resume, overwrite=overwrite,
                                          main_process=False) if checkpoints else None
        loaded = load_split(run.data.dataset, run.data.max_users, **run.data.load_options())
        return _train_and_evaluate(run, None, loaded, resume_from=resume_from)

    with output_lock(output):
        for leftover in clean_stale_staging(output):  # a killed run's; a live one would hold the lock
            logger.info(f"cleaned up {str(leftover)!r}, left by an interrupted run")
        prepare_output(output, overwrite=overwrite)  # again, now that no other run can change it
        resume_from = None
        if checkpoints is not None:
            resume_from = prepare_checkpoints(output, run.to_dict(), resume=resume, overwrite=overwrite)
        elif resume:
            logger.warning("--resume: `training.save_strategy` is 'no', so this run saves no checkpoints; "
                           "starting from step 0")
        # Bad data is bad input: read it before anything is written (one line, nothing on disk).
        loaded = load_split(run.data.dataset, run.data.max_users, **run.data.load_options())
        staging = staging_directory(output)
        log_path = staging / LOG_FILE
        try:
            with log_to_file(log_path), _progress_bars(not run.training.disable_tqdm):
                run.training.output_dir = str(checkpoints or staging)  # where the Trainer saves its checkpoints
                atomic_write_text(staging / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))
                with _wandb_dir(staging if "wandb" in (run.training.report_to or []) else None):
                    metrics = _train_and_evaluate(run, staging, loaded, resume_from=resume_from)
        except BaseException as error:
            _append_failed_log(output, log_path, error)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not overwrite and output.is_dir() and any(output.iterdir()):
            # Only a writer that ignores the lock gets here; keep both its files and ours.
            kept = output.parent / f"{output.name}.kept-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            os.replace(staging, kept)
            raise FileExistsError(
                f"output folder {str(output)!r} was filled by something else while this run trained; "
                f"this run's results are in {str(kept)!r}"
            )
        replace_directory(staging, output)
        if checkpoints is not None:  # the run folder holds the result now
            shutil.rmtree(checkpoints, ignore_errors=True)
    return metrics


def _protected_inputs(run: RunConfig) -> dict[str, Path]:
    """The dataset a run reads (replacing an --output holding it would delete it)."""
    from genrec.data.registry import resolve_dataset_path

    try:
        return {"the dataset": resolve_dataset_path(run.data.dataset)[1]}
    except FileNotFoundError:  # reported by load_split with the full message
        return {}


def _append_failed_log(output: Path, log_path: Path, error: BaseException) -> None:
    """Append the failed run's log and its error to ``OUTPUT.failed.log`` (earlier failures are kept)."""
    failed_log = output.parent / f"{output.name}.failed.log"
    log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    with open(failed_log, "a", encoding="utf-8") as handle:
        handle.write(f"===== run {reason} at {stamp} UTC (pid {os.getpid()}) =====\n{log}")
        handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))


@dataclasses.dataclass
class _Trained:
    """What training produced, for ``metrics.json`` (the model holds the best-validation weights)."""

    model: Any
    seconds: float
    epochs: float
    global_step: int
    final_loss: float | None
    best_epoch: float | None
    best_value: float | None
    stopped_by: str  # "max_epochs" | "time_budget" | "early_stopping" | "fitted" (no Trainer)
    num_examples: int
    curve: list[list[float]]  # [[minutes, valid metric], ...] of every validation during training
    log_history: list[dict[str, Any]]
    # the Trainer's validation of the weights the model holds now (the best ones): reused, not ranked again
    best_valid_metrics: dict[str, float] | None = None


def training_data(model, train_sequences, item_index, *, max_length: int, seed: int):
    """The model's training rows and collator, as ``genrec train`` builds them.

    Models with ``build_training_data`` (P5/OneRec windows, BIGRec prompts) make their own; the others get one
    row per user sequence in which every position predicts its next item (:class:`NextItemDataset`).

    Returns:
        ``(dataset, collator)``.
    """
    if hasattr(model, "build_training_data"):
        return model.build_training_data(train_sequences, seed=seed)
    return NextItemDataset(list(train_sequences.values()), item_index, max_length=max_length), NextItemCollator()


def _examples_per_epoch(train_dataset, args) -> int:
    """Training examples one epoch holds: every row, or one window per user under ``train_targets: random_cut``."""
    if getattr(args, "train_targets", "all_windows") == "random_cut":
        return len(random_cut_sampler(train_dataset, args))
    return len(train_dataset)


def _train(model, args, train_sequences, item_index, valid_set: RankingSet, max_length: int,
           resume_from: Path | None = None) -> _Trained:
    """Train with :class:`RecommendationTrainer`, validating per ``eval_strategy`` and at ``eval_at_minutes``;
    ``resume_from``: a complete checkpoint of :mod:`genrec.training.resume` to continue from."""
    train_dataset, collator = training_data(model, train_sequences, item_index, max_length=max_length, seed=args.seed)

    metric = f"eval_{args.metric_for_early_stopping}"
    best = BestModelCallback(metric=metric, patience=args.early_stopping_patience)
    clock = WallClockEvalCallback(args.eval_at_minutes, metric=metric)
    callbacks = [clock, best, LogToFileCallback()]
    budget = TimeBudgetCallback(args.max_train_seconds) if args.max_train_seconds else None
    if budget is not None:
        callbacks.append(budget)
    resume_state = ResumeStateCallback(best, clock, budget)
    if saves_checkpoints(args):
        callbacks.append(resume_state)  # last: its on_train_begin shifts the clocks the others started
    if resume_from is not None:
        restore_state(resume_from, resume_state)
    trainer = RecommendationTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=valid_set,
        data_collator=collator,
        callbacks=callbacks,
    )
    # MoE models (P5/OneRec/RecGPT with sparse layers): router losses + expert load, before the reporting callbacks
    trainer.callback_handler.callbacks.insert(0, MoeLoggingCallback(model))
    use_compact_console(trainer)  # one line per log record; the full record goes to train.log and W&B
    start = time.time()
    train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    train_seconds = resume_state.elapsed_seconds + time.time() - start  # a resumed run adds the time before
    if best.best_state is None:  # eval_strategy "no" and no marks: the final weights are the result
        logger.info("no validation during training; keeping the final weights")
    stopped_by = "max_epochs"
    if budget is not None and budget.stopped_early:
        stopped_by = "time_budget"
    elif best.patience is not None and best.bad_evaluations >= best.patience:
        stopped_by = "early_stopping"
    return _Trained(
        model=trainer.model,
        seconds=train_seconds,
        epochs=float(trainer.state.epoch or 0.0),
        global_step=int(trainer.state.global_step),
        final_loss=float(train_output.training_loss),
        best_epoch=float(best.best_epoch) if best.best_epoch is not None else None,
        best_value=best.best_value,
        stopped_by=stopped_by,
        num_examples=_examples_per_epoch(train_dataset, args),
        curve=clock.curve,
        log_history=trainer.state.log_history,
        best_valid_metrics=_unprefixed(best.best_metrics),  # None when no validation ran, or a resume restored the best
    )


def _unprefixed(metrics: dict[str, float] | None, prefix: str = "eval_") -> dict[str, float] | None:
    """The Trainer's ``eval_*`` validation metrics under :func:`full_ranking_metrics`' own names (runtime dropped)."""
    if metrics is None:
        return None
    return {key[len(prefix):]: value for key, value in metrics.items()
            if key.startswith(prefix) and key != f"{prefix}runtime"}


def _train_and_evaluate(run: RunConfig, staging: Path | None, loaded, *,
                        resume_from: Path | None = None) -> dict[str, Any]:
    args = run.training
    set_seed(args.seed)
    logger.info(f"run config: {run.to_dict()}")
    data, train_sequences, valid, test = loaded
    logger.info(f"data {data.name}: {len(train_sequences)} users, {data.num_items} items")
    if data.duplicates_dropped:  # the loader warned before this log file existed: say it here too
        logger.warning(f"data {data.name}: dropped {data.duplicates_dropped} duplicate events (same user, item and "
                       "timestamp) before splitting; `data.keep_duplicates: true` keeps them")

    record = get_model_record(run.model_type)
    build_start = time.time()
    model = build_model(run.model_type, run.model_kwargs, data.item_ids, catalog=data.catalog,
                        train_sequences=train_sequences)
    build_seconds = time.time() - build_start
    max_length = getattr(model.config, "max_position_embeddings", None) or model.config.max_history_items
    valid_set = RankingSet.from_split(valid, data.item_index, max_length=max_length)
    test_set = RankingSet.from_split(test, data.item_index, max_length=max_length)
    if getattr(model, "requires_training", True):
        trained = _train(model, args, train_sequences, data.item_index, valid_set, max_length, resume_from)
    else:  # popularity / text-kNN: build_model fitted them; there is nothing for a Trainer to do
        logger.info(f"model.type {run.model_type!r} was fitted in {build_seconds:.1f}s without gradient steps; the "
                    "Trainer is skipped (num_train_epochs, learning_rate and the other optimiser values are unused)")
        trained = _Trained(model=model, seconds=build_seconds, epochs=0.0, global_step=0, final_loss=None,
                           best_epoch=None, best_value=None, stopped_by="fitted",
                           num_examples=len(train_sequences), curve=[],
                           log_history=[{"step": 0, "epoch": 0.0, "fit_seconds": round(build_seconds, 3)}])
    model = trained.model
    tuned, swept = {}, None
    if args.text_prior_weights is not None:  # chosen on VALIDATION, then valid and test are reported with it
        from genrec.training.trainer import tune_text_prior

        metric = args.metric_for_early_stopping
        sweep_start = time.time()
        weight, by_weight = tune_text_prior(model, valid_set, args.text_prior_weights, metric=metric,
                                            ks=args.eval_ks, batch_size=args.per_device_eval_batch_size,
                                            exclude_history=args.exclude_history_items)
        swept = (by_weight[weight], time.time() - sweep_start)  # the chosen weight's validation metrics
        tuned = {"tune/text_prior_weight": weight,
                 f"tune/valid/{metric}_by_text_prior_weight": {str(w): values[metric] for w, values in by_weight.items()}}
        logger.info(f"text prior weight {weight} chosen on validation ({metric} by weight: "
                    f"{tuned[f'tune/valid/{metric}_by_text_prior_weight']})")
    evaluation = {}
    for name, ranking in (("valid", valid_set), ("test", test_set)):
        eval_start = time.time()
        if name == "valid" and swept is None and trained.best_valid_metrics is not None:
            # the model holds the best-validation weights: the Trainer already ranked validation with them
            evaluation.update({f"valid/{key}": value for key, value in trained.best_valid_metrics.items()})
            evaluation["valid/num_users"] = len(ranking)
            evaluation["valid/seconds"] = 0.0
            continue
        if name == "valid" and swept is not None:  # the sweep already ranked validation with the chosen weight
            values, seconds = swept
            evaluation.update({f"valid/{key}": value for key, value in values.items()})
            evaluation["valid/num_users"] = len(ranking)
            evaluation["valid/seconds"] = round(seconds, 3)
            continue
        values = full_ranking_metrics(
            model,
            ranking,
            ks=args.eval_ks,
            batch_size=args.per_device_eval_batch_size,
            exclude_history=args.exclude_history_items,
            show_progress=staging is not None and not args.disable_tqdm,
            description=f"{name} ranking",
        )
        evaluation.update({f"{name}/{key}": value for key, value in values.items()})
        evaluation[f"{name}/num_users"] = len(ranking)
        evaluation[f"{name}/seconds"] = round(time.time() - eval_start, 3)

    from genrec.models.layers import count_active_parameters  # not at import: genrec.models loads every model

    metric = args.metric_for_early_stopping
    if trained.stopped_by == "fitted":  # one point: the fitted model's validation, when the fit ended
        trained.best_value = evaluation[f"valid/{metric}"]
        trained.curve = [[round(trained.seconds / 60.0, 4), trained.best_value]]
    metrics: dict[str, Any] = {
        **evaluation,
        **tuned,
        f"curve/valid/{metric}": trained.curve,
        "curve/eval_at_minutes": list(args.eval_at_minutes or []),
        "train/seconds": round(trained.seconds, 3),
        "train/epochs": trained.epochs,
        "train/global_step": trained.global_step,
        "train/final_loss": trained.final_loss,
        "train/best_epoch": trained.best_epoch,
        "train/best_valid_metric": trained.best_value,
        "train/stopped_by": trained.stopped_by,
        "train/resumed_from_step": int(resume_from.name.split("-")[1]) if resume_from is not None else None,
        "train/num_examples": trained.num_examples,
        "train/world_size": int(args.world_size),
        "model/build_seconds": round(build_seconds, 3),
        "data/name": data.name,
        "data/num_users": len(valid_set),
        "data/num_items": data.num_items,
        "data/duplicates_dropped": data.duplicates_dropped,
        "model/type": run.model_type,
        "model/loss_type": getattr(model.config, "loss_type", None),
        "model/num_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "model/num_active_parameters": count_active_parameters(model),  # per token: MoE experts not routed to excluded
        **(_item_tokenizer_metrics(model) if record.kind == "seq2seq" else {}),
        "eval/exclude_history_items": bool(args.exclude_history_items),
        "eval/protocol": "leave-one-out, full ranking over the catalog",
        **machine_info(),
    }
    if staging is None:
        return metrics

    resolved = {
        "model": {"type": run.model_type, **model.config.to_dict()},
        "data": dataclasses.asdict(run.data),
        "training": args.to_dict(),
    }
    atomic_write_json(staging / "resolved_config.json", resolved)
    from genrec.models.model_card import set_card_info

    set_card_info(  # the checkpoint's model card (README.md) shows the data and the measured metrics
        model, dataset=data.name, metrics=evaluation, written_by=f"genrec train (model.type {run.model_type})",
        data={"num_users": len(valid_set), "num_items": data.num_items, "max_users": run.data.max_users},
        notes=[f"validation and test over {len(valid_set):,} / {len(test_set):,} users"
               + (", history items excluded" if args.exclude_history_items else ", history items not excluded")])
    with atomic_directory(staging / CHECKPOINT_DIR) as checkpoint:
        model.save_pretrained(checkpoint)
    atomic_write_json(staging / "log_history.json", trained.log_history)
    atomic_write_json(staging / "metrics.json", metrics)
    logger.info(f"metrics: {metrics}")
    finish_wandb()
    return metrics


def _item_tokenizer_metrics(model) -> dict[str, Any]:
    """Item tokenizer facts of a P5/OneRec model, recorded beside its metrics."""
    return {
        "model/item_tokenizer": model.config.item_tokenizer_method,
        "model/code_length": int(model.item_tokenizer.code_length),
        "model/codebook_sizes": list(model.item_tokenizer.codebook_sizes),
        "model/collision_rate_before": model.item_tokenizer.stats.get("collision_rate_before"),
        "model/ffn_type": model.config.ffn_type,
        "model/num_beams": model.config.num_beams,
    }


class _Records(std_logging.Handler):
    def __init__(self):
        super().__init__(std_logging.WARNING)
        self.records: list[std_logging.LogRecord] = []

    def emit(self, record: std_logging.LogRecord) -> None:
        self.records.append(record)


def _load_checkpoint_model(auto_class, path: Path):
    """``auto_class.from_pretrained(path)``; a config that does not fit the weights is one ``ValueError``.

    transformers prints a multi-line load report and then raises a bare ``RuntimeError`` when, e.g., a
    damaged config.json gives other shapes than the weights; the report's rows go into the message
    instead. On success the held-back warnings are logged as usual.
    """
    captured = _Records()
    hf_logger = std_logging.getLogger("transformers")
    logging.disable_default_handler()
    hf_logger.addHandler(captured)
    try:
        with _progress_bars(False):  # a recommender loads in a blink; the bar would only precede an error line
            model = auto_class.from_pretrained(path)
    except (OSError, RuntimeError, ValueError) as error:
        rows = [" ".join(line.replace("|", " ").split()) for record in captured.records
                for line in record.getMessage().splitlines()
                if "|" in line and any(word in line for word in ("MISMATCH", "MISSING", "UNEXPECTED"))]
        if isinstance(error, RuntimeError) and not rows:
            raise  # not a load-report failure: a bug keeps its traceback
        detail = "; ".join(rows)[:400] or " ".join(str(error).split())[:400]
        raise ValueError(
            f"cannot load the model in {str(path)!r}: its config.json does not fit its weights ({detail})"
        ) from None
    finally:
        hf_logger.removeHandler(captured)
        logging.enable_default_handler()
    for record in captured.records:
        hf_logger.handle(record)
    return model


def resolve_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint") -> Path:
    """The saved-model folder of ``path``: ``path`` itself, or the ``checkpoint/`` of a run folder; a Hub repo id
    (``owner/name[@revision]``) that is no local path is downloaded first (:func:`genrec.utils.hub.resolve_folder`).

    Raises:
        FileNotFoundError: neither holds a ``config.json``, or the repo could not be downloaded.
    """
    from genrec.utils.hub import resolve_folder

    folder = resolve_folder(path, what=what)
    if (folder / CHECKPOINT_DIR / "config.json").is_file():
        return folder / CHECKPOINT_DIR
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} has no config.json (nor {CHECKPOINT_DIR}/config.json)")
    return folder


def check_checkpoint_files(folder: str | os.PathLike) -> None:
    """Read every ``*.json`` and ``*.safetensors`` header under a saved model folder before loading it.

    transformers reports a corrupt config as a multi-line OSError and safetensors as a bare
    ``SafetensorError`` without the file; checked here, each names its file.

    Raises:
        ValueError: a file that is not UTF-8 JSON, or not a complete safetensors file.
    """
    import json

    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).rglob("*")):
        if path.suffix == ".json" and path.is_file():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"{str(path)!r} is not valid JSON ({error}); the checkpoint is damaged") from None
        elif path.suffix == ".safetensors" and path.is_file():
            try:
                with safe_open(str(path), framework="pt") as handle:
                    handle.keys()
            except (SafetensorError, OSError, ValueError) as error:
                raise ValueError(
                    f"{str(path)!r} is not a complete safetensors file ({error}); the checkpoint is damaged"
                ) from None


def load_checkpoint(checkpoint: str | os.PathLike):
    """Load any genrec checkpoint with its catalog: a ``save_pretrained`` folder or a run folder holding ``checkpoint/``.

    What ``genrec evaluate`` and ``genrec recommend`` load. Every JSON / safetensors file is checked first (a
    damaged one is named), the model comes from ``AutoModel.from_pretrained`` (genrec's types are registered).

    Returns:
        ``(model, folder)``: the model in eval mode, bound to its catalog, and the folder it was loaded from.

    Raises:
        FileNotFoundError: no config.json there (nor in ``checkpoint/``).
        ValueError: a damaged file, a config that does not fit the weights, or no catalog saved with the model.
    """
    from transformers import AutoModel  # `import genrec` registered genrec's models with it

    path = resolve_checkpoint(checkpoint)
    check_checkpoint_files(path)
    model = _load_checkpoint_model(AutoModel, path)
    if getattr(model, "item_ids", None) is None:
        raise ValueError(f"checkpoint {str(path)!r} has no item_ids.json; cannot map dataset ids to model rows")
    return model.eval(), path


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    dataset: str,
    *,
    splits: tuple[str, ...] = ("test",),
    ks: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 512,
    exclude_history: bool = False,
    max_users: int | None = None,
    show_progress: bool = False,
    keep_duplicates: bool = False,
    dataset_source: str | None = None,
    load_options: dict[str, Any] | None = None,
    text_prior_weights: list[float] | None = None,
) -> dict[str, Any]:
    """Leave-one-out full-ranking metrics of a saved model on a dataset.

    Args:
        checkpoint: a ``save_pretrained`` folder, or a run folder holding ``checkpoint/``.
        dataset: dataset name or folder (its catalog must contain the model's items).
        splits: any of "valid", "test".
        keep_duplicates: ``load_dataset``'s (duplicate events are dropped by default, as in training); the count
            dropped is ``data/duplicates_dropped`` in the result.
        show_progress: progress bars of the ranking.
        dataset_source: where ``dataset`` came from (e.g. the run folder's config.yaml), for error messages.
        load_options: more ``load_dataset`` options (table columns, k-core), as the model was trained with.
        text_prior_weights: item-layout RecGPT or a P5 / OneRec item head: first choose ``text_prior_weight`` among these on the VALIDATION
            split (by ndcg@10, :func:`~genrec.training.trainer.tune_text_prior`), then report ``splits`` with it;
            the result gains ``tune/text_prior_weight`` and ``tune/valid/ndcg@10_by_text_prior_weight``.

    Returns:
        flat metrics ``{"test/recall@10": ..., ...}``.

    Raises:
        FileNotFoundError: no checkpoint there.
        ValueError: unknown split, or the model's catalog does not match the dataset's.
    """
    for split_name in splits:
        if split_name not in ("valid", "test"):
            raise ValueError(f"`split` ({split_name!r}) must be one of ['valid', 'test']")
    model, path = load_checkpoint(checkpoint)
    try:
        data, _, valid, test = load_split(dataset, max_users, keep_duplicates=keep_duplicates, **(load_options or {}))
    except (ValueError, FileNotFoundError) as error:
        if dataset_source is None:
            raise
        kind = ValueError if isinstance(error, ValueError) else FileNotFoundError
        raise kind(f"{error} (the dataset named by {dataset_source}; pass --dataset)") from None
    unknown = [item for item in data.item_ids if item not in model.item_index]
    if unknown:
        source = f" (named by {dataset_source})" if dataset_source else ""
        catalog = path / "item_ids.json" if (path / "item_ids.json").is_file() else path
        raise ValueError(
            f"dataset {dataset!r}{source} has {len(unknown)} items not in the model's catalog {str(catalog)!r} "
            f"(e.g. {unknown[:3]}); evaluate on the dataset the model was trained on"
        )
    max_length = getattr(model.config, "max_position_embeddings", None) or model.config.max_history_items
    metrics: dict[str, Any] = {}
    if text_prior_weights is not None:
        from genrec.training.trainer import tune_text_prior

        weight, by_weight = tune_text_prior(
            model, RankingSet.from_split(valid, model.item_index, max_length=max_length), text_prior_weights,
            ks=ks, batch_size=batch_size, exclude_history=exclude_history, show_progress=show_progress)
        metrics["tune/text_prior_weight"] = weight
        metrics["tune/valid/ndcg@10_by_text_prior_weight"] = {str(w): v["ndcg@10"] for w, v in by_weight.items()}
    for split_name in splits:
        examples = valid if split_name == "valid" else test
        ranking = RankingSet.from_split(examples, model.item_index, max_length=max_length)
        values = full_ranking_metrics(
            model,
            ranking,
            ks=ks,
            batch_size=batch_size,
            exclude_history=exclude_history,
            show_progress=show_progress,
            description=f"{split_name} ranking",
        )
        metrics.update({f"{split_name}/{key}": value for key, value in values.items()})
        metrics[f"{split_name}/num_users"] = len(ranking)
    metrics["data/duplicates_dropped"] = data.duplicates_dropped
    return metrics
