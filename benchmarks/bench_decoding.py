"""Benchmark catalog-constrained decoding: public-repo trie vs CatalogLogitsProcessor vs genrec's fast path.

Same model for every row: a small random T5-like encoder-decoder (d_model 128, 4 + 4 layers), batch of 32
histories (20 items x 4 codes). Catalogs: 10k / 100k / 1M random 4-level items (256 codes a level), and
one large-vocabulary case (49,152-token vocabulary, variable-length titles ending in eos). Rows:

  (a) hf+dict-trie   HF generate + Python dict trie via prefix_allowed_tokens_fn (OpenP5/MiniOneRec way)
  (b) hf+processor   HF generate + genrec CatalogLogitsProcessor
  (c) genrec-fast    genrec.decoding.beam_search (cached, one kernel step per level)
  (d) hf-unconstr. / fast-unconstr.   the same two engines without any constraint

Usage:
    python benchmarks/bench_decoding.py                       # full run (CPU: ~10 min on 2 cores)
    python benchmarks/bench_decoding.py --sizes 10000 --beams 10 --repeats 1 --no-titles   # smoke run
    python benchmarks/bench_decoding.py --busy                # beside a busy process: OpenMP wait policies
Writes benchmarks/results/bench_decoding.json (atomically) and prints a table and a final JSON line.

``--busy`` starts one busy background process (a Python spin loop) for its whole duration and runs a small case
(10k items, 20 beams, batch 8, paths (b) and (c)) in fresh interpreters, torch's default thread count: once with torch
imported before genrec (OpenMP keeps its default wait policy, what a script importing torch first gets) and once
with genrec imported first (``import genrec`` sets ``OMP_WAIT_POLICY=PASSIVE``). Writes
benchmarks/results/bench_decoding_busy.json.
"""

from __future__ import annotations

import sys

# OpenMP reads OMP_WAIT_POLICY when torch is imported: "--import-order torch-first" imports torch before genrec
# (the default policy stays); otherwise genrec comes first and chooses PASSIVE (unless the variable is set).
if "torch-first" in sys.argv:
    import torch  # noqa: F401
import genrec  # noqa: E402, I001

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402

from genrec.decoding import Catalog, CatalogLogitsProcessor, beam_search, beam_search_unconstrained  # noqa: E402
from genrec.utils.io import atomic_write_json  # noqa: E402

OMP_WAIT_POLICY_AT_START = os.environ.get("OMP_WAIT_POLICY")  # what OpenMP read when torch loaded

PAD, EOS, START = 0, 1, 0
NUM_SPECIAL = 3
LEVELS, CODES = 4, 256
HISTORY_ITEMS = 20


class PeakRSS:
    """Peak resident memory above the starting level while the block runs (CPU), or CUDA peak allocation."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = self._rss()
        self.stop = False
        self.peak = self.base

        def poll():
            while not self.stop:
                self.peak = max(self.peak, self._rss())
                time.sleep(0.002)

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.stop = True
            self.thread.join()
            self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def random_codes(num_items: int, generator: np.random.Generator) -> torch.Tensor:
    """Distinct random 4-level items, codes offset into the vocabulary (level l -> 3 + 256 l + code)."""
    keys = np.unique(generator.integers(0, CODES**LEVELS, size=int(num_items * 1.01) + 16, dtype=np.int64))
    keys = generator.permutation(keys)[:num_items]
    digits = np.stack([(keys // CODES ** (LEVELS - 1 - level)) % CODES for level in range(LEVELS)], 1)
    return torch.from_numpy(digits + NUM_SPECIAL + CODES * np.arange(LEVELS))


def random_titles(num_items: int, vocab: int, generator: np.random.Generator) -> list[list[int]]:
    """Title-like token sequences: a shared first word (brand) from 300, then 2-11 random tokens."""
    brands = generator.integers(NUM_SPECIAL, vocab, size=300)
    titles, seen = [], set()
    while len(titles) < num_items:
        length = int(generator.integers(2, 12))
        title = (int(generator.choice(brands)), *map(int, generator.integers(NUM_SPECIAL, vocab, size=length)))
        if title not in seen:
            seen.add(title)
            titles.append(list(title))
    return titles


def dict_trie(sequences: list[list[int]]) -> dict:
    """The public repos' index: nested Python dicts, one per trie node."""
    root: dict = {}
    for sequence in sequences:
        node = root
        for token in sequence:
            node = node.setdefault(token, {})
    return root


def deep_size(trie: dict) -> int:
    total, stack = 0, [trie]
    while stack:
        node = stack.pop()
        total += sys.getsizeof(node)
        stack.extend(node.values())
    return total


def make_model(vocab: int) -> T5ForConditionalGeneration:
    config = T5Config(vocab_size=vocab, d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=4,
                      num_decoder_layers=4, decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS,
                      feed_forward_proj="relu", tie_word_embeddings=True)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval()


def timed(fn, repeats: int, device: torch.device, warmup: bool = True):
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return out, float(min(times))


def run_case(name, model, catalog, sequences, histories, mask, beams, top_k, repeats, device, eos, lines,
             only_paths=None):
    batch = histories.shape[0]
    max_new = catalog.max_length
    rows = []
    trie = dict_trie(sequences) if sequences is not None else None
    trie_bytes = deep_size(trie) / catalog.num_items if trie is not None else None
    gen_kwargs = dict(input_ids=histories, attention_mask=mask, num_beams=beams, num_return_sequences=top_k,
                      max_new_tokens=max_new, do_sample=False, length_penalty=0.0, early_stopping=True,
                      eos_token_id=eos, pad_token_id=PAD)

    def allowed(batch_id, sent):
        node = trie
        for token in sent[1:].tolist():
            node = node.get(token)
            if node is None:
                return [eos if eos is not None else PAD]
        return list(node.keys()) if node else [eos if eos is not None else PAD]

    def hf_items(sequences_out):
        return catalog.items_of(sequences_out[:, 1:].cpu()).view(batch, top_k)

    paths = {
        "(a) hf+dict-trie": lambda: hf_items(model.generate(prefix_allowed_tokens_fn=allowed, **gen_kwargs)),
        "(b) hf+processor": lambda: hf_items(model.generate(
            logits_processor=[CatalogLogitsProcessor(catalog, prompt_length=1, eos_token_id=eos)], **gen_kwargs)),
        "(c) genrec-fast": lambda: beam_search(model, catalog, input_ids=histories, attention_mask=mask,
                                               num_beams=beams, top_k=top_k)[0],
        "(d) hf-unconstrained": lambda: hf_items(model.generate(**gen_kwargs)),
        "(d) fast-unconstrained": lambda: beam_search_unconstrained(
            model, input_ids=histories, attention_mask=mask, num_beams=beams, top_k=top_k,
            max_new_tokens=max_new)[0],
    }
    if only_paths:
        paths = {path: fn for path, fn in paths.items() if path.split()[0].strip("()") in only_paths}
    # warm-up, then `repeats` round-robin rounds over the paths, so that every path sees the same load on a
    # shared machine; the best (minimum) time of the rounds is reported
    outputs, memories, times = {}, {}, {path: [] for path in paths}
    for path, fn in paths.items():
        with PeakRSS(device) as memory:
            outputs[path] = fn()
        memories[path] = memory.mb
    for _ in range(repeats):
        for path, fn in paths.items():
            _, seconds = timed(fn, 1, device, warmup=False)
            times[path].append(seconds)
    for path in paths:
        out, seconds = outputs[path], min(times[path])
        memory_mb = memories[path]
        if path == "(d) fast-unconstrained":
            padded = torch.where(out == eos, -1, out) if eos is not None else out
            items = catalog.items_of(padded.reshape(batch * top_k, -1).cpu())
        else:
            items = out.reshape(-1).cpu()
        returned = items.numel()
        invalid = float((items < 0).sum()) / returned
        index_bytes = {"(a) hf+dict-trie": trie_bytes, "(b) hf+processor": catalog.bytes_per_item,
                       "(c) genrec-fast": catalog.bytes_per_item}.get(path)
        row = dict(case=name, items=catalog.num_items, beams=beams, path=path, users_per_s=batch / seconds,
                   ms_per_batch=1000 * seconds, peak_mb=memory_mb, index_bytes_per_item=index_bytes,
                   invalid_rate=invalid)
        rows.append(row)
        line = (f"{name:>10} {catalog.num_items:>8} {beams:>5}  {path:<24} {row['users_per_s']:>9.1f} "
                f"{row['ms_per_batch']:>9.1f} {row['peak_mb']:>8.1f} "
                f"{'' if index_bytes is None else f'{index_bytes:.1f}':>9} {invalid:>8.3f}")
        print(line, flush=True)
        lines.append(line)
    trie = None  # free it (the `allowed` closure reads this name; deleting it left a dangling reference)
    by_path = {r["path"]: r for r in rows}
    if len(by_path) < 5:  # a --paths subset: no ratios
        return rows, {}
    ratios = {
        "fast_vs_dict_trie": by_path["(c) genrec-fast"]["users_per_s"] / by_path["(a) hf+dict-trie"]["users_per_s"],
        "processor_cost": by_path["(b) hf+processor"]["ms_per_batch"] / by_path["(d) hf-unconstrained"]["ms_per_batch"],
        "fast_cost": by_path["(c) genrec-fast"]["ms_per_batch"] / by_path["(d) fast-unconstrained"]["ms_per_batch"],
    }
    print(f"{'':>10} ratios: fast/(a) users/s = {ratios['fast_vs_dict_trie']:.2f}x, (b)/(d-hf) time = "
          f"{ratios['processor_cost']:.2f}x, (c)/(d-fast) time = {ratios['fast_cost']:.2f}x", flush=True)
    return rows, ratios


def kernel_check(device: torch.device, catalog: Catalog, repeats: int) -> dict:
    """Time the Triton kernel against the torch reference on one 1M-catalog step (GPU only)."""
    from genrec.kernels import constrained_topk_reference, constrained_topk_triton

    batch, beams, depth = 32, 20, 1
    cat = catalog.to(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    nodes = torch.randint(0, cat.num_nodes[depth], (batch, beams), generator=generator).to(device)
    scores = torch.randn(batch, beams, generator=generator).to(device)
    logits = torch.randn(batch * beams, cat.token_hi[depth] - cat.token_lo[depth], generator=generator).to(device)
    kwargs = dict(token_lo=cat.token_lo[depth], max_children=cat.max_children[depth], num_beams=beams,
                  num_finished=10)
    args = (logits, scores, nodes, cat.child_ptr[depth], cat.child_token[depth], cat.is_leaf[depth + 1])
    ref, ref_s = timed(lambda: constrained_topk_reference(*args, **kwargs), repeats * 10, device)
    tri, tri_s = timed(lambda: constrained_topk_triton(*args, **kwargs), repeats * 10, device)
    match = all(torch.allclose(a.float(), b.float(), atol=1e-5) for a, b in zip(ref, tri))
    return {"reference_ms": 1000 * ref_s, "triton_ms": 1000 * tri_s, "match": match}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="default 10000 100000 1000000 (--busy: 10000)")
    parser.add_argument("--beams", type=int, nargs="+", default=None, help="default 10 20 (--busy: 20)")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=None, help="histories per batch (default 32; --busy: 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--title-items", type=int, default=20_000)
    parser.add_argument("--title-beams", type=int, nargs="+", default=[10])
    parser.add_argument("--no-titles", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 is steadier on a shared machine")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--paths", nargs="+", default=None, choices=["a", "b", "c", "d"],
                        help="run only these paths (default: all; ratios need all)")
    parser.add_argument("--busy", action="store_true",
                        help="beside one busy background process: torch-first vs genrec-first imports (see above)")
    parser.add_argument("--import-order", choices=["genrec-first", "torch-first"], default="genrec-first",
                        help="read at import time (see the top of this file); recorded in the output")
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/bench_decoding.json (--busy: bench_decoding_busy.json)")
    args = parser.parse_args(argv)
    busy_defaults = args.busy  # smaller case beside a busy process: torch-first runs ~50x slower there
    args.sizes = args.sizes if args.sizes is not None else ([10_000] if busy_defaults else [10_000, 100_000, 1_000_000])
    args.beams = args.beams or ([20] if busy_defaults else [10, 20])
    args.batch = args.batch or (8 if busy_defaults else 32)
    results_dir = Path(__file__).resolve().parent / "results"
    if args.busy:
        return run_busy(args, Path(args.output) if args.output else results_dir / "bench_decoding_busy.json")
    args.output = args.output or str(results_dir / "bench_decoding.json")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = np.random.default_rng(0)
    header = (f"{'case':>10} {'items':>8} {'beams':>5}  {'path':<24} {'users/s':>9} {'ms/batch':>9} "
              f"{'peak MB':>8} {'idx B/it':>9} {'invalid':>8}")
    print(header)
    lines = [header]
    results, ratios, builds = [], [], []

    model = make_model(NUM_SPECIAL + LEVELS * CODES).to(device)
    codes_hist = random_codes(HISTORY_ITEMS * args.batch, generator)
    histories = torch.cat([codes_hist.view(args.batch, -1), torch.full((args.batch, 1), EOS)], 1).to(device)
    mask = torch.ones_like(histories)
    big_catalog = None
    for size in args.sizes:
        codes = random_codes(size, generator)
        start = time.perf_counter()
        catalog = Catalog.from_codes(codes)
        builds.append({"items": size, "build_s": time.perf_counter() - start, "bytes_per_item": catalog.bytes_per_item})
        print(f"# built {size} items in {builds[-1]['build_s']:.2f} s, {catalog.bytes_per_item:.1f} B/item", flush=True)
        for beams in args.beams:
            rows, ratio = run_case("codes", model, catalog, codes.tolist(), histories, mask, beams, args.top_k,
                                   args.repeats, device, None, lines, only_paths=args.paths)
            results += rows
            if ratio:
                ratios.append({"case": "codes", "items": size, "beams": beams, **ratio})
        big_catalog = catalog
    if not args.no_titles:
        vocab = 49_152
        title_model = make_model(vocab).to(device)
        titles = random_titles(args.title_items, vocab, generator)
        start = time.perf_counter()
        catalog = Catalog.from_sequences(titles, eos_token_id=EOS)
        builds.append({"items": len(titles), "build_s": time.perf_counter() - start,
                       "bytes_per_item": catalog.bytes_per_item, "case": "titles"})
        title_hist = torch.randint(NUM_SPECIAL, vocab, (args.batch, 60), generator=torch.Generator().manual_seed(1))
        title_hist = title_hist.to(device)
        for beams in args.title_beams:
            rows, ratio = run_case("titles-49k", title_model, catalog, [t + [EOS] for t in titles], title_hist,
                                   torch.ones_like(title_hist), beams, args.top_k, args.repeats, device, EOS, lines)
            results += rows
            ratios.append({"case": "titles-49k", "items": len(titles), "beams": beams, **ratio})
    kernel = kernel_check(device, big_catalog, args.repeats) if device.type == "cuda" and big_catalog else None
    summary = {
        "benchmark": "bench_decoding",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "import_order": args.import_order,
        "omp_wait_policy": OMP_WAIT_POLICY_AT_START,
        "omp_wait_policy_set_by_genrec": genrec.OPENMP_WAIT_POLICY_SET,
        "batch": args.batch, "top_k": args.top_k, "repeats": args.repeats,
        "builds": builds, "rows": results, "ratios": ratios, "kernel_vs_reference": kernel,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, summary)
    print(json.dumps({"benchmark": "bench_decoding", "device": summary["device"], "ratios": ratios,
                      "builds": builds, "kernel_vs_reference": kernel}))
    return 0


def run_busy(args, output: Path) -> int:
    """The small case in fresh interpreters, torch-first vs genrec-first, beside one busy background process."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one busy process, our own
    runs = []
    try:
        time.sleep(1.0)  # let it reach full speed
        for order in ("torch-first", "genrec-first"):
            # torch's default wait policy and thread count, unless --threads is given
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            with tempfile.TemporaryDirectory() as tmp:
                child_output = Path(tmp) / "run.json"
                command = [sys.executable, __file__, "--import-order", order, "--no-titles", "--device", "cpu",
                           "--sizes", *map(str, args.sizes), "--beams", *map(str, args.beams),
                           "--paths", *(args.paths or ["b", "c"]), "--repeats", str(args.repeats),
                           "--batch", str(args.batch), "--top-k", str(args.top_k), "--output", str(child_output)]
                if args.threads is not None:
                    command += ["--threads", str(args.threads)]
                print(f"# {order}: {' '.join(command[1:])}", flush=True)
                start = time.perf_counter()
                subprocess.run(command, env=env, check=True, timeout=600)
                child = json.loads(child_output.read_text())
            runs.append({"import_order": order, "omp_wait_policy": child["omp_wait_policy"],
                         "omp_wait_policy_set_by_genrec": child["omp_wait_policy_set_by_genrec"],
                         "torch_threads": child["torch_threads"], "wall_s": round(time.perf_counter() - start, 1),
                         "rows": child["rows"]})
        load = os.getloadavg()
    finally:
        spinner.kill()
        spinner.wait()
    summary = {"benchmark": "bench_decoding --busy", "device": platform.processor() or "cpu",
               "cpu_count": os.cpu_count(), "busy_processes_started": 1, "loadavg_1_5_15_at_end": load,
               "repeats": args.repeats, "batch": args.batch, "top_k": args.top_k, "runs": runs}
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, summary)
    print(f"{'import order':<14} {'OMP_WAIT_POLICY':<16} {'threads':>7}  {'path':<20} {'users/s':>9}")
    for run in runs:
        for row in run["rows"]:
            print(f"{run['import_order']:<14} {str(run['omp_wait_policy']):<16} {run['torch_threads']:>7}  "
                  f"{row['path']:<20} {row['users_per_s']:>9.1f}")
    print(json.dumps({"benchmark": summary["benchmark"], "loadavg": load,
                      "users_per_s": {f"{run['import_order']} {row['path']}": round(row["users_per_s"], 1)
                                      for run in runs for row in run["rows"]}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
