"""Resumable checkpoints of ``genrec train``: where they live, when one is complete, how a run continues.

The Trainer writes its own checkpoints (``training.save_strategy: steps`` + ``training.save_steps: N``, or
``genrec train --save-steps N``): weights, optimizer, scheduler, RNG states and ``trainer_state.json`` in
``checkpoint-<step>/``. A run folder is built in a staging folder that a killed run loses, so the checkpoints
go to a sibling of the run folder that survives a kill::

    OUTPUT.checkpoints/
      config.yaml              the run config; `--resume` refuses any other
      checkpoint-<step>/       the Trainer's checkpoint, plus (written by :class:`ResumeStateCallback`)
        genrec_best_model.safetensors   the best validation weights so far (kept in memory during training)
        genrec_resume.json              genrec's callback state; written last and atomically: a checkpoint
                                        without it was cut short and is never resumed from

Only the newest complete checkpoint is kept. ``genrec train --resume`` continues from it with the same
optimizer, scheduler, RNG and data order (``Trainer.train(resume_from_checkpoint=...)``) and genrec's own state
(best weights and metric, early-stopping patience, validation curve, elapsed training time). The folder is
removed once the run folder is in place.

Wall-clock budget on resume: ``training.max_train_seconds`` (and ``eval_at_minutes``, the curve's minutes,
``train/seconds``) count the training time up to the checkpoint plus the resumed run's time. The time the
killed run spent after its last checkpoint is not counted (that work is done again), nor is the start-up of
the resumed process (data loading, model building).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback
from transformers.utils import logging

from genrec.utils.errors import UserInputError
from genrec.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["ResumeStateCallback", "checkpoints_folder", "complete_checkpoints", "prepare_checkpoints",
           "restore_state", "saves_checkpoints"]

logger = logging.get_logger(__name__)

STATE_FILE = "genrec_resume.json"
BEST_MODEL_FILE = "genrec_best_model.safetensors"
CONFIG_FILE = "config.yaml"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoints_folder(output: str | os.PathLike) -> Path:
    """``OUTPUT.checkpoints``, beside the run folder ``OUTPUT``."""
    output = Path(os.path.abspath(os.fspath(output)))
    return output.parent / f"{output.name}.checkpoints"


def saves_checkpoints(args) -> bool:
    """Whether the Trainer is set to save checkpoints (``training.save_strategy`` other than ``no``)."""
    return str(getattr(args.save_strategy, "value", args.save_strategy)) != "no"


def complete_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints in ``folder`` whose :data:`STATE_FILE` was written, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(match[1]), path) for path in folder.iterdir()
             if (match := _CHECKPOINT.fullmatch(path.name)) and (path / STATE_FILE).is_file()]
    return [path for _, path in sorted(found)]


def _differences(saved: Any, given: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(given, dict):
        keys = sorted(set(saved) | set(given), key=str)
        return [name for key in keys for name in _differences(saved.get(key), given.get(key), f"{prefix}{key}.")]
    return [] if saved == given else [prefix.rstrip(".")]


def prepare_checkpoints(output: Path, config: dict[str, Any], *, resume: bool, overwrite: bool,
                        main_process: bool = True) -> Path | None:
    """Check ``OUTPUT.checkpoints`` before a run (hold the output lock) and return the checkpoint to resume from.

    Args:
        output: the run folder.
        config: the run config (``RunConfig.to_dict()``); written to ``OUTPUT.checkpoints/config.yaml``.
        resume: ``--resume``: continue from the newest complete checkpoint (from step 0 when there is none).
        overwrite: ``--overwrite`` without ``--resume``: checkpoints of an earlier run are deleted.
        main_process: only the main process deletes or writes anything.

    Returns:
        the checkpoint folder to resume from, or ``None`` (start from step 0).

    Raises:
        UserInputError: ``--resume`` with a different config, or checkpoints of an interrupted run without
            ``--resume`` / ``--overwrite``.
    """
    folder = checkpoints_folder(output)
    saved_config = folder / CONFIG_FILE
    if folder.exists() and not resume:
        if not overwrite:
            raise UserInputError(
                f"{str(folder)!r} holds the checkpoints of an interrupted run; pass --resume to continue it "
                "or --overwrite to start again (deleting them)"
            )
        if main_process:
            shutil.rmtree(folder)
    start = None
    if resume and saved_config.is_file():
        previous = yaml.safe_load(saved_config.read_text(encoding="utf-8")) or {}
        changed = _differences(previous, config)
        if changed:
            raise UserInputError(
                f"--resume: the config differs from the interrupted run's {str(saved_config)!r} in {changed}; "
                "resume with the same config and --set values, or choose another --output"
            )
        complete = complete_checkpoints(folder)
        start = complete[-1] if complete else None
        if main_process:  # checkpoints cut short by the kill (no state file) are partial: drop them
            for path in folder.iterdir():
                if _CHECKPOINT.fullmatch(path.name) and path not in complete:
                    shutil.rmtree(path, ignore_errors=True)
    if resume:
        where = f"step {start.name.split('-')[1]} ({str(start)!r})" if start else "step 0 (no complete checkpoint)"
        logger.warning(f"--resume: continuing from {where}")
    if main_process:
        folder.mkdir(exist_ok=True)
        atomic_write_text(saved_config, yaml.safe_dump(config, sort_keys=False))
    return start


class ResumeStateCallback(TrainerCallback):
    """After each Trainer checkpoint, save genrec's callback state into it, then prune older checkpoints.

    Place it after the callbacks it restores (its ``on_train_begin`` runs after theirs).

    Args:
        best: the run's :class:`~genrec.training.trainer.BestModelCallback`.
        clock: the run's :class:`~genrec.training.trainer.WallClockEvalCallback` (its clock is the run's).
        budget: the run's :class:`~genrec.training.trainer.TimeBudgetCallback` or ``None``.
        elapsed_seconds: training time already spent before this process (from the resumed checkpoint).
    """

    def __init__(self, best, clock, budget=None, *, elapsed_seconds: float = 0.0):
        self.best, self.clock, self.budget = best, clock, budget
        self.elapsed_seconds = float(elapsed_seconds)
        self._next_mark = 0

    def on_train_begin(self, args, state, control, **kwargs):
        # the clocks started at this process's train(); move their start back by the time already trained
        self.clock.start -= self.elapsed_seconds
        self.clock._next_mark = self._next_mark  # genrec's own callback: the marks already passed stay passed
        if self.budget is not None:
            self.budget.start -= self.elapsed_seconds
        return control

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return control
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        best = self.best
        if best.best_state is not None:
            from safetensors.torch import save

            atomic_write_bytes(folder / BEST_MODEL_FILE,
                               save({name: tensor.contiguous() for name, tensor in best.best_state.items()}))
        atomic_write_json(folder / STATE_FILE, {
            "global_step": int(state.global_step),
            "elapsed_seconds": self.clock.elapsed_minutes() * 60.0,
            "best": {"value": best.best_value, "step": best.best_step, "epoch": best.best_epoch,
                     "bad_evaluations": best.bad_evaluations, "has_weights": best.best_state is not None},
            "curve": self.clock.curve, "curve_steps": self.clock.steps, "next_mark": self.clock._next_mark,
        })
        for older in complete_checkpoints(folder.parent)[:-1]:  # the newest complete one is all a resume needs
            shutil.rmtree(older, ignore_errors=True)
        return control


def restore_state(checkpoint: Path, callback: ResumeStateCallback) -> dict[str, Any]:
    """Load genrec's state saved in ``checkpoint`` into the run's callbacks (before ``trainer.train``).

    Returns:
        the saved state (``global_step``, ``elapsed_seconds``, ...).
    """
    state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    best, saved = callback.best, state["best"]
    best.best_value, best.best_step, best.best_epoch = saved["value"], saved["step"], saved["epoch"]
    best.bad_evaluations = int(saved["bad_evaluations"])
    if saved["has_weights"]:
        from safetensors.torch import load_file

        best.best_state = load_file(str(checkpoint / BEST_MODEL_FILE))
    callback.clock.curve = [list(point) for point in state["curve"]]
    callback.clock.steps = list(state["curve_steps"])
    callback._next_mark = int(state["next_mark"])
    callback.elapsed_seconds = float(state["elapsed_seconds"])
    return state
