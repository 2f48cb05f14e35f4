"""PNG dashboards of a run folder: the training curve and the expert load (``genrec plot RUN``).

Reads what :func:`genrec.training.run_training` writes (``log_history.json``, ``metrics.json``) and writes::

    RUN/plots/training_curve.png   training loss (and MoE aux loss) vs step; validation metric vs step and,
                                   when metrics.json has a wall-clock curve, vs minutes
    RUN/plots/expert_load.png      MoE models only: heat map of each (layer, expert)'s share of the routed
                                   assignments over the run, relative to its fair share (1.0 = balanced), and the
                                   most / least loaded expert per logging step

matplotlib renders off-screen (Agg); every PNG is written atomically.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

from genrec.utils.io import atomic_write_bytes

__all__ = ["PLOTS_DIR", "plot_run", "expert_load_matrix"]

PLOTS_DIR = "plots"
_LOAD_KEY = re.compile(r"^moe/load/layer(\d+)/expert(\d+)$")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error}); is {what} damaged?") from None


def expert_load_matrix(log_history: list[dict[str, Any]]):
    """Mean relative load ``(layers, experts)`` over the training records (share x num_experts; 1.0 = balanced).

    Returns:
        a float numpy array, or None when no record has ``moe/load/layer{i}/expert{j}`` keys.
    """
    import numpy as np

    sums: dict[tuple[int, int], float] = {}
    counts: dict[tuple[int, int], int] = {}
    for record in log_history:
        for key, value in record.items():
            match = _LOAD_KEY.match(key)
            if match and isinstance(value, (int, float)):
                cell = (int(match.group(1)), int(match.group(2)))
                sums[cell] = sums.get(cell, 0.0) + float(value)
                counts[cell] = counts.get(cell, 0) + 1
    if not sums:
        return None
    layers = 1 + max(layer for layer, _ in sums)
    experts = 1 + max(expert for _, expert in sums)
    matrix = np.zeros((layers, experts))
    for (layer, expert), total in sums.items():
        matrix[layer, expert] = total / counts[(layer, expert)] * experts
    return matrix


def _label_axis(axis, xlabel: str, ylabel: str, title: str, *, from_zero: bool = True) -> None:
    """Axis labels, title and grid of every panel; ``from_zero``: the y axis starts at 0."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    if from_zero:
        axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)


def _finish(plt, figure, title: str, path: Path) -> Path:
    """Title and lay out ``figure``, write it as a PNG (atomically) and close it, also when writing fails."""
    try:
        figure.suptitle(title, fontsize=11)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        return atomic_write_bytes(path, buffer.getvalue())
    finally:
        plt.close(figure)


def _training_curve(plt, log_history, metrics, metric: str, title: str, path: Path) -> Path:
    train = [record for record in log_history if "loss" in record and "step" in record]
    evaluations = [record for record in log_history if f"eval_{metric}" in record and "step" in record]
    curve = metrics.get(f"curve/valid/{metric}") or []
    panels = 1 + bool(evaluations) + bool(len(curve) > 0)
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4), squeeze=False)
    axes = list(axes[0])
    loss_axis = axes.pop(0)
    if train:
        marker = "o" if len(train) <= 30 else None  # a short run's points stay visible (one point draws no line)
        loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], color="C0", marker=marker,
                       markersize=3, label="training loss")
        aux = [(r["step"], r["moe/aux_loss"]) for r in train if "moe/aux_loss" in r]
        if aux:
            twin = loss_axis.twinx()
            twin.plot([s for s, _ in aux], [v for _, v in aux], color="C3", linewidth=1, alpha=0.8, marker=marker,
                      markersize=3, label="MoE aux loss (right axis)")
            twin.set_ylabel("MoE aux loss", color="C3")
            twin.tick_params(axis="y", colors="C3")
            handles = loss_axis.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            loss_axis.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
        else:
            loss_axis.legend(fontsize=8, loc="upper right")
    else:
        loss_axis.text(0.5, 0.5, "no training steps\n(fitted model)", ha="center", va="center",
                       transform=loss_axis.transAxes)
    _label_axis(loss_axis, "step", "training loss", "training loss", from_zero=False)
    label = metric.replace("ndcg@", "NDCG@").replace("recall@", "Recall@")
    if evaluations:
        step_axis = axes.pop(0)
        step_axis.plot([r["step"] for r in evaluations], [r[f"eval_{metric}"] for r in evaluations], marker="o",
                       markersize=4, color="C2")
        _label_axis(step_axis, "step", f"validation {label}", f"validation {label} vs step")
    if curve:
        minute_axis = axes.pop(0)
        minute_axis.plot([at for at, _ in curve], [value for _, value in curve], marker="o", markersize=4, color="C1")
        for mark in metrics.get("curve/eval_at_minutes") or []:
            minute_axis.axvline(mark, color="grey", linewidth=0.6, linestyle=":")
        minute_axis.set_xlim(left=0)
        _label_axis(minute_axis, "training wall-clock minutes (validation included)", f"validation {label}",
                    f"validation {label} vs time")
    return _finish(plt, figure, title, path)


def _expert_load(plt, log_history, matrix, title: str, path: Path) -> Path:
    from matplotlib.colors import Normalize

    layers, experts = matrix.shape
    train = [record for record in log_history if "loss" in record and "moe/load_max" in record]
    heat_width = max(5.0, 0.55 * experts + 2.5)
    figure, (heat_axis, line_axis) = plt.subplots(1, 2, figsize=(heat_width + 5.2, max(3.2, 0.5 * layers + 2.0)),
                                                  gridspec_kw={"width_ratios": [heat_width, 5.2]})
    # symmetric around 1.0 (the fair share): white = balanced, red = overloaded, blue = starved
    spread = max(float(abs(matrix - 1.0).max()), 0.05)
    image = heat_axis.imshow(matrix, cmap="RdBu_r", aspect="auto", norm=Normalize(1.0 - spread, 1.0 + spread))
    colorbar = figure.colorbar(image, ax=heat_axis)
    colorbar.set_label("load / fair share (1.0 = balanced)")
    heat_axis.set_xticks(range(experts))
    heat_axis.set_yticks(range(layers))
    heat_axis.set_xlabel("expert")
    heat_axis.set_ylabel("MoE layer")
    heat_axis.set_title("mean expert load over the run")
    if layers * experts <= 256:  # the numbers stay legible up to 16 x 16 cells
        for layer in range(layers):
            for expert in range(experts):
                value = matrix[layer, expert]
                red, green, blue, _ = image.cmap(image.norm(value))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells
                heat_axis.text(expert, layer, f"{value:.2f}", ha="center", va="center", fontsize=9,
                               color="white" if dark else "black")
    if train:
        steps = [r["step"] for r in train]
        marker = "o" if len(train) <= 30 else None
        line_axis.plot(steps, [r["moe/load_max"] for r in train], color="C3", marker=marker, markersize=3,
                       label="most loaded expert")
        line_axis.plot(steps, [r["moe/load_min"] for r in train], color="C0", marker=marker, markersize=3,
                       label="least loaded expert")
        line_axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--", label="balanced")
        line_axis.legend(fontsize=8)
    _label_axis(line_axis, "step", "load / fair share", "extremes per logging step")
    return _finish(plt, figure, title, path)


def plot_run(run: str | os.PathLike, output: str | os.PathLike | None = None) -> list[Path]:
    """Write the PNG dashboards of a ``genrec train`` run folder.

    Args:
        run: the run folder (holds ``log_history.json`` and ``metrics.json``).
        output: folder for the PNGs (default ``RUN/plots``; created if missing, its parent must exist).

    Returns:
        the PNG paths written: ``training_curve.png``, plus ``expert_load.png`` for MoE models.

    Raises:
        FileNotFoundError: ``run`` is not a run folder (no ``log_history.json``).
        ValueError: a damaged JSON file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    history_path = run / "log_history.json"
    if not history_path.is_file():
        raise FileNotFoundError(f"{str(run)!r} is not a genrec run folder: it has no log_history.json")
    log_history = _read_json(history_path, "the run folder")
    if not isinstance(log_history, list):
        raise ValueError(f"{str(history_path)!r} must hold a list of log records")
    metrics = _read_json(run / "metrics.json", "the run folder") if (run / "metrics.json").is_file() else {}
    folder = Path(output) if output is not None else run / PLOTS_DIR
    if not folder.absolute().parent.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r}: its parent does not exist")
    folder.mkdir(exist_ok=True)
    metric = next((key.split("/", 2)[2] for key in metrics if key.startswith("curve/valid/")), "ndcg@10")
    title = f"{metrics.get('model/type', 'model')} on {metrics.get('data/name', '?')} ({run.name})"
    written = [_training_curve(plt, log_history, metrics, metric, title, folder / "training_curve.png")]
    matrix = expert_load_matrix(log_history)
    if matrix is not None:
        written.append(_expert_load(plt, log_history, matrix, title, folder / "expert_load.png"))
    return written
