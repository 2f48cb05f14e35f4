"""OneRec: encoder over the history's semantic ids, sparse-MoE decoder generating a session of items.

Follows OneRec (Kuaishou, arXiv 2502.18965) at genrec's scale: items are balanced residual k-means codes
(3 levels; a 4th disambiguation level where codes collide), the encoder reads the concatenated codes of the most
recent ``max_history_items`` items (with an item-position embedding shared by the tokens of one item), and the
decoder's feed-forward layers are :class:`genrec.models.layers.SparseMoeBlock` (top-k routing, load-balancing and
z losses added to the loss). Training targets are the next ``session_length`` items' codes.

Generation:

* ``recommend(histories, k)`` / ``score``: next-item top-k by genrec's constrained beam search (m = 1).
* :meth:`OneRecForConditionalGeneration.generate_sessions`: a session of ``m`` items, slot by slot: slot 1 by
  :func:`genrec.decoding.beam_search`; slot ``j > 1`` by constrained HF ``generate()`` (beam search) continuing
  the decoder from the session so far, with the items already in the session banned
  (``CatalogLogitsProcessor(banned_items=...)``). Every item is a catalog item and no item repeats in a session.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import logging

from genrec.models.generative import GenerativeT5Model, _check_int
from genrec.models.onerec.configuration_onerec import OneRecConfig

logger = logging.get_logger(__name__)

__all__ = ["OneRecForConditionalGeneration", "SessionEncoder"]


@dataclass
class SessionEncoder:
    """History -> encoder tokens, next items -> session labels (picklable, no weights).

    Args:
        item_token_table: per catalog row, its token ids.
        eos_token_id: appended to the encoder input.
        max_history_items: most recent items kept.
        session_length: target items per training example.

    Example:
        rows ``[4, 9]`` with codes ``[[5, 20, 40], [7, 21, 44]]`` encode to ``[5, 20, 40, 7, 21, 44, 1]``.
    """

    item_token_table: list[list[int]]
    eos_token_id: int
    max_history_items: int = 50
    session_length: int = 5

    def encode(self, history_rows: Sequence[int], candidates: Sequence[int] | None = None) -> list[int]:
        if candidates is not None:
            raise ValueError("OneRec does not take `candidates`; it ranks the whole catalog")
        tokens: list[int] = []
        for row in list(history_rows)[-self.max_history_items:]:
            tokens.extend(self.item_token_table[row])
        tokens.append(self.eos_token_id)
        return tokens

    def training_example(self, history_rows: Sequence[int], target_rows: Sequence[int],
                         rng: random.Random) -> dict[str, list[int]]:
        labels: list[int] = []
        for row in list(target_rows)[: self.session_length]:
            labels.extend(self.item_token_table[row])
        return {"input_ids": self.encode(history_rows), "labels": labels}


class OneRecForConditionalGeneration(GenerativeT5Model):
    """OneRec encoder-decoder with a sparse-MoE decoder and session generation (see the module docstring).

    Example:
        >>> model = OneRecForConditionalGeneration.from_item_tokenizer(item_tokenizer, d_model=64)
        >>> model.recommend([["1", "2"]], k=10)               # next items with log-probabilities
        >>> model.generate_sessions([["1", "2"]], session_length=5)   # 5 distinct items per user
    """

    config_class = OneRecConfig

    @classmethod
    def from_item_tokenizer(cls, item_tokenizer, config: OneRecConfig | None = None, **config_kwargs: Any
                            ) -> OneRecForConditionalGeneration:
        """A new OneRec whose vocabulary is the item tokenizer's (``<pad> </s> <unk> <s> <sep>`` + code tokens).

        Args:
            item_tokenizer: a fitted genrec ``ItemTokenizer``.
            config: a :class:`OneRecConfig` (default: built from ``config_kwargs``).

        Returns:
            OneRecForConditionalGeneration with ``tokenizer``, ``item_tokenizer`` and ``catalog`` set.
        """
        config = config if config is not None else OneRecConfig(**config_kwargs)
        tokenizer = item_tokenizer.build_hf_tokenizer()
        config.vocab_size = len(tokenizer)
        config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        config.decoder_start_token_id = tokenizer.pad_token_id
        config.num_items = item_tokenizer.num_items
        model = cls(config)
        model.bind_item_tokenizer(item_tokenizer, tokenizer)
        return model

    def example_encoder(self) -> SessionEncoder:
        return SessionEncoder(
            item_token_table=[self.item_tokens(row) for row in range(self.item_token_table.shape[0])],
            eos_token_id=self.config.eos_token_id,
            max_history_items=self.config.max_history_items,
            session_length=self.config.session_length,
        )

    @torch.no_grad()
    def generate_session_rows(self, histories: Sequence[Sequence[int]], session_length: int | None = None, *,
                              num_beams: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sessions of catalog rows, slot by slot (beam search within a slot, the best item kept).

        Args:
            histories: per user, catalog rows oldest first.
            session_length: items per session ``m`` (default ``config.session_length``).
            num_beams: beams per slot (default ``config.num_beams``).

        Returns:
            ``(items, scores)``: LongTensor ``(batch, m)`` of distinct catalog rows per user (-1 only when the
            catalog has fewer than ``m`` items) and their log-probabilities ``(batch, m)``.
        """
        m = self.config.session_length if session_length is None else session_length
        _check_int("session_length", m, 1)
        num_beams = self.config.num_beams if num_beams is None else num_beams
        batch = len(histories)
        first_items, first_scores = self.recommend_rows(histories, 1, num_beams=num_beams)
        items = torch.full((batch, m), -1, dtype=torch.long)
        scores = torch.full((batch, m), float("-inf"))
        items[:, 0], scores[:, 0] = first_items[:, 0], first_scores[:, 0]
        if m == 1:
            return items, scores
        input_ids, attention_mask = self.build_inputs(histories)
        length = self.catalog.max_length
        was_training = self.training
        self.eval()
        try:
            for slot in range(1, min(m, self.config.num_items)):
                prefix = torch.full((batch, 1 + slot * length), self.config.decoder_start_token_id, dtype=torch.long)
                for b in range(batch):
                    tokens = [t for r in items[b, :slot].tolist() for t in self.item_tokens(r)]
                    prefix[b, 1: 1 + len(tokens)] = torch.tensor(tokens)
                out = self.generate(input_ids=input_ids, attention_mask=attention_mask,
                                    decoder_input_ids=prefix.to(self.device), banned_items=items[:, :slot].clone(),
                                    num_beams=num_beams, num_return_sequences=1, max_new_tokens=length,
                                    do_sample=False, length_penalty=0.0, early_stopping=True,
                                    output_scores=True, return_dict_in_generate=True)
                new_tokens = out.sequences[:, prefix.shape[1]:].cpu()
                for b in range(batch):
                    row = self.catalog.item_of(new_tokens[b].tolist())
                    items[b, slot] = -1 if row is None else row
                if getattr(out, "sequences_scores", None) is not None:
                    scores[:, slot] = out.sequences_scores.float().cpu()
        finally:
            self.train(was_training)
        return items, scores

    def generate_sessions(self, histories: Sequence[Sequence[str]], session_length: int | None = None, *,
                          num_beams: int | None = None) -> list[list[tuple[str, float]]]:
        """A session of ``m`` distinct catalog items per history (``m`` = ``config.session_length`` by default).

        Args:
            histories: one list of catalog item ids per user, oldest first.
            session_length: items per session.
            num_beams: beams per slot.

        Returns:
            per history, ``m`` ``(item_id, score)`` pairs in session order.
        """
        rows = []
        for number, history in enumerate(histories):
            if isinstance(history, str) or len(history) == 0:
                raise ValueError(f"`histories[{number}]` must be a non-empty list of item ids, got {history!r}")
            rows.append(self.item_rows(history, where=f"histories[{number}]"))
        items, scores = self.generate_session_rows(rows, session_length, num_beams=num_beams)
        item_ids = self.item_tokenizer.item_ids
        return [[(item_ids[r], float(s)) for r, s in zip(ri.tolist(), rs.tolist()) if r >= 0]
                for ri, rs in zip(items, scores)]
