"""Benchmark every item tokenizer in genrec.tokenization on Amazon Beauty, plus a 1M-item rq-kmeans run.

Beauty (12,101 items): every registered method (TOKENIZER_METHODS, plus balanced rq-kmeans) is fitted
with its default config on the leave-one-out TRAINING sequences and the all-MiniLM-L6-v2 item text
embeddings (computed once and cached on disk, so fit times exclude embedding). Reported per method:
fit seconds (the base class's ``fit_seconds``), code length, codebook sizes, collision rate before and
after the fix, utilisation per level and, where the scheme has one, the relative reconstruction error.

--large: residual k-means (3 × 256) on 1,000,000 synthetic 384-d items (a unit-normalised mixture of
4,096 Gaussians), plain and balanced, each in its own subprocess so ``ru_maxrss`` (peak RSS) is per run.
Centroids are fitted on a 100,000-item subsample, then all 1M items are assigned (balanced: one greedy
OneRec pass over all items, so clusters are exactly 1M / 256 = 3,906 or 3,907 items).

Usage:
    python benchmarks/bench_tokenization.py                       # Beauty, every method
    python benchmarks/bench_tokenization.py --methods rq-kmeans fsq --threads 1
    python benchmarks/bench_tokenization.py --large               # Beauty + the 1M run
    python benchmarks/bench_tokenization.py --only-large
Writes benchmarks/results/bench_tokenization.json (atomically), prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from genrec.utils.io import atomic_write_json

_EMBEDDING_METHODS = {"rq-kmeans", "rq-vae", "fsq"}


def _peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _beauty(args) -> dict:
    from genrec.data import leave_one_out, load_dataset
    from genrec.tokenization import TOKENIZER_METHODS, get_tokenizer_class
    from genrec.tokenization.base import _import_scheme_modules
    from genrec.tokenization.embeddings import embed_catalog

    _import_scheme_modules()
    data = load_dataset("amazon-beauty")
    split = leave_one_out(data)
    start = time.perf_counter()
    embeddings = embed_catalog(data.catalog)
    embed_seconds = time.perf_counter() - start
    runs: list[tuple[str, str, dict]] = []
    for method in sorted(TOKENIZER_METHODS):
        if args.methods and method not in args.methods:
            continue
        runs.append((method, method, {}))
        if method == "rq-kmeans":
            runs.append(("rq-kmeans (balanced)", method, {"balanced": True}))
    rows = []
    for label, method, overrides in runs:
        cls = get_tokenizer_class(method)
        if method in _EMBEDDING_METHODS and args.threads is not None:
            overrides = {**overrides, "num_threads": args.threads}
        if method == "rq-vae" and args.rqvae_epochs is not None:
            overrides = {**overrides, "epochs": args.rqvae_epochs}
        row = {"method": label}
        try:
            tokenizer = cls(**overrides)
            wall = time.perf_counter()
            tokenizer.fit(data.catalog, sequences=split.train_sequences, embeddings=embeddings)
            wall = time.perf_counter() - wall
        except Exception as error:  # noqa: BLE001 - report the failure in the table, keep benchmarking
            row["error"] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
            rows.append(row)
            continue
        stats = tokenizer.stats
        row.update(
            fit_seconds=stats["fit_seconds"],
            wall_seconds=wall,
            code_length=stats["code_length"],
            codebook_sizes=stats["codebook_sizes"],
            collision_rate_before=stats["collision_rate_before"],
            collision_rate_after=stats["collision_rate_after"],
            utilisation=stats["utilisation"],
            relative_error=stats.get("relative_error"),
            config=tokenizer.config.to_dict(),
        )
        rows.append(row)
    return {
        "dataset": "amazon-beauty",
        "num_items": data.num_items,
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "embedding_dim": int(embeddings.shape[1]),
        "embed_seconds_cached": embed_seconds,
        "results": rows,
    }


def _synthetic(num_items: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit-normalised mixture of 4,096 Gaussians, built in float32 chunks (no float64 temporaries)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4096, dim), dtype=np.float32)
    x = np.empty((num_items, dim), dtype=np.float32)
    for start in range(0, num_items, 100_000):
        end = min(start + 100_000, num_items)
        x[start:end] = centers[rng.integers(0, 4096, end - start)]
        x[start:end] += 0.5 * rng.standard_normal((end - start, dim), dtype=np.float32)
        x[start:end] /= np.linalg.norm(x[start:end], axis=1, keepdims=True)
    return x


def _large_worker(balanced: bool, num_items: int, threads: int | None) -> dict:
    """One 1M rq-kmeans run (called in a subprocess); returns timings and this process's peak RSS."""
    from genrec.tokenization.collisions import collision_stats
    from genrec.tokenization.rq_kmeans import residual_kmeans

    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    x = _synthetic(num_items, 384)
    data_seconds = time.perf_counter() - start
    rss_data = _peak_rss_mb()
    start = time.perf_counter()
    codes, _, stats = residual_kmeans(x, [256, 256, 256], balanced=balanced, max_fit_samples=100_000, seed=0)
    seconds = time.perf_counter() - start
    sizes = np.bincount(codes[:, 0], minlength=256)
    return {
        "variant": "balanced" if balanced else "plain",
        "num_items": num_items,
        "dim": 384,
        "codebook_sizes": [256, 256, 256],
        "max_fit_samples": 100_000,
        "fit_seconds": seconds,
        "data_seconds": data_seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_data_mb": rss_data,
        "relative_error_per_level": stats["relative_error"],
        "kmeans_iters": stats["kmeans_iters"],
        "level0_cluster_size_min_max": [int(sizes.min()), int(sizes.max())],
        "collision_rate": collision_stats(codes)["collision_rate"],
        "torch_threads": torch.get_num_threads(),
    }


def _large(args) -> list[dict]:
    out = []
    for balanced in (False, True):
        command = [sys.executable, __file__, "--large-worker", "balanced" if balanced else "plain",
                   "--large-items", str(args.large_items)]
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            out.append({"variant": "balanced" if balanced else "plain", "error": result.stderr[-2000:]})
            continue
        out.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return out


def _fmt_list(values, digits=3) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=None, help="only these methods (default: all registered)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for embedding-based fits")
    parser.add_argument("--rqvae-epochs", type=int, default=None, help="override rq-vae epochs")
    parser.add_argument("--large", action="store_true", help="also run 1M × 384 synthetic rq-kmeans")
    parser.add_argument("--only-large", action="store_true", help="only the 1M run")
    parser.add_argument("--large-items", type=int, default=1_000_000)
    parser.add_argument("--large-worker", choices=["plain", "balanced"], help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "bench_tokenization.json"))
    args = parser.parse_args()

    if args.large_worker:
        print(json.dumps(_large_worker(args.large_worker == "balanced", args.large_items, args.threads)))
        return 0

    report = {
        "benchmark": "tokenization",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "threads_for_embedding_fits": args.threads,
    }
    if not args.only_large:
        report["beauty"] = _beauty(args)
        beauty = report["beauty"]
        print(f"Amazon Beauty: {beauty['num_items']} items, {beauty['embedding_model']} "
              f"({beauty['embedding_dim']}-d, loaded from cache in {beauty['embed_seconds_cached']:.2f}s)")
        header = f"{'method':<22} {'fit s':>8} {'L':>2} {'codebooks':<26} {'coll. before':>12} {'after':>6}  utilisation per level / rel. error"
        print(header)
        print("-" * len(header))
        for row in beauty["results"]:
            if "error" in row:
                print(f"{row['method']:<22} ERROR {row['error']}")
                continue
            extra = f" / {row['relative_error']:.3f}" if row.get("relative_error") is not None else ""
            sizes = str(row["codebook_sizes"])
            sizes = sizes if len(sizes) <= 26 else sizes[:23] + "..."
            print(f"{row['method']:<22} {row['fit_seconds']:>8.2f} {row['code_length']:>2} {sizes:<26} "
                  f"{row['collision_rate_before']:>12.4f} {row['collision_rate_after']:>6.3f}  "
                  f"{_fmt_list(row['utilisation'][:5], 3)}{extra}")
    if args.large or args.only_large:
        report["large"] = _large(args)
        print(f"\nrq-kmeans on {args.large_items:,} synthetic items × 384 (3 × 256, fit on 100k, assign all)")
        for row in report["large"]:
            if "error" in row:
                print(f"{row['variant']:<9} ERROR {row['error']}")
                continue
            print(f"{row['variant']:<9} fit {row['fit_seconds']:7.1f}s  peak RSS {row['peak_rss_mb'] / 1024:5.2f} GB  "
                  f"rel. error {_fmt_list(row['relative_error_per_level'])}  level-0 sizes {row['level0_cluster_size_min_max']}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
