"""Trainer callbacks for what a run shows: the MoE statistics every logging step and a one-line console.

* :class:`MoeLoggingCallback` adds genrec's one MoE log schema (:class:`genrec.models.layers.MoeStatistics`:
  ``moe/aux_loss``, ``moe/load/layer{i}/expert{j}``, ``moe/dropped_fraction``, ...) to every training log record of
  any model with sparse MoE blocks (P5, OneRec, RecGPT-MoE), so the reporters (W&B), ``log_history.json`` and
  ``train.log`` carry them.
* :class:`CompactProgressCallback` / :class:`CompactPrinterCallback` replace transformers' progress and printer
  callbacks' dictionary dump with one short line per record (:func:`format_log_line`); the full record still goes
  to the log file (:class:`genrec.training.trainer.LogToFileCallback`), ``log_history.json`` and W&B.
  :func:`use_compact_console` swaps them into a ``Trainer``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

__all__ = [
    "CompactPrinterCallback",
    "CompactProgressCallback",
    "MoeLoggingCallback",
    "format_log_line",
    "most_and_least_loaded",
    "use_compact_console",
]

_LOAD_KEY = re.compile(r"^moe/load/layer(\d+)/expert(\d+)$")


class MoeLoggingCallback(TrainerCallback):
    """Add the MoE statistics since the previous log record to every training record (the ones with ``loss``).

    The statistics come from forward hooks on the model's :class:`~genrec.models.layers.SparseMoeBlock` layers
    (installed here, removed at the end of training), so any model with sparse blocks logs the same keys and a
    dense model logs none. Insert it *before* the reporting callbacks so they see the values:
    ``trainer.callback_handler.callbacks.insert(0, MoeLoggingCallback(model))``.

    Args:
        model: the unwrapped model (hooks stay valid under DDP, which wraps the same modules).
    """

    def __init__(self, model):
        from genrec.models.layers import MoeStatistics  # not at import: genrec.models loads every model

        self.statistics = MoeStatistics.attach(model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return control
        stats = self.statistics.pop()
        if stats:
            logs.update(stats)
            last = state.log_history[-1] if state.log_history else None
            # Trainer.log appended a copy of the record before calling the callbacks: complete it too
            if last is not None and last.get("step") == state.global_step and last.get("loss") == logs["loss"]:
                last.update(stats)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.statistics.detach()
        return control


def most_and_least_loaded(logs: Mapping[str, Any]) -> tuple[tuple[int, int, float], tuple[int, int, float]] | None:
    """``((layer, expert, load), (layer, expert, load))`` of the most and least loaded expert in a record.

    ``load`` is relative to the expert's fair share (``share * num_experts``, 1.0 = balanced), from the
    ``moe/load/layer{i}/expert{j}`` keys; None when the record has none.
    """
    loads: dict[int, dict[int, float]] = {}
    for key, value in logs.items():
        match = _LOAD_KEY.match(key)
        if match:
            loads.setdefault(int(match.group(1)), {})[int(match.group(2))] = float(value)
    cells = [(layer, expert, share * len(row)) for layer, row in loads.items() if sum(row.values()) > 0
             for expert, share in row.items()]
    if not cells:
        return None
    return max(cells, key=lambda cell: cell[2]), min(cells, key=lambda cell: cell[2])


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and not math.isnan(value) and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def _metric_label(name: str) -> str:
    """``ndcg@10`` -> ``N@10``, ``recall@5`` -> ``R@5`` (the tables' notation)."""
    head, _, cut = name.partition("@")
    short = {"ndcg": "N", "recall": "R", "mrr": "MRR", "hr": "HR"}.get(head)
    return f"{short}@{cut}" if short and cut else name


def _metric_order(name: str) -> tuple[bool, int]:
    """Recall before NDCG, then by cut-off."""
    cut = name.split("@")[1]
    return name.startswith("ndcg"), int(cut) if cut.isdigit() else 0


def format_log_line(logs: Mapping[str, Any], *, step: int, max_steps: int | None = None,
                    epoch: float | None = None) -> str:
    """One console line for a Trainer log record.

    Training records: ``step 40/600 ep 1.33 | loss 4.2113 lr 9.10e-04 | moe aux 0.0213 max 1.62 (L1 E3) min 0.41
    (L0 E1)``. Validation records: ``step 300/600 ep 3.00 | valid R@10 0.0611 N@10 0.0312 invalid 0.0000 (12.3s)``.
    The end-of-training summary: ``done | 600 steps in 312.4s, mean loss 3.2112``. Other records list their
    keys, MoE per-expert loads left out.
    """
    where = f"step {step}" + (f"/{max_steps}" if max_steps else "")
    if epoch is not None:
        where += f" ep {epoch:.2f}"
    if "train_runtime" in logs:
        loss = logs.get("train_loss")
        tail = f", mean loss {_number(loss)}" if isinstance(loss, (int, float)) else ""
        return f"done | {step} steps in {float(logs['train_runtime']):.1f}s{tail}"
    if "loss" in logs:
        parts = [f"loss {_number(logs['loss'])}"]
        if "learning_rate" in logs:
            parts.append(f"lr {float(logs['learning_rate']):.2e}")
        if "grad_norm" in logs:
            parts.append(f"gnorm {_number(logs['grad_norm'], 3)}")
        line = f"{where} | " + " ".join(parts)
        if "moe/aux_loss" in logs:
            moe = [f"moe aux {_number(logs['moe/aux_loss'])}"]
            extremes = most_and_least_loaded(logs)
            if extremes is not None:
                (high_layer, high_expert, high), (low_layer, low_expert, low) = extremes
                moe.append(f"max {high:.2f} (L{high_layer} E{high_expert}) min {low:.2f} (L{low_layer} E{low_expert})")
            if logs.get("moe/dropped_fraction"):
                moe.append(f"dropped {float(logs['moe/dropped_fraction']):.3f}")
            line += " | " + " ".join(moe)
        return line
    evaluation = {key: value for key, value in logs.items() if key.startswith("eval_")}
    if evaluation:
        prefix = "eval_"
        names = [key[len(prefix):] for key in evaluation
                 if "@" in key and key[len(prefix):].split("@")[0] in ("recall", "ndcg")]
        names.sort(key=_metric_order)
        parts = [f"{_metric_label(name)} {_number(evaluation[prefix + name])}" for name in names]
        if f"{prefix}invalid_rate" in evaluation:
            parts.append(f"invalid {_number(evaluation[prefix + 'invalid_rate'])}")
        runtime = evaluation.get(f"{prefix}runtime")
        tail = f" ({float(runtime):.1f}s)" if isinstance(runtime, (int, float)) else ""
        return f"{where} | valid " + " ".join(parts) + tail
    rest = [f"{key} {_number(value)}" for key, value in logs.items()
            if key not in ("epoch", "total_flos") and not key.startswith("moe/load/")]
    return f"{where} | " + " ".join(rest)


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar with one :func:`format_log_line` line per log record instead of the dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(format_log_line(logs, step=state.global_step, max_steps=state.max_steps,
                                                    epoch=state.epoch))


class CompactPrinterCallback(PrinterCallback):
    """transformers' printer (used with ``disable_tqdm``) printing one :func:`format_log_line` line per record."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            print(format_log_line(logs, step=state.global_step, max_steps=state.max_steps, epoch=state.epoch))


def use_compact_console(trainer) -> None:
    """Replace the Trainer's progress or printer callback with its compact twin (public callback API only)."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgressCallback)
    if trainer.pop_callback(PrinterCallback) is not None:
        trainer.add_callback(CompactPrinterCallback)
