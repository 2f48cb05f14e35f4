"""The item tokenizer base class, its registry and the folder format.

An *item tokenizer* gives every catalog item a short tuple of integer codes (a "semantic id"),
``(c_0, c_1, ..., c_{L-1})`` with ``0 <= c_l < codebook_sizes[l]``. Generative recommenders read
and write these codes as ordinary vocabulary tokens: :meth:`ItemTokenizer.build_hf_tokenizer` returns a
``transformers.PreTrainedTokenizerFast`` holding one token per ``(level, code)`` (``"<a_12>"`` is code
12 at level 0, ``"<b_3>"`` code 3 at level 1, ...), and :meth:`ItemTokenizer.item_token_ids` gives the
``(num_items, L)`` token-id table that constrained decoding consumes.

Subclassing (one class per scheme)::

    @register_tokenizer("my-scheme")
    class MySchemeTokenizer(ItemTokenizer):
        config_class = MySchemeConfig                       # an ItemTokenizerConfig dataclass
        def _fit_codes(self, catalog, *, sequences, embeddings):
            return codes, codebook_sizes                    # (num_items, L) int64, list of L ints

:meth:`ItemTokenizer.fit` times ``_fit_codes``, then (unless the class sets ``handles_collisions =
True``) appends a TIGER disambiguation level when some items share a code, records statistics and
builds the lookups. Learned weights (codebooks, networks) go through ``_state_tensors`` /
``_load_state_tensors`` and are saved in ``codes.safetensors``; other artifacts through
``_save_extra_files`` / ``_load_extra_files``.

Folder format (``save_pretrained``), version :data:`FORMAT_VERSION`:

- ``config.json``: ``format`` (``"genrec-item-tokenizer"``), ``format_version``, ``method``, ``config``
  (the scheme config), ``item_ids`` (row order), ``codebook_sizes``, ``stats``.
- ``codes.safetensors``: ``codes`` int64 ``(num_items, L)`` and every ``_state_tensors`` entry under
  the prefix ``state.``. No pickle anywhere. The folder is written atomically.

Token naming: level ``l`` is named in bijective base 26 (spreadsheet columns): ``a``..``z`` for levels
0..25, then ``aa``, ``ab``, ..., ``az``, ``ba``, ... for levels 26, 27, ... (``level_name(26) == "aa"``).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers.utils import logging

from genrec.tokenization.collisions import append_disambiguation_level, codes_are_unique, collision_stats
from genrec.tokenization.config import ItemTokenizerConfig
from genrec.utils.io import (
    atomic_directory,
    atomic_write_json,
    check_output_parent,
    replace_directory,
    staging_directory,
)

logger = logging.get_logger(__name__)

__all__ = [
    "ItemTokenizer",
    "AutoItemTokenizer",
    "TOKENIZER_METHODS",
    "register_tokenizer",
    "get_tokenizer_class",
    "level_name",
    "SPECIAL_TOKENS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CONFIG_NAME",
    "CODES_NAME",
]

FORMAT_NAME = "genrec-item-tokenizer"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
CODES_NAME = "codes.safetensors"
_STATE_PREFIX = "state."

# Special tokens, in vocabulary order (ids 0..4 of every tokenizer built by build_hf_tokenizer).
SPECIAL_TOKENS: dict[str, str] = {
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "sep_token": "<sep>",
}

TOKENIZER_METHODS: dict[str, type["ItemTokenizer"]] = {}


def level_name(level: int) -> str:
    """Name of code level ``level`` in bijective base 26: 0 -> "a", 25 -> "z", 26 -> "aa", 27 -> "ab"."""
    if level < 0:
        raise ValueError(f"`level` ({level}) must be >= 0")
    n = level + 1
    name = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        name = chr(ord("a") + rem) + name
    return name


def register_tokenizer(method: str):
    """Class decorator registering an :class:`ItemTokenizer` subclass under ``method``.

    Sets ``cls.method = method`` and ``TOKENIZER_METHODS[method] = cls``.

    Raises:
        ValueError: another class is already registered under ``method``.
    """
    if not isinstance(method, str) or not method:
        raise ValueError(f"`method` must be a non-empty string, got {method!r}")

    def decorator(cls):
        existing = TOKENIZER_METHODS.get(method)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"tokenizer method {method!r} is already registered by {existing.__name__}")
        cls.method = method
        TOKENIZER_METHODS[method] = cls
        return cls

    return decorator


def _import_scheme_modules() -> None:
    """Import every module of genrec.tokenization so all schemes register themselves."""
    package = importlib.import_module("genrec.tokenization")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_") or module.name in ("base", "config", "collisions"):
            continue
        importlib.import_module(f"genrec.tokenization.{module.name}")


def get_tokenizer_class(method: str) -> type["ItemTokenizer"]:
    """Return the tokenizer class registered under ``method``.

    Raises:
        ValueError: unknown method (the message lists the allowed ones).
    """
    if method not in TOKENIZER_METHODS:
        _import_scheme_modules()
    if method not in TOKENIZER_METHODS:
        raise ValueError(f"unknown tokenizer `method` {method!r}; allowed: {sorted(TOKENIZER_METHODS)}")
    return TOKENIZER_METHODS[method]


def _as_int_list(codes: Any) -> list[int] | None:
    """Codes as a list of python ints, or None when they are not a 1-d integer sequence."""
    if isinstance(codes, torch.Tensor):
        if codes.dim() != 1 or codes.is_floating_point():
            return None
        return [int(c) for c in codes.tolist()]
    if isinstance(codes, np.ndarray):
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            return None
        return [int(c) for c in codes.tolist()]
    if isinstance(codes, (str, bytes)) or not isinstance(codes, Sequence):
        return None
    out = []
    for c in codes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            return None
        out.append(int(c))
    return out


class ItemTokenizer:
    """Base class of item tokenizers: fit codes, encode/decode items, HF vocabulary, save/load.

    Args:
        config (ItemTokenizerConfig | dict, optional): the scheme config (an instance of
            ``config_class`` or a dict for ``config_class.from_dict``); defaults to ``config_class()``.
        **overrides: config fields to override, e.g. ``SequentialTokenizer(base=100)``.

    Class attributes:
        method (str): registry name. config_class (type): the config dataclass.
        handles_collisions (bool): the scheme guarantees unique codes itself (no extra level is
            appended); it may set ``self._raw_codes`` inside ``_fit_codes`` to the pre-fix codes so
            ``collision_rate_before`` is measured on them.
        always_disambiguate (bool): append the disambiguation level even when no codes collide
            (TIGER always has the 4th code); default False: the level is added only when needed.
        requires_embeddings (bool): ``fit`` needs ``embeddings``. requires_sequences (bool): ``fit``
            needs ``sequences``.
    """

    method: ClassVar[str] = ""
    config_class: ClassVar[type[ItemTokenizerConfig]] = ItemTokenizerConfig
    handles_collisions: ClassVar[bool] = False
    always_disambiguate: ClassVar[bool] = False
    requires_embeddings: ClassVar[bool] = False
    requires_sequences: ClassVar[bool] = False

    def __init__(self, config: ItemTokenizerConfig | dict | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class()
        elif isinstance(config, dict):
            config = self.config_class.from_dict(config)
        elif not isinstance(config, self.config_class):
            raise ValueError(
                f"`config` for method {self.method!r} must be a {self.config_class.__name__} or a dict, "
                f"got {type(config).__name__}"
            )
        if overrides:
            config = config.replace(**overrides)
        if not config.method:
            config = config.replace(method=self.method)
        elif config.method != self.method:
            raise ValueError(
                f"config `method` ({config.method!r}) does not match the tokenizer class "
                f"{type(self).__name__} ({self.method!r})"
            )
        self.config = config
        self._item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        self._codes: np.ndarray | None = None
        self._codebook_sizes: list[int] = []
        self._code_lengths: np.ndarray | None = None
        self._lookup: dict[tuple[int, ...], int] = {}
        self._stats: dict[str, Any] = {}
        self._raw_codes: np.ndarray | None = None
        self._fit_raw_codes: np.ndarray | None = None
        self._token_codes: dict[str, tuple[int, int]] | None = None

    # ------------------------------------------------------------------ hooks for subclasses

    def _fit_codes(
        self, catalog: Any, *, sequences: list[list[str]] | None, embeddings: np.ndarray | None
    ) -> tuple[np.ndarray, list[int]]:
        """Compute the raw codes of every catalog item (subclasses implement this).

        Args:
            catalog (ItemCatalog): the items; row ``i`` is ``catalog.item_ids[i]``.
            sequences (list[list[str]] | None): training histories (item ids, oldest first), already
                checked to hold only catalog items.
            embeddings (np.ndarray | None): ``(num_items, d)`` float32 item vectors, finite.

        Returns:
            tuple: ``codes`` ``(num_items, L)`` int64 (``-1`` pads the end of shorter codes) and
            ``codebook_sizes`` (list of ``L`` ints, each >= 2).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _fit_codes")

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save beside the codes (codebooks, network weights). Default: none."""
        return {}

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`_state_tensors` returned. Default: expects nothing."""
        if tensors:
            raise ValueError(f"{type(self).__name__} saves no state tensors but the file holds {sorted(tensors)}")

    def _save_extra_files(self, directory: Path) -> None:
        """Write extra artifacts into the (temporary) tokenizer folder. Default: nothing."""

    def _load_extra_files(self, directory: Path) -> None:
        """Read what :meth:`_save_extra_files` wrote. Default: nothing."""

    def _fit_stats(self) -> dict[str, Any]:
        """Scheme-specific entries merged into :attr:`stats` after a fit (JSON-serialisable). Default: none."""
        return {}

    def _token_string(self, level: int, code: int) -> str:
        """Vocabulary token of ``code`` at ``level``: ``"<a_12>"``, ``"<b_3>"``, ..."""
        return f"<{level_name(level)}_{code}>"

    def _vocabulary(self) -> list[str]:
        """Item tokens in vocabulary order (after the special tokens): level-major, code-minor."""
        sizes = self.codebook_sizes
        return [self._token_string(level, code) for level, size in enumerate(sizes) for code in range(size)]

    def _token_to_code(self, level: int, token: str) -> int | None:
        """Code at ``level`` that ``token`` stands for, or None when it is not a level-``level`` token."""
        if self._token_codes is None:
            self._token_codes = {
                self._token_string(level_, code): (level_, code)
                for level_, size in enumerate(self.codebook_sizes)
                for code in range(size)
            }
        found = self._token_codes.get(token)
        if found is None or found[0] != level:
            return None
        return found[1]

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        catalog: Any,
        *,
        sequences: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None = None,
        embeddings: np.ndarray | torch.Tensor | None = None,
    ) -> "ItemTokenizer":
        """Fit codes for every item of ``catalog``.

        Args:
            catalog (ItemCatalog): the items (``catalog.item_ids`` gives the row order).
            sequences (dict[str, list[str]] | list[list[str]], optional): TRAINING histories only
                (``leave_one_out(data).train_sequences``), so ids never encode test items.
            embeddings (np.ndarray | torch.Tensor, optional): ``(num_items, d)`` item vectors.

        Returns:
            ItemTokenizer: ``self``, fitted (codes collision-free, ``stats`` filled).

        Raises:
            ValueError: empty/duplicate catalog ids, unknown items in ``sequences``, embeddings of the
                wrong shape or non-finite, or a required input missing.
        """
        item_ids = self._check_catalog(catalog)
        seqs = self._check_sequences(sequences, item_ids)
        emb = self._check_embeddings(embeddings, len(item_ids))
        if self.requires_sequences and not seqs:
            raise ValueError(f"method {self.method!r} needs `sequences` (training histories) to fit")
        if self.requires_embeddings and emb is None:
            raise ValueError(f"method {self.method!r} needs `embeddings` (num_items, d) to fit")
        previous = (self._item_ids, self._item_index, self._codes, self._codebook_sizes, self._code_lengths,
                    self._lookup, self._stats)
        try:
            return self._fit(catalog, item_ids, seqs, emb)
        except BaseException:
            # A failed fit leaves the tokenizer as it was (unfitted, or fitted on the earlier data).
            (self._item_ids, self._item_index, self._codes, self._codebook_sizes, self._code_lengths,
             self._lookup, self._stats) = previous
            self._token_codes = None
            raise

    def _fit(self, catalog: Any, item_ids: list[str], seqs: list[list[str]] | None, emb: np.ndarray | None):
        self._item_ids = item_ids
        self._item_index = {item: row for row, item in enumerate(item_ids)}
        self._raw_codes = None
        self._token_codes = None

        start = time.perf_counter()
        codes, codebook_sizes = self._fit_codes(catalog, sequences=seqs, embeddings=emb)
        codes, codebook_sizes = self._check_codes(codes, codebook_sizes, len(item_ids), where="_fit_codes")
        raw = codes if self._raw_codes is None else np.asarray(self._raw_codes)
        self._fit_raw_codes = raw  # the codes before any collision fix (hybrid components read them)
        before = collision_stats(raw)
        added_level = False
        if self.handles_collisions:
            if not codes_are_unique(codes):
                raise ValueError(f"{type(self).__name__} set handles_collisions but returned colliding codes")
        elif before["num_collision_groups"] > 0 or self.always_disambiguate:
            if (codes < 0).any():
                raise ValueError(
                    f"{type(self).__name__} returned variable-length codes with collisions; variable-length "
                    "schemes must set handles_collisions = True and make their codes unique"
                )
            codes, extra_size = append_disambiguation_level(codes)
            codebook_sizes = [*codebook_sizes, extra_size]
            added_level = True
        fit_seconds = time.perf_counter() - start

        after = collision_stats(codes)
        self._set_codes(codes, codebook_sizes)
        stats = {
            "method": self.method,
            "num_items": len(item_ids),
            "code_length": int(codes.shape[1]),
            "mean_code_length": float(self._code_lengths.mean()),
            "codebook_sizes": list(codebook_sizes),
            "vocab_size": self.vocab_size,
            "collision_rate_before": before["collision_rate"],
            "num_collision_groups_before": before["num_collision_groups"],
            "max_group_size": before["max_group_size"],
            "collision_rate_after": after["collision_rate"],
            "disambiguation_level_added": added_level,
            "utilisation": self._utilisation(codes, codebook_sizes),
            "fit_seconds": fit_seconds,
            **self._fit_stats(),
        }
        self._stats = _jsonable(stats)
        logger.info(
            "fitted %s item tokenizer on %d items in %.2fs: code length %d, collisions %.4f -> %.4f",
            self.method, len(item_ids), fit_seconds, codes.shape[1], before["collision_rate"], after["collision_rate"],
        )
        return self

    @staticmethod
    def _utilisation(codes: np.ndarray, codebook_sizes: list[int]) -> list[float]:
        """Per level: distinct codes used / codebook size (padding ignored)."""
        out = []
        for level, size in enumerate(codebook_sizes):
            column = codes[:, level]
            out.append(len(np.unique(column[column >= 0])) / size)
        return out

    @staticmethod
    def _check_catalog(catalog: Any) -> list[str]:
        item_ids = getattr(catalog, "item_ids", None)
        if item_ids is None:
            raise ValueError(f"`catalog` must be an ItemCatalog (with .item_ids), got {type(catalog).__name__}")
        item_ids = list(item_ids)
        if not item_ids:
            raise ValueError("`catalog` has no items")
        bad = [item for item in item_ids if not isinstance(item, str)]
        if bad:
            raise ValueError(f"`catalog.item_ids` must be strings, got {bad[0]!r} ({type(bad[0]).__name__})")
        if len(set(item_ids)) != len(item_ids):
            seen, dup = set(), None
            for item in item_ids:
                if item in seen:
                    dup = item
                    break
                seen.add(item)
            raise ValueError(f"`catalog.item_ids` must be unique; {dup!r} appears more than once")
        return item_ids

    @staticmethod
    def _check_sequences(sequences: Any, item_ids: list[str]) -> list[list[str]] | None:
        if sequences is None:
            return None
        if isinstance(sequences, Mapping):
            sequences = list(sequences.values())
        elif isinstance(sequences, (str, bytes)) or not isinstance(sequences, Sequence):
            raise ValueError(
                "`sequences` must be a dict user -> list of item ids or a list of lists, "
                f"got {type(sequences).__name__}"
            )
        known = set(item_ids)
        out = []
        for seq in sequences:
            if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
                raise ValueError(f"every entry of `sequences` must be a list of item ids, got {seq!r}")
            seq = list(seq)
            unknown = [item for item in seq if item not in known]
            if unknown:
                raise ValueError(
                    f"`sequences` holds item id {unknown[0]!r} that is not in the catalog "
                    f"({len(item_ids)} items, e.g. {item_ids[:3]})"
                )
            out.append(seq)
        return out

    @staticmethod
    def _check_embeddings(embeddings: Any, num_items: int) -> np.ndarray | None:
        if embeddings is None:
            return None
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().cpu().float().numpy()
        array = np.asarray(embeddings, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != num_items or array.shape[1] < 1:
            raise ValueError(f"`embeddings` must have shape (num_items={num_items}, d), got {array.shape}")
        if not np.isfinite(array).all():
            rows = np.where(~np.isfinite(array).all(axis=1))[0]
            raise ValueError(f"`embeddings` has non-finite values in {len(rows)} rows (first row {int(rows[0])})")
        return array

    @staticmethod
    def _check_codes(codes: Any, codebook_sizes: Any, num_items: int, *, where: str) -> tuple[np.ndarray, list[int]]:
        """Validate a code table: shape, dtype, ranges, padding only at the end of a row."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != num_items or codes.shape[1] < 1:
            raise ValueError(f"{where}: `codes` must have shape (num_items={num_items}, L >= 1), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{where}: `codes` must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        sizes = [int(s) for s in codebook_sizes]
        if len(sizes) != codes.shape[1]:
            raise ValueError(f"{where}: {len(sizes)} `codebook_sizes` for codes of length {codes.shape[1]}")
        for level, size in enumerate(sizes):
            if size < 2:
                raise ValueError(f"{where}: `codebook_sizes[{level}]` ({size}) must be >= 2")
            column = codes[:, level]
            if (column < -1).any() or (column >= size).any():
                raise ValueError(
                    f"{where}: codes at level {level} must lie in [0, {size}) (or -1 = padding), "
                    f"found {int(column.min())}..{int(column.max())}"
                )
        pad = codes < 0
        if pad[:, 0].any():
            raise ValueError(f"{where}: every item needs at least one code (level 0 is -1 for some item)")
        if (pad[:, :-1] & ~pad[:, 1:]).any():
            raise ValueError(f"{where}: -1 padding must only appear at the end of a code row")
        return codes, sizes

    def _set_codes(self, codes: np.ndarray, codebook_sizes: list[int]) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        codes.setflags(write=False)
        self._codes = codes
        self._codebook_sizes = list(codebook_sizes)
        self._code_lengths = (codes >= 0).sum(axis=1).astype(np.int64)
        self._code_lengths.setflags(write=False)
        self._lookup = {
            tuple(int(c) for c in row[:length]): index
            for index, (row, length) in enumerate(zip(codes.tolist(), self._code_lengths.tolist()))
        }
        self._token_codes = None

    # ------------------------------------------------------------------ properties

    def _require_fitted(self) -> None:
        if self._codes is None:
            raise ValueError(
                f"this {type(self).__name__} is not fitted: call fit(catalog, ...) or from_pretrained(dir)"
            )

    @property
    def is_fitted(self) -> bool:
        return self._codes is not None

    @property
    def item_ids(self) -> list[str]:
        """Item ids in row order (``codes[i]`` belongs to ``item_ids[i]``)."""
        self._require_fitted()
        return list(self._item_ids)

    @property
    def num_items(self) -> int:
        self._require_fitted()
        return len(self._item_ids)

    @property
    def code_length(self) -> int:
        """Longest code length L (the width of :attr:`codes`)."""
        self._require_fitted()
        return int(self._codes.shape[1])

    @property
    def code_lengths(self) -> np.ndarray:
        """``(num_items,)`` int64 code length of every item (all equal for fixed-length schemes)."""
        self._require_fitted()
        return self._code_lengths

    @property
    def codebook_sizes(self) -> list[int]:
        self._require_fitted()
        return list(self._codebook_sizes)

    @property
    def codes(self) -> np.ndarray:
        """``(num_items, code_length)`` int64 codes, read-only; ``-1`` pads shorter codes."""
        self._require_fitted()
        return self._codes

    @property
    def stats(self) -> dict[str, Any]:
        """Fit statistics (a copy): collision rates before/after, utilisation per level, fit_seconds, ..."""
        self._require_fitted()
        return json.loads(json.dumps(_jsonable(self._stats)))

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary :meth:`build_hf_tokenizer` returns (special tokens + item tokens)."""
        self._require_fitted()
        return len(SPECIAL_TOKENS) + int(sum(self._codebook_sizes))

    # ------------------------------------------------------------------ encode / decode

    def index(self, item_id: str) -> int:
        """Row of ``item_id``. Raises ValueError naming an unknown id."""
        self._require_fitted()
        try:
            return self._item_index[item_id]
        except (KeyError, TypeError):
            hint = ""
            if not isinstance(item_id, str) and str(item_id) in self._item_index:
                hint = f" (item ids are strings: use {str(item_id)!r})"
            raise ValueError(
                f"unknown `item_id` {item_id!r}{hint}; the tokenizer knows {len(self._item_ids)} items, "
                f"e.g. {self._item_ids[:3]}"
            ) from None

    def encode(self, item_id: str) -> list[int]:
        """Codes of ``item_id`` (per-level codes, not vocabulary ids; no padding).

        Raises:
            ValueError: ``item_id`` is not in the fitted catalog.
        """
        row = self.index(item_id)
        return [int(c) for c in self._codes[row, : self._code_lengths[row]]]

    def decode(self, codes: Sequence[int] | np.ndarray | torch.Tensor) -> str | None:
        """Item whose codes are exactly ``codes`` (trailing ``-1`` padding ignored), else None.

        Never returns a wrong item: a prefix, a longer sequence or any code tuple that no item holds
        gives None.
        """
        self._require_fitted()
        values = _as_int_list(codes)
        if values is None:
            return None
        while values and values[-1] == -1:
            values.pop()
        row = self._lookup.get(tuple(values))
        return None if row is None else self._item_ids[row]

    # ------------------------------------------------------------------ Hugging Face vocabulary

    def build_hf_tokenizer(self):
        """Build a ``PreTrainedTokenizerFast`` over the special tokens and one token per (level, code).

        Vocabulary: ids 0..4 are ``<pad> </s> <unk> <s> <sep>``; then level 0 codes ``<a_0> ...``, level 1
        codes ``<b_0> ...``, and so on (item token id = 5 + sum of the earlier codebook sizes + code).
        The text ``"<a_1><b_2><c_3>"`` (with or without spaces) encodes to those three ids;
        ``decode`` joins tokens without spaces, so decode/encode round-trip. No special token is
        added automatically (``add_special_tokens`` has no effect); models append ``</s>`` themselves.

        Returns:
            transformers.PreTrainedTokenizerFast: save/load with ``save_pretrained`` /
            ``AutoTokenizer.from_pretrained``.
        """
        self._require_fitted()
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        tokens = list(SPECIAL_TOKENS.values()) + self._vocabulary()
        vocab = {token: index for index, token in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise ValueError(f"{type(self).__name__} produced duplicate vocabulary tokens")
        backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
        # Whitespace separates words; every "<...>" group is its own word, so "<a_1><b_2>" splits in two.
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"<[^<>\s]*>"), behavior="isolated")]
        )
        backend.decoder = decoders.Fuse()
        hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
        hf_tokenizer.model_max_length = 1 << 30
        return hf_tokenizer

    def _item_token_table(self, hf_tokenizer) -> np.ndarray:
        """``(num_items, L)`` int64 token ids of every code (``-1`` where the code is padding)."""
        self._require_fitted()
        unk_id = getattr(hf_tokenizer, "unk_token_id", None)
        table = np.full(self._codes.shape, -1, dtype=np.int64)
        for level in range(self._codes.shape[1]):
            column = self._codes[:, level]
            used = np.unique(column[column >= 0])
            tokens = [self._token_string(level, int(code)) for code in used]
            ids = hf_tokenizer.convert_tokens_to_ids(tokens)
            for token, token_id in zip(tokens, ids):
                if token_id is None or (token_id == unk_id and token != getattr(hf_tokenizer, "unk_token", None)):
                    raise ValueError(
                        f"`hf_tokenizer` has no token {token!r} (level {level}); build it with "
                        "build_hf_tokenizer() or add the item tokens to it"
                    )
            mapping = np.full(int(used.max()) + 1 if len(used) else 1, -1, dtype=np.int64)
            mapping[used] = np.asarray(ids, dtype=np.int64)
            mask = column >= 0
            table[mask, level] = mapping[column[mask]]
        return table

    def item_token_ids(self, hf_tokenizer) -> torch.Tensor:
        """Vocabulary ids of every item's codes, the table constrained decoding consumes.

        Args:
            hf_tokenizer: a tokenizer holding the item tokens (e.g. from :meth:`build_hf_tokenizer`, or a
                model tokenizer the item tokens were added to).

        Returns:
            torch.LongTensor: ``(num_items, code_length)``; ``-1`` pads variable-length codes.

        Raises:
            ValueError: ``hf_tokenizer`` lacks one of the item tokens (named).
        """
        return torch.from_numpy(self._item_token_table(hf_tokenizer))

    def item_token_sequences(self, hf_tokenizer) -> list[list[int]]:
        """Like :meth:`item_token_ids` but one unpadded list per item (for variable-length codes)."""
        table = self._item_token_table(hf_tokenizer)
        return [row[:length] for row, length in zip(table.tolist(), self._code_lengths.tolist())]

    def decode_token_ids(self, token_ids: Sequence[int] | torch.Tensor | np.ndarray, hf_tokenizer=None) -> str | None:
        """Map generated vocabulary ids back to an item (None when they spell no item).

        Special tokens at either end (``<pad>`` decoder start, ``</s>``, padding) are ignored; a special
        token between item tokens, a token of the wrong level or an unknown code tuple gives None.

        Args:
            token_ids: 1-d ids.
            hf_tokenizer (optional): the tokenizer the ids come from; default: the layout
                :meth:`build_hf_tokenizer` produces.
        """
        self._require_fitted()
        ids = _as_int_list(token_ids)
        if ids is None:
            return None
        while ids and ids[-1] == -1:  # padding of item_token_ids rows
            ids.pop()
        if any(i < 0 for i in ids):
            return None
        if hf_tokenizer is None:
            vocabulary = list(SPECIAL_TOKENS.values()) + self._vocabulary()
            if any(i < 0 or i >= len(vocabulary) for i in ids):
                return None
            tokens = [vocabulary[i] for i in ids]
            specials = set(SPECIAL_TOKENS.values())
        else:
            try:
                tokens = hf_tokenizer.convert_ids_to_tokens(ids)
            except (IndexError, OverflowError, TypeError, ValueError):
                return None
            specials = set(getattr(hf_tokenizer, "all_special_tokens", [])) | set(SPECIAL_TOKENS.values())
        while tokens and (tokens[0] is None or tokens[0] in specials):
            tokens = tokens[1:]
        while tokens and (tokens[-1] is None or tokens[-1] in specials):
            tokens = tokens[:-1]
        if not tokens or len(tokens) > self.code_length:
            return None
        codes = []
        for level, token in enumerate(tokens):
            code = None if token is None else self._token_to_code(level, token)
            if code is None:
                return None
            codes.append(code)
        return self.decode(codes)

    # ------------------------------------------------------------------ save / load

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Save to a folder (``config.json`` + ``codes.safetensors`` + extra files), atomically.

        A new folder is written whole; into an existing folder only these files are added or replaced
        (each atomically), everything else in it is kept.

        Raises:
            FileNotFoundError: the parent folder of ``save_directory`` does not exist.
        """
        self._require_fitted()
        from safetensors.torch import save_file

        path = check_output_parent(save_directory)
        payload = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "config": self.config.to_dict(),
            "item_ids": list(self._item_ids),
            "codebook_sizes": list(self._codebook_sizes),
            "stats": _jsonable(self._stats),
        }
        tensors = {"codes": torch.from_numpy(np.array(self._codes, dtype=np.int64))}
        for name, tensor in self._state_tensors().items():
            tensors[_STATE_PREFIX + name] = tensor.detach().cpu().contiguous()
        if not path.exists():
            with atomic_directory(path) as tmp:  # a new folder appears whole or not at all
                atomic_write_json(tmp / CONFIG_NAME, payload)
                save_file(tensors, str(tmp / CODES_NAME), metadata={"format": FORMAT_NAME, "method": self.method})
                self._save_extra_files(tmp)
            return path
        # An existing folder (e.g. a model's checkpoint) keeps every file that is not ours: like Hugging
        # Face's save_pretrained we add and replace our own files, one atomic rename each, config.json last.
        staging = staging_directory(path)
        try:
            save_file(tensors, str(staging / CODES_NAME), metadata={"format": FORMAT_NAME, "method": self.method})
            self._save_extra_files(staging)
            atomic_write_json(staging / CONFIG_NAME, payload)
            for entry in sorted(staging.iterdir(), key=lambda entry: entry.name == CONFIG_NAME):
                if entry.is_dir():
                    replace_directory(entry, path / entry.name)
                else:
                    os.replace(entry, path / entry.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ItemTokenizer":
        """Load a folder written by :meth:`save_pretrained`.

        Called on the base class (or :class:`AutoItemTokenizer`) it restores whatever scheme the folder
        holds; called on a scheme class it checks that the folder holds that scheme.

        Raises:
            FileNotFoundError: the folder, ``config.json`` or ``codes.safetensors`` is missing.
            ValueError: another format or format version, a missing/invalid field (named), codes that do
                not match the config, or a method that differs from ``cls.method``.
        """
        from genrec.utils.hub import resolve_folder

        path = resolve_folder(directory, what="item tokenizer folder")  # a local folder, or a Hub repo id
        if not path.is_dir():
            raise FileNotFoundError(f"item tokenizer folder {str(path)!r} is a file, not a folder")
        payload = _read_config(path)
        target = get_tokenizer_class(payload["method"])
        if cls is not ItemTokenizer and not issubclass(target, cls):
            raise ValueError(
                f"{str(path)!r} holds a {payload['method']!r} tokenizer, not {cls.method!r}; "
                "load it with AutoItemTokenizer.from_pretrained"
            )
        tokenizer = target(config=target.config_class.from_dict(payload["config"]))
        tensors = _read_tensors(path)
        item_ids = payload["item_ids"]
        codes = tensors.pop("codes", None)
        if codes is None:
            raise ValueError(f"{str(path / CODES_NAME)!r} has no `codes` tensor")
        codes, sizes = cls._check_codes(
            codes.numpy(), payload["codebook_sizes"], len(item_ids), where=f"{str(path / CODES_NAME)!r}"
        )
        if not codes_are_unique(codes):
            raise ValueError(f"{str(path / CODES_NAME)!r} is corrupted: two items share a code")
        tokenizer._item_ids = list(item_ids)
        tokenizer._item_index = {item: row for row, item in enumerate(item_ids)}
        tokenizer._set_codes(codes, sizes)
        tokenizer._stats = dict(payload["stats"])
        state = {name[len(_STATE_PREFIX):]: t for name, t in tensors.items() if name.startswith(_STATE_PREFIX)}
        other = sorted(name for name in tensors if not name.startswith(_STATE_PREFIX))
        if other:
            raise ValueError(f"{str(path / CODES_NAME)!r} holds unexpected tensors {other}")
        tokenizer._load_state_tensors(state)
        tokenizer._load_extra_files(path)
        return tokenizer

    def __repr__(self) -> str:
        if self._codes is None:
            return f"{type(self).__name__}(method={self.method!r}, not fitted)"
        return (
            f"{type(self).__name__}(method={self.method!r}, num_items={self.num_items}, "
            f"code_length={self.code_length}, codebook_sizes={self._codebook_sizes})"
        )


def _jsonable(value: Any) -> Any:
    """Recursively turn numpy/torch scalars and arrays into plain Python for JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"item tokenizer folder {str(path)!r} has no {CONFIG_NAME}")
    try:
        payload = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(config_path)!r} is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{str(config_path)!r} must hold a JSON object")
    if payload.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(config_path)!r}: `format` is {payload.get('format')!r}, expected {FORMAT_NAME!r}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(config_path)!r}: `format_version` {payload.get('format_version')!r} is not supported "
            f"(this genrec reads version {FORMAT_VERSION})"
        )
    expected = {"method": str, "config": dict, "item_ids": list, "codebook_sizes": list, "stats": dict}
    for field, kind in expected.items():
        if field not in payload:
            raise ValueError(f"{str(config_path)!r} is missing the field `{field}`")
        if not isinstance(payload[field], kind):
            raise ValueError(f"{str(config_path)!r}: field `{field}` must be a {kind.__name__}")
    if not all(isinstance(item, str) for item in payload["item_ids"]):
        raise ValueError(f"{str(config_path)!r}: field `item_ids` must hold strings")
    return payload


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    codes_path = path / CODES_NAME
    if not codes_path.is_file():
        raise FileNotFoundError(f"item tokenizer folder {str(path)!r} has no {CODES_NAME}")
    try:
        return load_file(str(codes_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{str(codes_path)!r} is not a readable safetensors file ({error})") from None


class AutoItemTokenizer:
    """Restores any registered item tokenizer from its folder, or builds one by method name.

    Example:
        >>> tokenizer = AutoItemTokenizer.from_pretrained("out/beauty-collaborative")   # doctest: +SKIP
        >>> tokenizer = AutoItemTokenizer.for_method("random", codebook_size=64)       # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoItemTokenizer is not instantiable: use AutoItemTokenizer.from_pretrained(dir)")

    @staticmethod
    def from_pretrained(directory: str | Path) -> ItemTokenizer:
        """Load the tokenizer saved in ``directory``, whatever its scheme."""
        return ItemTokenizer.from_pretrained(directory)

    @staticmethod
    def for_method(method: str, config: ItemTokenizerConfig | dict | None = None, **overrides: Any) -> ItemTokenizer:
        """An unfitted tokenizer of scheme ``method`` (``config`` / ``overrides`` as in its constructor)."""
        return get_tokenizer_class(method)(config, **overrides)
