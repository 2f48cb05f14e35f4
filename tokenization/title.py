"""Title indexing (BIGRec, Bao et al. 2023): the item's title text is its id.

The title is cut into subword tokens by either

- a byte-level BPE tokenizer trained here with the ``tokenizers`` library on the catalog titles
  (``vocab_size``, ``min_frequency``), or
- any Hugging Face tokenizer (``pretrained_tokenizer``: a local folder or a cached model id, e.g. the
  LLM's own tokenizer, so the LLM generates titles in its own vocabulary as BIGRec does).

Codes are the token ids, so ids are variable-length (``-1`` pads :attr:`codes`) and every level shares
one codebook (the whole subword vocabulary): ``build_hf_tokenizer`` returns the subword tokenizer
itself and ``item_token_ids`` maps codes to its ids unchanged. Empty titles become ``"item <id>"``.

Duplicates: items whose token sequences are equal (same title, or titles equal after truncation to
``max_tokens``) are told apart by a textual suffix: the first item in catalog order keeps its title,
the next ones get the tokens of ``" #2"``, ``" #3"``, ... appended (repeated until all sequences are
distinct). ``collision_rate_before`` counts items that shared their token sequence before this.
Because codes have different lengths, one title can be a prefix of another ("Lipstick" / "Lipstick
Red"): decoders must end an id with ``</s>`` (``decode`` only ever returns an exact match).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers.utils import logging

from genrec.tokenization.base import SPECIAL_TOKENS, ItemTokenizer, register_tokenizer
from genrec.tokenization.collisions import collision_groups
from genrec.tokenization.config import ItemTokenizerConfig, check_bool, check_int

logger = logging.get_logger(__name__)

__all__ = ["TitleTokenizerConfig", "TitleTokenizer", "train_title_tokenizer"]

_SUBFOLDER = "title_tokenizer"
_MAX_ROUNDS = 1000


@dataclass
class TitleTokenizerConfig(ItemTokenizerConfig):
    """Config of title indexing.

    Args:
        vocab_size (int, default 4096): size of the BPE vocabulary trained on the titles (>= 300: the 256
            byte symbols + special tokens + merges). Ignored with ``pretrained_tokenizer``.
        min_frequency (int, default 2): a pair must occur this often to be merged.
        max_tokens (int, default 64): keep at most this many title tokens (0 = all; one Beauty title has
            245 tokens, the mean is 18); duplicates the cut creates are disambiguated like any other.
        lowercase (bool, default False): lowercase titles before tokenizing.
        pretrained_tokenizer (str, default ""): a Hugging Face tokenizer folder or cached model id to use
            instead of training one (loaded offline-capable with ``AutoTokenizer.from_pretrained``).
    """

    vocab_size: int = 4096
    min_frequency: int = 2
    max_tokens: int = 64
    lowercase: bool = False
    pretrained_tokenizer: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("vocab_size", self.vocab_size, minimum=300)
        check_int("min_frequency", self.min_frequency, minimum=1)
        check_int("max_tokens", self.max_tokens, minimum=0)
        check_bool("lowercase", self.lowercase)
        if not isinstance(self.pretrained_tokenizer, str):
            raise ValueError(
                f"`pretrained_tokenizer` must be a string path or model id, got {self.pretrained_tokenizer!r}"
            )


def train_title_tokenizer(texts: list[str], *, vocab_size: int, min_frequency: int, lowercase: bool = False):
    """Train a byte-level BPE tokenizer on ``texts``.

    The special tokens ``<pad> </s> <unk> <s> <sep>`` take ids 0..4 (as in every genrec item vocabulary).

    Returns:
        transformers.PreTrainedTokenizerFast: the trained tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    hf_tokenizer.model_max_length = 1 << 30
    return hf_tokenizer


@register_tokenizer("title")
class TitleTokenizer(ItemTokenizer):
    """Item id = subword tokens of the item title (variable length, shared vocabulary)."""

    config_class = TitleTokenizerConfig
    handles_collisions = True  # textual " #k" suffixes make the sequences unique

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self._text_tokenizer = None

    def _fit_codes(self, catalog, *, sequences, embeddings):
        config = self.config
        item_ids = list(catalog.item_ids)
        texts = []
        for item in item_ids:
            title = " ".join(str(catalog.title(item)).split())  # collapse whitespace
            texts.append(title if title else f"item {item}")
        if config.lowercase:
            texts = [text.lower() for text in texts]
        if config.pretrained_tokenizer:
            from transformers import AutoTokenizer

            try:
                self._text_tokenizer = AutoTokenizer.from_pretrained(config.pretrained_tokenizer)
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"`pretrained_tokenizer` {config.pretrained_tokenizer!r} could not be loaded ({error})"
                ) from None
        else:
            self._text_tokenizer = train_title_tokenizer(
                texts, vocab_size=config.vocab_size, min_frequency=config.min_frequency, lowercase=config.lowercase
            )
        tokenizer = self._text_tokenizer
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        if config.max_tokens:
            encoded = [ids[: config.max_tokens] for ids in encoded]
        if any(len(ids) == 0 for ids in encoded):
            empty = item_ids[next(i for i, ids in enumerate(encoded) if len(ids) == 0)]
            raise ValueError(f"the title of item {empty!r} tokenizes to no tokens")
        self._raw_codes = _pad(encoded)

        # Disambiguate: later copies of a sequence get " #2", " #3", ... until every sequence is unique.
        suffix = [0] * len(encoded)
        next_number: dict[tuple[int, ...], int] = {}
        final = list(encoded)
        for _ in range(_MAX_ROUNDS):
            group, sizes = collision_groups(_pad(final))
            if (sizes <= 1).all():
                break
            first_of_group: dict[int, int] = {}
            for row, g in enumerate(group.tolist()):
                if sizes[g] <= 1:
                    continue
                if g not in first_of_group:
                    first_of_group[g] = row
                    continue
                key = tuple(encoded[row])
                number = max(next_number.get(key, 2), suffix[row] + 1)
                next_number[key] = number + 1
                suffix[row] = number
                final[row] = encoded[row] + tokenizer(f" #{number}", add_special_tokens=False)["input_ids"]
        else:
            raise ValueError(f"could not make titles unique in {_MAX_ROUNDS} rounds")
        size = len(tokenizer)
        codes = _pad(final)
        return codes, [size] * codes.shape[1]

    # -- vocabulary: the subword tokenizer's own --------------------------------------------------

    def _token_string(self, level: int, code: int) -> str:
        return self._text_tokenizer.convert_ids_to_tokens(int(code))

    def _vocabulary(self) -> list[str]:
        special = set(self._text_tokenizer.all_special_ids)
        ids = [i for i in range(len(self._text_tokenizer)) if i not in special]
        return self._text_tokenizer.convert_ids_to_tokens(ids)

    @property
    def vocab_size(self) -> int:
        self._require_fitted()
        return len(self._text_tokenizer)

    def _token_to_code(self, level: int, token: str) -> int | None:
        if token in set(self._text_tokenizer.all_special_tokens):
            return None
        token_id = self._text_tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self._text_tokenizer.unk_token_id:
            return None
        return int(token_id)

    def _fit_stats(self) -> dict:
        used = np.unique(self._codes[self._codes >= 0])
        return {"vocabulary_utilisation": len(used) / len(self._text_tokenizer), "shared_codebook": True}

    def build_hf_tokenizer(self):
        """The subword tokenizer the titles were cut with (a fresh copy); its ids are the codes."""
        self._require_fitted()
        import copy

        return copy.deepcopy(self._text_tokenizer)

    def decode_token_ids(self, token_ids, hf_tokenizer=None):
        return super().decode_token_ids(token_ids, hf_tokenizer or self._text_tokenizer)

    def title_text(self, item_id: str) -> str:
        """The text an item's codes spell (its title, plus the " #k" suffix of a duplicate)."""
        return self._text_tokenizer.decode(self.encode(item_id))

    def _save_extra_files(self, directory: Path) -> None:
        self._text_tokenizer.save_pretrained(str(directory / _SUBFOLDER))

    def _load_extra_files(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        folder = directory / _SUBFOLDER
        if not folder.is_dir():
            raise FileNotFoundError(f"title tokenizer folder {str(directory)!r} has no {_SUBFOLDER}/")
        self._text_tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if len(self._text_tokenizer) != self._codebook_sizes[0]:
            raise ValueError(
                f"{str(folder)!r} holds {len(self._text_tokenizer)} tokens but the codes use a vocabulary of "
                f"{self._codebook_sizes[0]}"
            )


def _pad(rows: list[list[int]]) -> np.ndarray:
    """Variable-length rows -> ``(n, max_len)`` int64, ``-1`` padded."""
    width = max(len(row) for row in rows)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
