#!/usr/bin/env python
"""The quality table in one command: train and evaluate every model with its preset, one after another.

    python benchmarks/run_table.py --dataset amazon-beauty --budget-minutes 25
    python benchmarks/run_table.py --dataset amazon-beauty --models sasrec onerec-moe --budget-minutes 10
    python benchmarks/run_table.py --smoke   # the tiny *-smoke presets, minutes in all

Each model runs as its own ``genrec train`` process (never two at once) with its preset from ``scripts/configs/``
(``--smoke``: the ``*-smoke.yaml`` presets), ``data.dataset`` set to ``--dataset`` and, with ``--budget-minutes``,
``training.max_train_seconds`` (validation included; the presets' own limits otherwise). The run folder's
``metrics.json`` gives the test metrics of the best-validation weights, the invalid-item rate of generation
(top-10 slots without a catalog item), the training time and the parameter counts (active: per token, MoE experts
not routed to excluded); ``genrec plot`` writes each run's PNGs into its folder.

Models (``--models``, default all, in this order): sasrec, p5-semantic, p5-collab (``p5-item-beauty.yaml`` with
collaborative ids), onerec-dense (``onerec-item-beauty.yaml`` with ``model.ffn_type=dense``), onerec-moe, recgpt
(``recgpt-item-beauty.yaml``), bigrec, and the baselines popularity and textknn (last-item text-kNN). P5, OneRec and
RecGPT run their cheap item-layout presets (one position per history item); ``--smoke`` switches the tiny
token-layout ``*-smoke.yaml`` presets to the same layout. BIGRec trains its LoRA on a subsample of the training
prompts (``model.max_train_examples``: 1,024 in ``bigrec-beauty.yaml``; ``--bigrec-train-examples`` changes it) and,
as an LLM beam search per user, is slow to evaluate on a CPU: ``--bigrec-max-users`` limits its users (its row
then says so, and is not comparable with the others).

Writes ``benchmarks/results/run_table.{json,md,png}`` (``--smoke``: ``run_table_smoke.*``): the Markdown table
beside the published Beauty numbers (TIGER's paper and SASRec reruns, see README), a bar chart of R@10 / N@10,
and prints the table and a final JSON line. ``--set section.key=value`` applies to every run;
``--set MODEL:section.key=value`` to one model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

# Keep OpenMP threads from busy-waiting on a shared CPU; inherited by every run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "scripts" / "configs"
RESULTS = REPO / "benchmarks" / "results"
KEYS = ("test/recall@5", "test/recall@10", "test/ndcg@5", "test/ndcg@10")


class Entry(NamedTuple):
    label: str
    preset: str
    smoke_preset: str
    extra: tuple[str, ...] = ()  # overrides of the preset that define this row
    smoke_extra: tuple[str, ...] = ()  # --smoke only: what makes the tiny preset the same kind of model


# --smoke: the tiny token-layout presets switched to the cheap item-layout paths the full presets use
_ITEM_SMOKE = ("model.input_granularity=item", "model.item_vectors={item_text: true, collaborative_dims: 4}",
               "training.train_targets=random_cut")
_COLLAB_IDS = ("model.item_tokenizer_method=collaborative",
               "model.item_tokenizer_config={num_clusters: 10, leaf_size: 20}")
MODELS = {
    "sasrec": Entry("SASRec (CE)", "sasrec-beauty.yaml", "sasrec-beauty-smoke.yaml"),
    "p5-semantic": Entry("P5, semantic ids", "p5-item-beauty.yaml", "p5-beauty-smoke.yaml", (),
                         (*_ITEM_SMOKE, "model.direct_task_ratio=0.0")),
    "p5-collab": Entry("P5, collaborative ids", "p5-item-beauty.yaml", "p5-beauty-smoke.yaml", _COLLAB_IDS,
                       (*_ITEM_SMOKE, "model.direct_task_ratio=0.0")),
    "onerec-dense": Entry("OneRec, dense", "onerec-item-beauty.yaml", "onerec-beauty-smoke.yaml",
                          ("model.ffn_type=dense",), _ITEM_SMOKE),
    "onerec-moe": Entry("OneRec, MoE", "onerec-item-beauty.yaml", "onerec-beauty-smoke.yaml",
                        ("model.ffn_type=moe",), _ITEM_SMOKE),
    "recgpt": Entry("RecGPT", "recgpt-item-beauty.yaml", "recgpt-beauty-smoke.yaml", (),
                    ("model.input_granularity=item", "model.loss_type=items", "model.text_logits=true",
                     "model.tie_code_embeddings=true", "model.logit_temperature=0.07", "model.num_negatives=0",
                     "model.code_embedding_type=table", "training.text_prior_weights=[0, 0.5, 1]")),
    "bigrec": Entry("BIGRec", "bigrec-beauty.yaml", "bigrec-beauty-smoke.yaml"),
    "popularity": Entry("popularity (baseline)", "popularity-beauty.yaml", "popularity-beauty.yaml"),
    "textknn": Entry("last-item text-kNN (baseline)", "textknn-beauty.yaml", "textknn-beauty.yaml"),
}

# Published Amazon Beauty numbers (leave-one-out, full ranking, test): /work/shared/PAPERS.md and README's Models
# section. (R@5, R@10, N@5, N@10); None = not reported.
PUBLISHED = [
    ("TIGER (Rajput et al. 2023; GPU, ~390 epochs, ~13M parameters)", (0.0454, 0.0648, 0.0321, 0.0384)),
    ("SASRec (TIGER's table, BCE)", (None, 0.0605, None, 0.0318)),
    ("SASRec, full softmax (public reruns)", (None, "0.082–0.085", None, "0.040–0.042")),
]


def split_overrides(overrides: list[str], models: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``--set`` values: the common ones, and per model those written ``MODEL:section.key=value``.

    Raises:
        ValueError: a ``MODEL:`` prefix that is not one of the chosen models.
    """
    common, per_model = [], {name: [] for name in models}
    for override in overrides:
        head = override.split("=", 1)[0]
        if ":" in head:
            name, rest = override.split(":", 1)
            if name not in per_model:
                raise ValueError(f"--set {override!r}: {name!r} is not one of the chosen models {models}")
            per_model[name].append(rest)
        else:
            common.append(override)
    return common, per_model


def run_one(name: str, entry: Entry, args, workdir: Path, overrides: list[str]) -> dict[str, Any]:
    """``genrec train`` of one model in a subprocess; the row of the table (or its error)."""
    preset = CONFIGS / (entry.smoke_preset if args.smoke else entry.preset)
    output = workdir / name
    log_path = workdir / f"{name}.log"
    settings = [f"data.dataset={args.dataset}", "training.disable_tqdm=true", *entry.extra,
                *(entry.smoke_extra if args.smoke else ())]
    if args.budget_minutes is not None:
        settings.append(f"training.max_train_seconds={args.budget_minutes * 60:g}")
    if name == "bigrec":
        if args.bigrec_train_examples is not None:
            settings.append(f"model.max_train_examples={args.bigrec_train_examples}")
        if args.bigrec_max_users is not None:
            settings.append(f"data.max_users={args.bigrec_max_users}")
    settings += overrides
    # cwd = the work folder, never the repository root (there `-m` would put ./genrec first on sys.path)
    command = [sys.executable, "-m", "genrec", "train", "--config", str(preset), "--output", str(output.resolve())]
    for setting in settings:
        command += ["--set", setting]
    row: dict[str, Any] = {"name": name, "label": entry.label, "preset": preset.name, "overrides": settings,
                           "log": str(log_path)}
    from genrec.utils.processes import run_logged

    row["wall_seconds"], error = run_logged(command, log_path, workdir, args.run_timeout_minutes * 60,
                                            f"--run-timeout-minutes {args.run_timeout_minutes:g}")
    if error is not None:
        row["error"] = error
        return row
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    row["run_folder"] = str(output)
    for key in (*KEYS, "test/invalid_rate", "test/num_users", "train/seconds", "train/epochs", "train/stopped_by",
                "train/num_examples", "model/build_seconds", "model/num_parameters", "model/num_active_parameters",
                "data/num_users", "data/num_items", "machine/cpu", "machine/cpu_count", "machine/torch_threads",
                "machine/device"):
        row[key] = metrics.get(key)
    try:  # the run's own dashboards, beside its metrics
        from genrec.training.plots import plot_run

        row["plots"] = [str(path) for path in plot_run(output)]
    except (OSError, ValueError) as error:
        row["plots_error"] = str(error)
    return row


def _count(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}k"


def _cell(value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else f"{value:.4f}"


def markdown_table(rows: list[dict[str, Any]], header: dict[str, Any], *, published: bool) -> str:
    """The Markdown table: one row per model, then the published numbers (on Amazon Beauty only)."""
    lines = [
        f"Dataset `{header['dataset']}`, leave-one-out, full ranking, test split (best-validation weights); "
        f"{header['machine']}; budget: {header['budget']}; {header['date']}, mean 1-min load {header['load']}.",
        "",
        "| model (preset) | R@5 | R@10 | N@5 | N@10 | invalid | training | parameters | active |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        name = f"{row['label']} (`{row['preset']}`{''.join(f', `{o}`' for o in _row_defining(row))})"
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0]} | | | | | | | |")
            continue
        training = f"{row['train/seconds']:.0f} s, {row['train/epochs']:.2f} ep ({row['train/stopped_by']})"
        if row["name"] == "bigrec":
            training += f", {row['train/num_examples']} training prompts"
            if row["data/num_users"] != rows[0].get("data/num_users"):
                training += f", first {row['data/num_users']} users only"
        cells = [_cell(row[key]) for key in KEYS]
        lines.append(f"| {name} | {' | '.join(cells)} | {_cell(row['test/invalid_rate'])} | {training} | "
                     f"{_count(row['model/num_parameters'])} | {_count(row['model/num_active_parameters'])} |")
    if published:
        for label, values in PUBLISHED:
            lines.append(f"| *published:* {label} | {' | '.join(_cell(v) for v in values)} | | | | |")
    return "\n".join(lines) + "\n"


def _row_defining(row: dict[str, Any]) -> list[str]:
    extra = MODELS[row["name"]].extra if row["name"] in MODELS else ()
    return [override for override in extra if not override.startswith("model.item_tokenizer")]


def write_bar_chart(rows: list[dict[str, Any]], path: Path, title: str, *, published: bool) -> None:
    """Grouped bars of test R@10 and N@10 per model; TIGER's published values as dashed lines."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.utils.io import atomic_write_bytes

    done = [row for row in rows if "error" not in row]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.3 * len(done) + 2.5), 4.5))
    positions = range(len(done))
    width = 0.38
    for offset, key, label, color in ((-width / 2, "test/recall@10", "R@10", "C0"),
                                      (width / 2, "test/ndcg@10", "N@10", "C1")):
        values = [row[key] for row in done]
        bars = axes.bar([p + offset for p in positions], values, width, label=label, color=color)
        axes.bar_label(bars, fmt="%.4f", fontsize=7, padding=2)
    if published:
        tiger = PUBLISHED[0][1]
        axes.axhline(tiger[1], color="C0", linestyle="--", linewidth=1, label=f"TIGER R@10 (published) {tiger[1]}")
        axes.axhline(tiger[3], color="C1", linestyle="--", linewidth=1, label=f"TIGER N@10 (published) {tiger[3]}")
    axes.set_xticks(list(positions))
    axes.set_xticklabels([row["label"] for row in done], rotation=20, ha="right", fontsize=9)
    axes.set_ylabel("test metric")
    axes.set_ylim(0, max([row["test/recall@10"] for row in done] + [0.07 if published else 0.0]) * 1.2 or 1.0)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper right")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def _machine(rows: list[dict[str, Any]]) -> str:
    done = [row for row in rows if "error" not in row]
    if not done:
        return "machine unknown (every run failed)"
    row = done[0]
    return (f"{row['machine/cpu']} ({row['machine/cpu_count']} cores, {row['machine/torch_threads']} torch threads, "
            f"{row['machine/device']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty", help="Dataset name or folder (every model).")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="Training budget of every model (training.max_train_seconds); default: the presets'.")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="Which rows to run, in the table's order.")
    parser.add_argument("--smoke", action="store_true", help="The tiny *-smoke presets (a check, not a benchmark).")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value for every run, or MODEL:section.key=value for one (repeatable).")
    parser.add_argument("--bigrec-train-examples", type=int, default=None,
                        help="BIGRec's training prompts (model.max_train_examples; the preset's by default).")
    parser.add_argument("--bigrec-max-users", type=int, default=None,
                        help="Evaluate BIGRec on the first N users only (its row says so).")
    parser.add_argument("--workdir", default=None,
                        help="Keep the run folders and logs here (created; must not exist or be empty). "
                             "Default: a temporary folder, deleted afterwards.")
    parser.add_argument("--result", default=None,
                        help="JSON result path (default benchmarks/results/run_table.json, or run_table_smoke.json); "
                             "the table (.md) and chart (.png) go beside it.")
    parser.add_argument("--run-timeout-minutes", type=float, default=24 * 60, help="Kill a run after this long.")
    parser.add_argument("--note", default="", help="Free text stored with the result.")
    args = parser.parse_args(argv)

    from genrec.utils.io import atomic_write_json, atomic_write_text, check_output_file, check_output_parent

    if args.budget_minutes is not None and not args.budget_minutes > 0:
        parser.error(f"--budget-minutes ({args.budget_minutes}) must be > 0")
    for flag, value in (("--bigrec-train-examples", args.bigrec_train_examples),
                        ("--bigrec-max-users", args.bigrec_max_users)):
        if value is not None and value < 1:
            parser.error(f"{flag} ({value}) must be >= 1")
    models = [name for name in MODELS if name in args.models]  # the table's order
    try:
        common, per_model = split_overrides(args.overrides, models)
    except ValueError as error:
        parser.error(str(error))
    default = RESULTS / ("run_table_smoke.json" if args.smoke else "run_table.json")
    result_path = check_output_file(args.result or default)
    table_path, plot_path = result_path.with_suffix(".md"), result_path.with_suffix(".png")
    for path in (table_path, plot_path):
        check_output_file(path)

    rows = []
    load_samples = []
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="run-table-") as scratch:
        workdir = Path(args.workdir) if args.workdir else Path(scratch)
        if args.workdir:
            check_output_parent(workdir)
            if workdir.exists() and any(workdir.iterdir()):
                parser.error(f"--workdir {str(workdir)!r} is not empty")
            workdir.mkdir(exist_ok=True)
        for number, name in enumerate(models, 1):
            entry = MODELS[name]
            print(f"[{number}/{len(models)}] {name} ({entry.smoke_preset if args.smoke else entry.preset}) ...",
                  flush=True)
            row = run_one(name, entry, args, workdir, [*common, *per_model[name]])
            row["load_1m_after"] = round(os.getloadavg()[0], 2)
            load_samples.append(row["load_1m_after"])
            rows.append(row)
            print(f"    {'FAILED' if 'error' in row else 'done'} in {row['wall_seconds']:.0f}s", flush=True)
    total_seconds = time.time() - start

    published = not args.smoke and Path(args.dataset).name in ("amazon-beauty",)
    budget = f"{args.budget_minutes:g} min of training per model" if args.budget_minutes else "the presets' own limits"
    header = {"dataset": args.dataset, "machine": _machine(rows), "budget": budget,
              "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "load": round(sum(load_samples) / len(load_samples), 2) if load_samples else None}
    table = markdown_table(rows, header, published=published)
    result = {"benchmark": "run_table", "dataset": args.dataset, "smoke": args.smoke, "models": models,
              "budget_minutes": args.budget_minutes, "overrides": args.overrides, "note": args.note,
              "total_seconds": round(total_seconds, 1), **header, "table": str(table_path), "plot": str(plot_path),
              "rows": rows}
    print(table)
    atomic_write_json(result_path, result)  # before the chart: a plotting error must not lose the measurements
    atomic_write_text(table_path, table)
    if any("error" not in row for row in rows):
        write_bar_chart(rows, plot_path, f"{Path(args.dataset).name}: test R@10 / N@10; {budget}; {header['machine']}",
                        published=published)
    print(f"total {total_seconds:.0f}s; wrote {result_path}, {table_path} and {plot_path}")
    print(json.dumps({key: value for key, value in result.items() if key != "rows"} |
                     {"rows": [{k: v for k, v in row.items() if k not in ("overrides", "plots")} for row in rows]},
                     sort_keys=True))
    failed = [row for row in rows if "error" in row]
    for row in failed:
        print(f"{row['name']} failed: {row['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
