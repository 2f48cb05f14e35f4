#!/usr/bin/env python
"""Benchmark: training throughput of genrec presets on the real data (examples and next-item targets per second).

For each preset it builds the model and its training data exactly as ``genrec train`` does (same
``build_model``, same dataset and collator), then times ``--steps`` optimizer steps (AdamW, forward + backward +
step, after ``--warmup`` untimed steps) on consecutive shuffled batches. It reports:

* ``rows/s``: training rows per second (a row is one user sequence for the decoder-only models, where every
  position predicts its next item, and one (history window, target) pair for the encoder-decoders);
* ``targets/s``: supervised next-item predictions per second (the real learning signal: a row of a
  decoder-only model holds one target per real position);
* ``epoch_s``: the estimated seconds of one pass over the training rows.

Models run one after another (never two at once), all in this process with the same thread count, so the
ratios between rows are the comparison; absolute numbers depend on the machine's load (recorded).

    python benchmarks/bench_train_speed.py --configs scripts/configs/recgpt-beauty.yaml \\
        scripts/configs/recgpt-item-beauty.yaml --steps 20

Prints a table and a final JSON line, writes ``benchmarks/results/bench_train_speed.json`` atomically.

**``--seq2seq`` mode: P5 / OneRec's cheap training paths, before and after.** For each of P5 and OneRec it times
the preset as it is today (token-level inputs: every code token of every history item is an encoder position,
P5 adds separators; every sliding window an example), then ``model.input_granularity=item`` (one encoder position
per history item), then that plus ``training.train_targets=random_cut`` (one window per user per epoch), all three
at the token preset's batch size, then the item preset itself (``{p5,onerec}-item-beauty.yaml``: item inputs with
text + collaborative item vectors, random cuts, its own batch size). Batches come from the Trainer's own
dataloader (``RecommendationTrainer.get_train_dataloader``: the same sampler -- ``group_by_length`` /
``random_cut`` -- and collator as ``genrec train``); the item tokenizer is fitted once and shared (all presets use
the same one). Per row: ``ex/s`` (training examples per second: an example is one (history, next item[s]) window),
``enc_tok/ex`` (real encoder positions per example) and ``enc_pad/ex`` (positions after padding: what the encoder
computes), ``dec_tok/ex`` (label tokens), ``ex/epoch`` and ``epoch_s`` = ex/epoch / ex/s::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_train_speed.py --seq2seq --steps 30 --threads 1

writes ``benchmarks/results/bench_train_speed_seq2seq.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULT = REPO / "benchmarks" / "results" / "bench_train_speed.json"
SEQ2SEQ_RESULT = REPO / "benchmarks" / "results" / "bench_train_speed_seq2seq.json"
CONFIGS = REPO / "scripts" / "configs"
# --seq2seq: (label, config, overrides) per row, P5 then OneRec; each token preset's rows share its batch size
ITEM = "model.input_granularity=item"
CUTS = "training.train_targets=random_cut"
SEQ2SEQ_VARIANTS = [
    row
    for name in ("p5", "onerec")
    for row in (
        (f"{name} token, all windows (today)", CONFIGS / f"{name}-beauty.yaml", []),
        (f"{name} item, all windows", CONFIGS / f"{name}-beauty.yaml", [ITEM]),
        (f"{name} item, random cut", CONFIGS / f"{name}-beauty.yaml", [ITEM, CUTS]),
        (f"{name} item preset", CONFIGS / f"{name}-item-beauty.yaml", []),
    )
]



def timed_steps(model, loader, optimizer, warmup: int, steps: int):
    """Train ``warmup + steps`` optimizer steps on ``loader`` (cycled); yields ``(batch, step seconds, seconds to get
    the batch)`` for each of the ``steps`` measured ones (forward, backward and optimizer step; the warm-up is not
    timed)."""
    model.train()
    batches = iter(loader)
    for step in range(warmup + steps):
        data_start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            yield batch, time.perf_counter() - start, start - data_start

def measure(config_path: str, overrides: list[str], *, steps: int, warmup: int, seed: int) -> dict:
    """Time ``steps`` optimizer steps of one preset; returns its throughput row."""
    import torch
    from torch.utils.data import DataLoader

    from genrec.training import load_run_config
    from genrec.training.pipeline import build_model, load_split, training_data

    run = load_run_config(config_path, overrides)
    torch.manual_seed(seed)
    data, train_sequences, _, _ = load_split(run.data.dataset, run.data.max_users)
    model = build_model(run.model_type, run.model_kwargs, data.item_ids, catalog=data.catalog,
                        train_sequences=train_sequences)
    seq2seq = run.model_type in ("p5", "onerec")
    max_length = getattr(model.config, "max_position_embeddings", None) or model.config.max_history_items
    dataset, collator = training_data(model, train_sequences, data.item_index, max_length=max_length, seed=seed)
    batch_size = run.training.per_device_train_batch_size
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collator,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.training.learning_rate)
    rows = targets = 0
    elapsed = 0.0
    for batch, seconds, _ in timed_steps(model, loader, optimizer, warmup, steps):
        elapsed += seconds
        labels = batch["labels"]
        rows += labels.shape[0]
        # decoder-only rows (NextItemDataset): one target per labelled position; encoder-decoder rows: one
        # target item (OneRec session rows count as one: their extra items are conditioned on the first)
        targets += labels.shape[0] if seq2seq else int((labels > 0).sum())
    rows_per_s = rows / elapsed
    return {
        "config": str(config_path),
        "model": run.model_type,
        "overrides": overrides,
        "batch_size": batch_size,
        "train_rows": len(dataset),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows_per_s, 2),
        "targets_per_s": round(targets / elapsed, 2),
        "epoch_s": round(len(dataset) / rows_per_s, 1),
    }


class _Shared:
    """What the --seq2seq rows share: the loaded split, fitted item tokenizers and item vectors (by their config)."""

    def __init__(self):
        self.split = {}
        self.tokenizers = {}
        self.vectors = {}

    def load(self, dataset: str, max_users):
        from genrec.training.pipeline import load_split

        key = (dataset, max_users)
        if key not in self.split:
            self.split[key] = load_split(dataset, max_users)
        return self.split[key]

    def build(self, run, data, train_sequences, seed: int):
        """The run's model as ``genrec train`` builds it, reusing a tokenizer / item vectors fitted for another row."""
        from genrec.models.generative import dataset_item_input_vectors
        from genrec.models.registry import get_model_record
        from genrec.tokenization import get_tokenizer_class

        model_class = get_model_record(run.model_type).load_model_class()
        config = model_class.config_class(**run.model_kwargs)
        key = json.dumps([config.item_tokenizer_method, config.item_tokenizer_config], sort_keys=True)
        if key not in self.tokenizers:
            options = {"seed": seed, **(config.item_tokenizer_config or {})}
            start = time.perf_counter()
            self.tokenizers[key] = get_tokenizer_class(config.item_tokenizer_method)(options).fit(
                data.catalog, sequences=train_sequences)
            print(f"  item tokenizer {config.item_tokenizer_method} fitted in {time.perf_counter() - start:.1f}s",
                  flush=True)
        vectors = None
        if config.input_granularity == "item" and config.item_vectors is not None:
            vector_key = json.dumps([config.item_vectors, config.item_tokenizer_config], sort_keys=True)
            if vector_key not in self.vectors:
                self.vectors[vector_key] = dataset_item_input_vectors(
                    data.catalog, config.item_vectors, train_sequences, tokenizer_config=config.item_tokenizer_config)
            vectors = self.vectors[vector_key]
        return model_class.from_dataset(data.catalog, train_sequences, seed=seed, item_tokenizer=self.tokenizers[key],
                                        item_vector_table=vectors, **run.model_kwargs)


def measure_seq2seq(label: str, config_path, overrides: list[str], shared: _Shared, *, steps: int, warmup: int,
                    seed: int) -> dict:
    """Time ``steps`` optimizer steps of one P5 / OneRec variant on the Trainer's own training batches."""
    import tempfile

    import torch

    from genrec.training import load_run_config
    from genrec.training.pipeline import training_data
    from genrec.training.trainer import RecommendationTrainer, random_cut_sampler

    with tempfile.TemporaryDirectory(prefix="bench-train-speed-") as scratch:
        run = load_run_config(config_path, [*overrides, "training.report_to=none", 'training.eval_strategy="no"',
                                             f"training.seed={seed}"],
                              output_dir=scratch)
        torch.manual_seed(seed)
        data, train_sequences, _, _ = shared.load(run.data.dataset, run.data.max_users)
        build_start = time.perf_counter()
        model = shared.build(run, data, train_sequences, seed)
        dataset, collator = training_data(model, train_sequences, data.item_index,
                                          max_length=model.config.max_history_items, seed=seed)
        trainer = RecommendationTrainer(model=model, args=run.training, train_dataset=dataset,
                                        data_collator=collator)
        loader = trainer.get_train_dataloader()
        per_epoch = (len(random_cut_sampler(dataset, run.training)) if run.training.train_targets == "random_cut"
                     else len(dataset))
        build_seconds = time.perf_counter() - build_start
        model = trainer.model
        optimizer = torch.optim.AdamW(model.parameters(), lr=run.training.learning_rate)
        examples = real = padded = labels = 0
        elapsed = data_seconds = 0.0
        for batch, seconds, batch_seconds in timed_steps(model, loader, optimizer, warmup, steps):
            elapsed += seconds
            data_seconds += batch_seconds
            examples += batch["labels"].shape[0]
            real += int(batch["attention_mask"].sum())
            padded += batch["input_ids"].numel()
            labels += int((batch["labels"] != -100).sum())
    config = model.config
    examples_per_s = examples / elapsed
    return {
        "label": label,
        "config": str(Path(config_path).relative_to(REPO)) if Path(config_path).is_relative_to(REPO) else str(config_path),
        "overrides": overrides,
        "model": run.model_type,
        "input_granularity": config.input_granularity,
        "item_vector_dim": config.item_vector_dim,
        "train_targets": run.training.train_targets,
        "train_sampling_strategy": str(run.training.train_sampling_strategy),
        "batch_size": run.training.per_device_train_batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "seconds": round(elapsed, 3),
        "data_seconds": round(data_seconds, 3),
        "build_seconds": round(build_seconds, 1),
        "examples_per_s": round(examples_per_s, 2),
        "encoder_tokens_per_example": round(real / examples, 2),
        "encoder_padded_tokens_per_example": round(padded / examples, 2),
        "decoder_tokens_per_example": round(labels / examples, 2),
        "examples_per_epoch": per_epoch,
        "epoch_s": round(per_epoch / examples_per_s, 1),
    }


def main_seq2seq(args) -> int:
    import torch

    from genrec.training.pipeline import machine_info
    from genrec.utils.io import atomic_write_json

    load_before = os.getloadavg()
    shared = _Shared()
    rows = []
    for label, config_path, overrides in SEQ2SEQ_VARIANTS:
        print(f"measuring {label} ...", flush=True)
        rows.append(measure_seq2seq(label, config_path, [*overrides, *args.overrides], shared, steps=args.steps,
                                    warmup=args.warmup, seed=args.seed))
        print(f"  built in {rows[-1]['build_seconds']}s, {rows[-1]['examples_per_s']} examples/s", flush=True)
    result = {"benchmark": "train_speed_seq2seq", "rows": rows, "threads": torch.get_num_threads(),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), **machine_info()}
    header = (f"{'variant':<36} {'batch':>5} {'ex/s':>8} {'enc_tok/ex':>10} {'enc_pad/ex':>10} {'dec_tok/ex':>10} "
              f"{'ex/epoch':>9} {'epoch_s':>8} {'params':>10}")
    print(header)
    for row in rows:
        print(f"{row['label']:<36} {row['batch_size']:>5} {row['examples_per_s']:>8.1f} "
              f"{row['encoder_tokens_per_example']:>10.1f} {row['encoder_padded_tokens_per_example']:>10.1f} "
              f"{row['decoder_tokens_per_example']:>10.1f} {row['examples_per_epoch']:>9,} {row['epoch_s']:>8.1f} "
              f"{row['parameters']:>10,}")
    print(f"load average before {load_before}, after {result['loadavg_after']}; threads {result['threads']}")
    atomic_write_json(args.result, result)
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", help="Run config YAMLs, measured in this order.")
    parser.add_argument("--seq2seq", action="store_true",
                        help="Measure P5 / OneRec token- vs item-level inputs and all-windows vs random-cut targets "
                             "(a fixed list of variants; --configs is not used).")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value applied to every config.")
    parser.add_argument("--steps", type=int, default=20, help="Timed optimizer steps per preset.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", default=None,
                        help=f"Where to write the JSON result (default {DEFAULT_RESULT.relative_to(REPO)}, with "
                             f"--seq2seq {SEQ2SEQ_RESULT.relative_to(REPO)}).")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        print("bench_train_speed: --steps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if bool(args.configs) == args.seq2seq:
        print("bench_train_speed: pass --configs CONFIG... or --seq2seq (one of them)", file=sys.stderr)
        return 2
    if args.result is None:
        args.result = str(SEQ2SEQ_RESULT if args.seq2seq else DEFAULT_RESULT)

    import torch

    from genrec.training.pipeline import machine_info
    from genrec.utils.io import atomic_write_json, check_output_file

    check_output_file(args.result)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seq2seq:
        return main_seq2seq(args)
    load_before = os.getloadavg()
    rows = [measure(path, args.overrides, steps=args.steps, warmup=args.warmup, seed=args.seed)
            for path in args.configs]
    result = {"benchmark": "train_speed", "rows": rows, "threads": torch.get_num_threads(),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), **machine_info()}
    header = f"{'config':<45} {'model':<7} {'batch':>5} {'rows/s':>9} {'targets/s':>10} {'epoch_s':>8} {'params':>10}"
    print(header)
    for row in rows:
        print(f"{Path(row['config']).name:<45} {row['model']:<7} {row['batch_size']:>5} {row['rows_per_s']:>9.1f} "
              f"{row['targets_per_s']:>10.1f} {row['epoch_s']:>8.1f} {row['parameters']:>10,}")
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    atomic_write_json(args.result, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
