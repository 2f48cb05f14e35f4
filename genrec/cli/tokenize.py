"""``genrec tokenize``: fit an item tokenizer on a dataset, print its statistics and save it.

Example::

    genrec tokenize --dataset amazon-beauty --method collaborative --output out/beauty-collab \\
        --seed 0 --set num_clusters=10 --set leaf_size=20

The tokenizer is fitted on the leave-one-out TRAINING histories only (validation and test targets
never shape the ids). Embedding-based methods (``rq-kmeans``, ``rq-vae``, ``fsq``, or a ``hybrid``
with one of them) get item text embeddings from ``genrec.tokenization.embeddings.embed_catalog``
(cached on disk), or from ``--embeddings FILE.npy``. ``--set key=value`` overrides one config field;
values are parsed as JSON when they parse (``3``, ``true``, ``["semantic","random"]``), else kept
as strings. Methods and their fields: ``--list-methods``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenize",
        help="fit an item tokenizer (semantic ids) and save it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", help="bundled name (amazon-beauty) or a dataset path")
    parser.add_argument("--method", help="tokenizer scheme, e.g. sequential, collaborative, rq-kmeans")
    parser.add_argument("--output", help="folder to write (its parent must exist)")
    parser.add_argument("--seed", type=int, default=None, help="config seed (default: the config's, 0)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    parser.add_argument("--embeddings", default=None, help="a .npy (num_items, d) float array of item embeddings")
    parser.add_argument("--embedding-model", default=None, help="text encoder for embedding methods")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--json", action="store_true", help="print the stats as one JSON line")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="keep duplicate events (same user, item, timestamp); dropped by default, as in training")
    from genrec.cli.data import add_table_arguments

    add_table_arguments(parser)
    parser.add_argument("--list-methods", action="store_true", help="list methods and their config fields")
    parser.set_defaults(func=run_tokenize)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values parsed as JSON when possible.

    Raises:
        ValueError: an item without ``=`` or with an empty key.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _needs_embeddings(tokenizer) -> bool:
    try:
        from genrec.tokenization.embeddings import EmbeddingItemTokenizer
    except ModuleNotFoundError:
        EmbeddingItemTokenizer = ()  # noqa: N806 - nothing is an instance of an empty tuple of types
    parts = getattr(tokenizer, "components", None) or [tokenizer]
    return any(part.requires_embeddings or isinstance(part, EmbeddingItemTokenizer) for part in parts)


def _embedding_settings(tokenizer) -> dict[str, Any]:
    parts = getattr(tokenizer, "components", None) or [tokenizer]
    for part in parts:
        if hasattr(part.config, "embedding_model"):
            return {
                "model_name": getattr(part.config, "embedding_model", None),
                "cache_dir": getattr(part.config, "embedding_cache_dir", None),
                "fields": getattr(part.config, "text_fields", None),
            }
    return {"model_name": None, "cache_dir": None, "fields": None}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) > 12:
        shown = ", ".join(_fmt(v) for v in value[:10])
        return f"[{shown}, ... ({len(value)} levels)]"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _list_methods() -> int:
    from genrec.tokenization import TOKENIZER_METHODS, get_tokenizer_class

    get_tokenizer_class("sequential")  # imports every scheme module
    for method in sorted(TOKENIZER_METHODS):
        cls = TOKENIZER_METHODS[method]
        fields = []
        for f in dataclasses.fields(cls.config_class):
            if f.name == "method":
                continue
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            fields.append(f"{f.name}={json.dumps(default)}")
        print(f"{method:<20} {', '.join(fields)}")
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    if args.list_methods:
        return _list_methods()
    missing = [name for name in ("dataset", "method", "output") if not getattr(args, name)]
    if missing:
        raise ValueError(f"missing required option(s): {', '.join('--' + m for m in missing)}")

    import numpy as np

    from genrec.cli.data import table_options
    from genrec.data import leave_one_out, load_dataset
    from genrec.data.registry import resolve_dataset_path
    from genrec.tokenization import get_tokenizer_class
    from genrec.utils.io import atomic_directory, check_output_folder

    try:
        dataset_path = {"the dataset": resolve_dataset_path(args.dataset)[1]}
    except FileNotFoundError:  # reported with the full message by load_dataset below
        dataset_path = {}
    output = check_output_folder(args.output, overwrite=args.overwrite, protect=dataset_path)
    cls = get_tokenizer_class(args.method)
    overrides = parse_overrides(args.overrides)
    if args.seed is not None:
        overrides["seed"] = args.seed
    tokenizer = cls(**overrides)
    if args.embeddings and not Path(args.embeddings).is_file():
        raise FileNotFoundError(f"--embeddings file {args.embeddings!r} does not exist")

    start = time.perf_counter()
    # read as `genrec train` reads `data:` (the same columns, filter and duplicate handling give the same catalog)
    data = load_dataset(args.dataset, keep_duplicates=args.keep_duplicates, **table_options(args))
    split = leave_one_out(data)
    load_seconds = time.perf_counter() - start

    embeddings = None
    embed_seconds = None
    if args.embeddings:
        try:
            embeddings = np.load(args.embeddings, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"--embeddings file {args.embeddings!r} is not a readable .npy array ({error})") from None
    elif _needs_embeddings(tokenizer):
        from genrec.tokenization.embeddings import embed_catalog

        settings = _embedding_settings(tokenizer)
        begin = time.perf_counter()
        embeddings = embed_catalog(
            data.catalog,
            model_name=args.embedding_model or settings["model_name"],
            cache_dir=args.cache_dir or settings["cache_dir"],
            fields=settings["fields"],
        )
        embed_seconds = time.perf_counter() - begin

    tokenizer.fit(data.catalog, sequences=split.train_sequences, embeddings=embeddings)
    with atomic_directory(output) as staging:  # --overwrite replaces the folder, and only on success
        tokenizer.save_pretrained(staging)
    stats = tokenizer.stats
    stats["dataset"] = data.name
    stats["load_seconds"] = load_seconds
    if embed_seconds is not None:
        stats["embed_seconds"] = embed_seconds
    stats["output"] = str(output)
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"item tokenizer {tokenizer.method!r} on {data.name}: {stats['num_items']:,} items -> {output}")
    rows = [
        ("code length", stats["code_length"]),
        ("mean code length", stats["mean_code_length"]),
        ("codebook sizes", stats["codebook_sizes"]),
        ("vocab size", stats["vocab_size"]),
        ("utilisation per level", stats["utilisation"]),
        ("collision rate before", stats["collision_rate_before"]),
        ("collision groups before", stats["num_collision_groups_before"]),
        ("max group size", stats["max_group_size"]),
        ("collision rate after", stats["collision_rate_after"]),
        ("disambiguation level added", stats["disambiguation_level_added"]),
        ("fit seconds", stats["fit_seconds"]),
    ]
    if embed_seconds is not None:
        rows.append(("embed seconds", embed_seconds))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {_fmt(value)}")
    return 0
