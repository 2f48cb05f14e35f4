"""OneRec: encoder over the history's semantic ids, sparse-MoE decoder generating a session of items.

Follows OneRec (Kuaishou, arXiv 2502.18965) at genrec's scale: items are balanced residual k-means codes
(3 levels; a 4th disambiguation level where codes collide), the encoder reads the concatenated codes of the most
recent ``max_history_items`` items (with an item-position embedding shared by the tokens of one item), and the
decoder's feed-forward layers are :class:`genrec.models.layers.SparseMoeBlock` (top-k routing, load-balancing and
z losses added to the loss). Training targets are the next ``session_length`` items' codes.

Generation:

* ``recommend(histories, k)`` / ``score``: next-item top-k by genrec's constrained beam search (m = 1).
* :meth:`OneRecForConditionalGeneration.generate_sessions`: a session of ``m`` items, slot by slot, all by
  :func:`genrec.decoding.beam_search`: slot ``j > 1`` continues the cached decoder from the codes of the session
  so far (``decoder_prefix``) with those items banned. Every item is a catalog item and no item repeats in a
  session.
* :meth:`OneRecForConditionalGeneration.generate_candidate_sessions`: ``N`` sessions per user, the ``n``-th
  starting with the ``n``-th best first item (candidates for preference pairs), decoded as one batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import logging

from genrec.models.generative.modeling_generative import GenerativeT5Model
from genrec.models.histories import history_rows
from genrec.models.onerec.configuration_onerec import OneRecConfig
from genrec.utils.checks import check_int

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

        item_input_offset: ``input_granularity="item"``: history item ``r`` is the one encoder id ``offset + r``
            (``None``: its code tokens). Labels are code tokens either way.

    Example:
        rows ``[4, 9]`` with codes ``[[5, 20, 40], [7, 21, 44]]`` encode to ``[5, 20, 40, 7, 21, 44, 1]``; with
        ``item_input_offset=100`` to ``[104, 109, 1]``.
    """

    item_token_table: list[list[int]]
    eos_token_id: int
    max_history_items: int = 50
    session_length: int = 5
    item_input_offset: int | None = None

    def encode(self, history_rows: Sequence[int], candidates: Sequence[int] | None = None) -> list[int]:
        if candidates is not None:
            raise ValueError("OneRec does not take `candidates`; it ranks the whole catalog")
        recent = list(history_rows)[-self.max_history_items:]
        if self.item_input_offset is not None:
            return [self.item_input_offset + row for row in recent] + [self.eos_token_id]
        tokens: list[int] = []
        for row in recent:
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
    def from_item_tokenizer(cls, item_tokenizer, config: OneRecConfig | None = None, *, item_vector_table=None,
                            **config_kwargs: Any) -> OneRecForConditionalGeneration:
        """A new OneRec whose vocabulary is the item tokenizer's (``<pad> </s> <unk> <s> <sep>`` + code tokens).

        Args:
            item_tokenizer: a fitted genrec ``ItemTokenizer``.
            config: a :class:`OneRecConfig` (default: built from ``config_kwargs``).
            item_vector_table: ``input_granularity="item"`` only: float ``(num_items, D)`` vectors (e.g. item text
                embeddings) added to each history item's input; sets ``item_vector_dim``.

        Returns:
            OneRecForConditionalGeneration with ``tokenizer``, ``item_tokenizer`` and ``catalog`` set.
        """
        config = config if config is not None else OneRecConfig(**config_kwargs)
        return cls._new_bound_model(config, item_tokenizer, item_tokenizer.build_hf_tokenizer(), item_vector_table)

    def example_encoder(self) -> SessionEncoder:
        return SessionEncoder(
            item_token_table=[self.item_tokens(row) for row in range(self.item_token_table.shape[0])],
            eos_token_id=self.config.eos_token_id,
            max_history_items=self.config.max_history_items,
            session_length=self.config.session_length,
            item_input_offset=self.item_input_offset,
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
            catalog has fewer than ``m`` items) and float ``(batch, m)`` scores: each slot's catalog-normalised
            log-probability given the history and the session so far (``-inf`` where the item is -1).
        """
        m = self.config.session_length if session_length is None else session_length
        check_int("session_length", m, 1)
        num_beams = self.config.num_beams if num_beams is None else num_beams
        check_int("num_beams", num_beams, 1)
        first_items, first_scores = self.recommend_rows(histories, 1, num_beams=num_beams)
        return self._complete_sessions(histories, first_items[:, 0], first_scores[:, 0], m, num_beams)

    @torch.no_grad()
    def _complete_sessions(self, histories: Sequence[Sequence[int]], first_items: torch.Tensor,
                           first_scores: torch.Tensor, session_length: int, num_beams: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill slots ``2..m`` after the given first items with genrec's beam search continuing the decoder.

        Slot ``j`` feeds the codes of the ``j - 1`` items chosen so far as ``decoder_prefix`` and bans them, so the
        decoder continues the session exactly as it was trained (labels = the next ``m`` items' codes).

        Args:
            histories: per row, catalog rows oldest first (``R`` rows).
            first_items, first_scores: ``(R,)`` slot-1 rows (-1 = none: the row stays empty) and scores.
            session_length: ``m``; num_beams: beams per slot.

        Returns:
            ``(items, scores)``: ``(R, m)`` rows (-1 padded) and scores (``-inf`` padded).
        """
        from genrec.decoding import beam_search

        rows = len(histories)
        items = torch.full((rows, session_length), -1, dtype=torch.long)
        scores = torch.full((rows, session_length), float("-inf"))
        items[:, 0], scores[:, 0] = first_items, first_scores.float()
        if session_length == 1 or rows == 0:
            return items, scores
        input_ids, attention_mask = self.build_inputs(histories)
        table = self.item_token_table  # (num_items, L) token ids, -1 padded
        was_training = self.training
        self.eval()
        try:
            for slot in range(1, session_length):
                so_far = items[:, :slot]  # (R, slot)
                live = so_far[:, -1] >= 0  # a row whose previous slot found nothing stays empty
                if not bool(live.any()):
                    break
                prefix = torch.where(so_far[..., None] >= 0, table[so_far.clamp(min=0)], -1).view(rows, -1)
                new_items, new_scores = beam_search(
                    self, self.catalog, input_ids=input_ids, attention_mask=attention_mask, num_beams=num_beams,
                    top_k=1, banned_items=so_far.to(self.device), decoder_prefix=prefix.to(self.device),
                    decoder_start_token_id=self.config.decoder_start_token_id)
                new_items, new_scores = new_items[:, 0].cpu(), new_scores[:, 0].float().cpu()
                items[:, slot] = torch.where(live, new_items, -1)
                scores[:, slot] = torch.where(live & (new_items >= 0), new_scores, float("-inf"))
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

        Raises:
            ValueError: an empty history or an unknown item id.
        """
        self._require_bound()
        rows = history_rows(histories, self._item_index)
        items, scores = self.generate_session_rows(rows, session_length, num_beams=num_beams)
        item_ids = self.item_ids
        return [[(item_ids[r], float(s)) for r, s in zip(ri.tolist(), rs.tolist()) if r >= 0]
                for ri, rs in zip(items, scores)]

    @torch.no_grad()
    def generate_candidate_sessions(self, histories: Sequence[Sequence[str]], num_sessions: int,
                                    session_length: int | None = None, *, num_beams: int | None = None
                                    ) -> list[list[list[tuple[str, float]]]]:
        """``N`` distinct candidate sessions per user (OneRec's preference-pair candidates).

        Session ``n`` starts with the ``n``-th best slot-1 item of a beam search over the catalog (so the
        sessions of a user differ in their first item), and is completed slot by slot without repeats
        (:meth:`generate_session_rows`' continuation). All ``(user, n)`` pairs are decoded as one batch.

        Args:
            histories: one list of catalog item ids per user, oldest first.
            num_sessions: ``N`` sessions per user.
            session_length: items per session ``m`` (default ``config.session_length``).
            num_beams: beams per slot (default ``config.num_beams``; slot 1 uses at least ``N``).

        Returns:
            per user, up to ``N`` sessions (fewer only when the catalog has fewer than ``N`` items), best first
            item first; each a list of ``m`` ``(item_id, score)`` pairs (fewer only when the catalog has fewer than
            ``m`` items), score = the slot's log-probability given the history and the session so far.

        Raises:
            ValueError: an empty history, an unknown item id, or ``num_sessions`` / ``session_length`` /
                ``num_beams`` < 1.
        """
        self._require_bound()
        check_int("num_sessions", num_sessions, 1)
        m = self.config.session_length if session_length is None else session_length
        check_int("session_length", m, 1)
        num_beams = self.config.num_beams if num_beams is None else num_beams
        check_int("num_beams", num_beams, 1)
        rows = history_rows(histories, self._item_index)
        first_items, first_scores = self.recommend_rows(rows, num_sessions, num_beams=max(num_beams, num_sessions))
        pair_histories = [history for history in rows for _ in range(num_sessions)]  # (user, n) pairs, user-major
        items, scores = self._complete_sessions(pair_histories, first_items.reshape(-1), first_scores.reshape(-1),
                                                m, num_beams)
        item_ids = self.item_ids
        sessions: list[list[list[tuple[str, float]]]] = []
        for user in range(len(rows)):
            user_sessions = []
            for pair in range(user * num_sessions, (user + 1) * num_sessions):
                session = [(item_ids[r], float(s)) for r, s in zip(items[pair].tolist(), scores[pair].tolist())
                           if r >= 0]
                if session:
                    user_sessions.append(session)
            sessions.append(user_sessions)
        return sessions
