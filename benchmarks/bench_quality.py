#!/usr/bin/env python
"""Benchmark: time to quality. Train each configured model in turn and follow its validation NDCG@10 over time.

Each config runs as its own ``genrec train`` process, one after another (never two at once), with the budget as
``training.max_train_seconds`` and ``training.eval_at_minutes`` set to the marks, so every model is validated
when its training clock (validation included) passes each mark, besides its own per-epoch validations. The run
folder's ``metrics.json`` holds that curve (``curve/valid/ndcg@10``: ``[minutes, value]`` points) and the test
metrics of the best-validation weights (the pipeline restores them before testing). The popularity and text-kNN
baselines (``scripts/configs/{popularity,textknn}-beauty.yaml`` on the same data and ranking protocol) are added
unless ``--no-baselines``: they are fitted without gradient steps and drawn as flat lines.

A thread samples ``os.getloadavg()`` every ``--load-interval`` seconds for the whole benchmark; each run records
the mean and max 1-minute load during it (the CPU may be shared: compare curves measured under similar load).

Prints a table and a final JSON line, writes ``benchmarks/results/bench_quality.json`` and the plot
``benchmarks/results/bench_quality.png`` (validation NDCG@10 against minutes, one line per model).

    python benchmarks/bench_quality.py --configs scripts/configs/sasrec-beauty.yaml scripts/configs/recgpt-beauty.yaml \\
        --budget-minutes 30 --marks 1 2 5 10 20 30
    python benchmarks/bench_quality.py --configs scripts/configs/sasrec-beauty-smoke.yaml --budget-minutes 1  # smoke

``--set section.key=value`` applies to every run (baselines included), after the benchmark's own settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Keep OpenMP threads from busy-waiting on a shared CPU; inherited by every run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "scripts" / "configs"
DEFAULT_CONFIGS = [CONFIGS / "sasrec-beauty.yaml"]
BASELINES = {"popularity": CONFIGS / "popularity-beauty.yaml", "textknn": CONFIGS / "textknn-beauty.yaml"}
DEFAULT_RESULT = REPO / "benchmarks" / "results" / "bench_quality.json"
DEFAULT_MARKS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240)
METRIC = "ndcg@10"
CURVE_KEY = f"curve/valid/{METRIC}"
TEST_KEYS = ("test/recall@5", "test/recall@10", "test/ndcg@5", "test/ndcg@10")


class LoadSampler(threading.Thread):
    """Samples ``os.getloadavg()`` every ``interval`` seconds: ``[seconds since start, 1m, 5m, 15m, run name]``."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.start_time = time.monotonic()
        self.samples: list[list[Any]] = []
        self.current = ""
        self._stop_event = threading.Event()

    def sample(self) -> None:
        one, five, fifteen = os.getloadavg()
        self.samples.append([round(time.monotonic() - self.start_time, 1), one, five, fifteen, self.current])

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    def summary(self, name: str | None = None) -> dict[str, float | None]:
        values = [sample[1] for sample in self.samples if name is None or sample[4] == name]
        if not values:
            return {"load_1m_mean": None, "load_1m_max": None}
        return {"load_1m_mean": round(sum(values) / len(values), 2), "load_1m_max": round(max(values), 2)}


def _parse_marks(marks: list[float], budget_minutes: float) -> list[float]:
    from genrec.training.trainer import check_marks

    marks = check_marks(marks, "--marks")
    kept = [mark for mark in marks if mark < budget_minutes]
    if not kept:
        raise ValueError(f"--marks {marks} has no mark below --budget-minutes ({budget_minutes})")
    return kept


def _absolute_dataset(dataset: str) -> str:
    """A dataset path relative to this process's folder made absolute (each run starts in its own work folder,
    where the relative path would not resolve); a bundled name or an absolute path unchanged."""
    path = Path(str(dataset)).expanduser()
    return str(path.resolve()) if not path.is_absolute() and path.exists() else str(dataset)


def plan_runs(configs: list[str], overrides: list[str], baselines: bool) -> list[dict[str, Any]]:
    """One entry per run: name, config path, model type, role and the run's own extra overrides.

    Raises:
        ValueError: configs on different data or ranking protocols (the curves would not be comparable).
    """
    from genrec.training.arguments import apply_overrides, read_yaml_config

    runs, names = [], set()
    protocol = None
    for config in configs:
        values = apply_overrides(read_yaml_config(config), overrides)
        data, training = values.get("data") or {}, values.get("training") or {}
        this = {"data": {"dataset": data.get("dataset", "amazon-beauty"), "max_users": data.get("max_users")},
                "exclude_history_items": bool(training.get("exclude_history_items", False))}
        if protocol is None:
            protocol = this
        elif this != protocol:
            raise ValueError(f"config {config} ranks {this} but the first config ranks {protocol}; every model of "
                             "one benchmark must use the same data and exclude_history_items")
        name = Path(config).stem
        while name in names:
            name += "-2"
        names.add(name)
        model_type = (values.get("model") or {}).get("type", "sasrec")
        dataset = _absolute_dataset(this["data"]["dataset"])
        runs.append({"name": name, "config": str(config), "model_type": model_type,
                     "role": "baseline" if model_type in BASELINES else "model",
                     "extra": [] if dataset == this["data"]["dataset"] else [f"data.dataset={dataset}"]})
    if baselines and protocol is not None:
        same = [f"data.dataset={_absolute_dataset(protocol['data']['dataset'])}",
                f"data.max_users={json.dumps(protocol['data']['max_users'])}",
                f"training.exclude_history_items={json.dumps(protocol['exclude_history_items'])}"]
        from genrec.data import has_item_text

        for model_type, config in BASELINES.items():
            if any(run["model_type"] == model_type for run in runs):
                continue
            if model_type == "textknn" and not has_item_text(protocol["data"]["dataset"]):
                print(f"note: {protocol['data']['dataset']} has no item text; no text-kNN baseline row",
                      file=sys.stderr)
                continue
            name = config.stem if config.stem not in names else f"{config.stem}-baseline"
            names.add(name)
            runs.append({"name": name, "config": str(config), "model_type": model_type, "role": "baseline",
                         "extra": same})
    return runs


def run_one(run: dict[str, Any], workdir: Path, budget_minutes: float, marks: list[float], overrides: list[str],
            timeout_seconds: float) -> dict[str, Any]:
    """``genrec train`` in a subprocess; returns the row (curve, best-validation test metrics, timings)."""
    output = workdir / run["name"]
    log_path = workdir / f"{run['name']}.log"
    # cwd = the work folder, never the repository root: there `-m` would put ./genrec first on sys.path and hide
    # the mapped genrec.* packages (see README, Test)
    command = [sys.executable, "-m", "genrec", "train", "--config", str(Path(run["config"]).resolve()),
               "--output", str(output.resolve()),
               "--set", f"training.max_train_seconds={budget_minutes * 60:g}",
               "--set", f"training.eval_at_minutes={json.dumps(marks)}",
               "--set", f"training.metric_for_early_stopping={METRIC}",
               "--set", "training.disable_tqdm=true"]
    # the run's own settings last: they already include the overrides (plan_runs), with the dataset path absolute
    for override in [*overrides, *run["extra"]]:
        command += ["--set", override]
    row: dict[str, Any] = {key: run[key] for key in ("name", "config", "model_type", "role")}
    row["command"] = " ".join(command[1:])
    row["log"] = str(log_path)
    from genrec.utils.processes import run_logged

    # a timeout is recorded as this run's error; the benchmark exits with status 1
    row["wall_seconds"], error = run_logged(command, log_path, workdir, timeout_seconds,
                                            f"the run timeout of {timeout_seconds:.0f}s (--run-timeout-minutes)")
    if error is not None:
        row["error"] = error
        return row
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    row["run_folder"] = str(output)
    row["curve"] = metrics[CURVE_KEY]
    row[f"best_valid/{METRIC}"] = metrics["train/best_valid_metric"]
    for key in (*TEST_KEYS, "valid/ndcg@10", "train/seconds", "train/epochs", "train/stopped_by", "train/best_epoch",
                "model/build_seconds", "model/num_parameters", "data/num_users", "data/num_items",
                "machine/cpu", "machine/cpu_count", "machine/torch_threads"):
        row[key] = metrics.get(key)
    return row


def value_at(curve: list[list[float]], minutes: float) -> float | None:
    """The last validation value measured at or before ``minutes`` (None before the first one)."""
    values = [value for at, value in curve if at <= minutes]
    return values[-1] if values else None


def write_plot(rows: list[dict[str, Any]], path: Path, budget_minutes: float, title: str) -> None:
    """Validation NDCG@10 against minutes, one line per model; fitted baselines as flat dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for row in rows:
        if "curve" not in row:
            continue
        curve = row["curve"]
        if row["train/stopped_by"] == "fitted":  # no training: its one validation holds from its fit time on
            (fit_minutes, value), = curve
            axes.hlines(value, fit_minutes, budget_minutes, linestyles="dashed", colors=f"C{rows.index(row)}",
                        label=f"{row['name']} (fitted in {fit_minutes * 60:.1f} s, no training)")
        elif curve:
            axes.plot([at for at, _ in curve], [value for _, value in curve], marker="o", markersize=3,
                      label=row["name"], color=f"C{rows.index(row)}")
    axes.set_xlabel("training wall-clock minutes (validation included)")
    axes.set_ylabel("validation NDCG@10")
    axes.set_xlim(0, budget_minutes)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:  # every run failed: an empty plot, no legend
        axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, dpi=120)
    plt.close(figure)
    os.replace(partial, path)


def print_table(rows: list[dict[str, Any]], marks: list[float]) -> None:
    header = (f"{'model':<28} {'R@10':>7} {'N@10':>7} {'bestV':>7} {'train s':>8} {'epochs':>6} {'stopped by':>12} "
              f"{'load':>5}")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<28} FAILED: {row['error'].splitlines()[0]}")
            continue
        print(f"{row['name']:<28} {row['test/recall@10']:>7.4f} {row['test/ndcg@10']:>7.4f} "
              f"{row[f'best_valid/{METRIC}']:>7.4f} {row['train/seconds']:>8.1f} {row['train/epochs']:>6.2f} "
              f"{row['train/stopped_by']:>12} {row['load_1m_mean'] or 0:>5.1f}")
    print(f"\nvalidation {METRIC} at the marks (last validation at or before each mark; minutes):")
    print(f"{'model':<28} " + " ".join(f"{mark:>7g}" for mark in marks))
    for row in rows:
        if "curve" in row:
            cells = [value_at(row["curve"], mark) for mark in marks]
            print(f"{row['name']:<28} " + " ".join(f"{cell:>7.4f}" if cell is not None else f"{'-':>7}"
                                                   for cell in cells))
    print("(R@10 / N@10: test split, best-validation weights; bestV: best validation N@10; load: mean 1-min load "
          "average during the run)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=[str(path) for path in DEFAULT_CONFIGS],
                        help="Run configs, trained one after another in this order.")
    parser.add_argument("--budget-minutes", type=float, default=30.0,
                        help="Training budget of every model (training.max_train_seconds), validation included.")
    parser.add_argument("--marks", type=float, nargs="+", default=None,
                        help=f"Validation marks in minutes (default: {list(DEFAULT_MARKS)} below the budget).")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value override for every run (repeatable).")
    parser.add_argument("--no-baselines", action="store_true", help="Do not add the popularity and text-kNN rows.")
    parser.add_argument("--workdir", default=None,
                        help="Keep the run folders and logs here (created; must not exist or be empty). "
                             "Default: a temporary folder, deleted afterwards.")
    parser.add_argument("--result", default=str(DEFAULT_RESULT), help="Where to write the JSON result.")
    parser.add_argument("--plot", default=None, help="Where to write the PNG (default: the result path with .png).")
    parser.add_argument("--load-interval", type=float, default=5.0, help="Seconds between load-average samples.")
    parser.add_argument("--run-timeout-minutes", type=float, default=None,
                        help="Kill a run after this long (default: 2 x budget + 60 minutes for data, fit and tests).")
    parser.add_argument("--note", default="", help="Free text stored with the result (e.g. 'CPU shared with 3 jobs').")
    args = parser.parse_args(argv)

    import matplotlib  # noqa: F401  (fail now, not after hours of training: pip install -e ".[bench]")

    from genrec.utils.io import atomic_write_json, check_output_file, check_output_parent

    if not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes ({args.budget_minutes}) must be > 0")
    if not args.load_interval > 0:
        raise ValueError(f"--load-interval ({args.load_interval}) must be > 0")
    marks = _parse_marks(args.marks or [m for m in DEFAULT_MARKS if m < args.budget_minutes] or
                         [args.budget_minutes / 2], args.budget_minutes)
    result_path = check_output_file(args.result)
    plot_path = Path(args.plot) if args.plot else result_path.with_suffix(".png")
    check_output_file(plot_path)
    for config in args.configs:
        if not Path(config).is_file():
            raise FileNotFoundError(f"--configs: {config!r} does not exist")
    runs = plan_runs(args.configs, args.overrides, baselines=not args.no_baselines)
    if not any(run["model_type"] == "sasrec" for run in runs):
        print("note: no SASRec config among --configs; the curves have no SASRec yardstick", file=sys.stderr)
    timeout = (args.run_timeout_minutes or 2 * args.budget_minutes + 60) * 60

    sampler = LoadSampler(args.load_interval)
    sampler.start()
    start = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as scratch:
        workdir = Path(args.workdir) if args.workdir else Path(scratch)
        if args.workdir:
            check_output_parent(workdir)
            if workdir.exists() and any(workdir.iterdir()):
                raise FileExistsError(f"--workdir {str(workdir)!r} is not empty")
            workdir.mkdir(exist_ok=True)
        try:
            for number, run in enumerate(runs, 1):
                print(f"[{number}/{len(runs)}] {run['name']} ({run['model_type']}, {run['config']}) ...", flush=True)
                sampler.current = run["name"]
                row = run_one(run, workdir, args.budget_minutes, marks, args.overrides, timeout)
                sampler.current = ""
                row.update(sampler.summary(run["name"]))
                rows.append(row)
                print(f"    {'FAILED' if 'error' in row else 'done'} in {row['wall_seconds']:.0f}s", flush=True)
        finally:
            sampler.stop()
    total_seconds = time.time() - start

    load = {"interval_seconds": args.load_interval, **sampler.summary(), "samples": sampler.samples}
    result = {
        "benchmark": "quality",
        "metric": f"valid/{METRIC}",
        "budget_minutes": args.budget_minutes,
        "marks_minutes": marks,
        "configs": args.configs,
        "overrides": args.overrides,
        "note": args.note,
        "total_seconds": round(total_seconds, 1),
        "load_average": load,
        "runs": rows,
    }
    print_table(rows, marks)
    finished = [row for row in rows if "error" not in row]
    num_users = finished[0]["data/num_users"] if finished else None
    title = (f"validation {METRIC} vs training minutes; {num_users} users; budget {args.budget_minutes:g} min; "
             f"mean load {load['load_1m_mean']}")
    result["plot"] = str(plot_path)
    atomic_write_json(result_path, result)  # before the plot: a plotting error must not lose the measurements
    write_plot(rows, plot_path, args.budget_minutes, title)
    print(f"total {total_seconds:.0f}s, mean 1-min load {load['load_1m_mean']} (max {load['load_1m_max']}); "
          f"wrote {result_path} and {plot_path}")
    print(json.dumps({key: value for key, value in result.items() if key != "load_average"} |
                     {"load_average": {k: v for k, v in load.items() if k != "samples"}}, sort_keys=True))
    failed = [row["name"] for row in rows if "error" in row]
    if failed:
        for row in rows:
            if "error" in row:
                print(f"{row['name']} failed: {row['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
