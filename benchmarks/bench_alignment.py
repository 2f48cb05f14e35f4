#!/usr/bin/env python
"""Iterative preference alignment (OneRec IPA) on Amazon Beauty: validation N@10 and mean reward per round.

Runs ``genrec align`` for OneRec (sessions) and RecGPT (decoder-only, one item per slot) from the presets
``scripts/configs/{onerec,recgpt}-beauty-align.yaml``, starting from already trained base models (``--onerec-base``,
``--recgpt-base``: run folders of ``genrec train --config scripts/configs/{onerec,recgpt}-beauty.yaml``), with the
same reward model for both (trained once, in the first run, then reused). Round 0 = the base model before alignment.

    python benchmarks/bench_alignment.py --onerec-base runs/onerec-beauty --recgpt-base runs/recgpt-beauty
    # ablations, reusing the first run's reward model (run names get the tag as a suffix):
    python benchmarks/bench_alignment.py --onerec-base ... --recgpt-base ... --reward-checkpoint \
        runs/bench-alignment/onerec/reward_model --tag=-ntp-only --set alignment.dpo_weight=0
    # then every run's base and last round on ALL validation and test users:
    python benchmarks/bench_alignment.py --final-eval

Prints a table and a final JSON line; writes benchmarks/results/bench_alignment.json (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bench_alignment.json"
PRESETS = {"onerec": ROOT / "scripts/configs/onerec-beauty-align.yaml",
           "recgpt": ROOT / "scripts/configs/recgpt-beauty-align.yaml"}


def _finite(value):
    """NaN -> None (strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def final_eval(args) -> int:
    """Full-ranking valid + test metrics of each run's base model and last-round model (every user)."""
    from genrec.training.pipeline import evaluate_checkpoint
    from genrec.utils.io import atomic_write_json

    results = json.loads(RESULTS.read_text())
    cache: dict[str, dict] = {}
    lines = ["| run | model | valid R@10 | valid N@10 | test R@10 | test N@10 |", "| --- | --- | --- | --- | --- | --- |"]
    for name, run in sorted(results["runs"].items()):
        if "final_eval" in run:  # measured by an earlier --final-eval
            continue
        rounds = sorted(int(k.split("/")[0].split("_")[1]) for k in run["metrics"] if k.startswith("round_"))
        folder = Path(args.workdir) / name / f"round_{rounds[-1]}" / "checkpoint"
        evaluated = {}
        for label, path in (("base", Path(run["base"])), (f"round_{rounds[-1]}", folder)):
            key = str(path.resolve())
            if key not in cache:
                start = time.time()
                cache[key] = evaluate_checkpoint(path, "amazon-beauty", splits=("valid", "test"), ks=(5, 10, 20),
                                                 batch_size=256)
                cache[key]["seconds"] = round(time.time() - start, 1)
            evaluated[label] = cache[key]
            m = cache[key]
            lines.append(f"| {name} | {label} | {m['valid/recall@10']:.4f} | {m['valid/ndcg@10']:.4f} | "
                         f"{m['test/recall@10']:.4f} | {m['test/ndcg@10']:.4f} |")
        run["final_eval"] = evaluated
        atomic_write_json(RESULTS, _finite(results))
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onerec-base", help="trained OneRec run folder (or checkpoint folder)")
    parser.add_argument("--recgpt-base", help="trained RecGPT run folder (or checkpoint folder)")
    parser.add_argument("--workdir", default="runs/bench-alignment", help="where the alignment run folders go")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra overrides for both runs, e.g. alignment.rounds=2")
    parser.add_argument("--reward-checkpoint", default=None,
                        help="a trained reward model folder to use (default: trained in the first run, then reused)")
    parser.add_argument("--tag", default="", help="suffix of the run names in the results, e.g. -ntp-only for an ablation")
    parser.add_argument("--final-eval", action="store_true",
                        help="instead of aligning: evaluate the base and the last round of every run recorded in the "
                             "results on ALL validation and test users (full ranking), and add it to the results")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from genrec.alignment.ipa import load_align_config, run_alignment
    from genrec.cli.align import format_rounds_table
    from genrec.training.pipeline import machine_info
    from genrec.utils.io import atomic_write_json

    if args.final_eval:
        return final_eval(args)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bases = {"onerec": args.onerec_base, "recgpt": args.recgpt_base}
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results: dict = {"runs": dict(previous.get("runs", {})), "machine": machine_info(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    reward_checkpoint = str(Path(args.reward_checkpoint).resolve()) if args.reward_checkpoint else None
    bases_run: set[str] = set()  # the run names this invocation (re)measured
    for name, base in bases.items():
        if base is None:
            continue
        overrides = [f"base.checkpoint={Path(base).resolve()}", "base.config=null", *args.overrides]
        if reward_checkpoint is not None:
            overrides.append(f"reward.checkpoint={reward_checkpoint}")
        used_reward = reward_checkpoint  # None: this run trains the reward model
        config = load_align_config(PRESETS[name], overrides)
        start = time.time()
        metrics = run_alignment(config, workdir / f"{name}{args.tag}")
        wall = time.time() - start
        if reward_checkpoint is None:
            reward_checkpoint = str((workdir / f"{name}{args.tag}" / "reward_model").resolve())
        print(f"\n== {name}{args.tag} ({wall:.0f} s)")
        print(format_rounds_table(metrics))
        bases_run.add(f"{name}{args.tag}")
        results["runs"][f"{name}{args.tag}"] = {"overrides": args.overrides, "wall_seconds": round(wall, 1), "base": str(base), "command": results["command"],
                                 "reward_checkpoint": used_reward,
                                 "metrics": {k: v for k, v in metrics.items() if not k.startswith("machine/")}}
    if not results["runs"]:
        parser.error("pass --onerec-base and/or --recgpt-base")
    for run in results["runs"].values():
        auc = run["metrics"].get("reward_model/valid/auc")
        if auc is not None:
            results["reward_model_valid_auc"] = auc
    latest = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}  # another run may have finished meanwhile
    results["runs"] = {**latest.get("runs", {}), **{k: v for k, v in results["runs"].items()
                                                    if k not in previous.get("runs", {}) or k in bases_run}}
    atomic_write_json(RESULTS, _finite(results))
    print(json.dumps({name: {k: v for k, v in run["metrics"].items() if k.endswith(("ndcg@10", "reward_mean"))}
                      for name, run in results["runs"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
