"""The one recommender contract every genrec model follows (SASRec, P5, OneRec, RecGPT, BIGRec, the baselines).

What a caller can rely on, whatever the model:

* ``recommend(histories, k=10, *, exclude_history=True, batch_size=32)`` -> ``list[list[tuple[str, float]]]``:
  per history (catalog item ids, oldest first) up to ``k`` ``(item_id, score)`` pairs, best first. Defaults and why:

  - ``k=10``: the cut-off genrec reports (R@10 / N@10);
  - ``exclude_history=True``: a user asking for recommendations wants items they have not interacted with yet,
    and every item of the history is masked (also those older than the model's input window). Leave-one-out
    *evaluation* ranks the full catalog instead (``genrec evaluate --exclude-history`` to mask);
  - ``batch_size=32``: histories handled at once. It bounds memory only -- results do not depend on it (the
    contract test checks batch 1 == batch N) -- and 32 keeps an LLM-sized model (BIGRec) within a few GB while
    costing the small models little. Beam-search models further split a batch so ``batch x beams`` stays bounded.

  Fewer than ``k`` pairs come back only when fewer items are left (never a placeholder or a ``-inf`` score).
* ``score(input_ids, attention_mask=None)`` -> ``(batch, num_items)`` float for left-padded histories of
  ``catalog row + 1`` (0 = padding; what ``genrec.training`` evaluates): the model's *ranking score* of every
  catalog item as the next one; higher is better and ``recommend(..., exclude_history=False)`` returns the top-k
  of the same row. ``-inf`` marks an item the model does not return (outside a beam search's beams). The scale is
  the model's own: a log-probability for RecGPT and for the beam-search models (P5, OneRec, BIGRec), a logit for
  SASRec, a training count for popularity, a cosine for text-kNN; only the order within a row is comparable
  across models. :meth:`Recommender.score_histories` is the same for string histories.
* ``generate(...)`` is transformers' ``generate`` wherever the model is a token LM (P5, OneRec: constrained to the
  catalog; BIGRec: its causal LM). RecGPT predicts an item's codes in one pass, so it has no token ``generate``;
  its catalog beam search is ``generate_items`` (BIGRec's title-constrained one too).
* ``from_dataset(catalog, train_sequences, **config_fields)`` builds an untrained (or, for the baselines, fitted)
  model bound to a dataset's catalog; ``save_pretrained`` / ``from_pretrained`` keep the catalog with the
  weights. ``item_ids`` (row order) and ``item_index`` (id -> row) are the bound catalog.
* ``set_catalog(item_ids, **item_features)`` (:class:`genrec.models.catalog.CatalogMixin`) is the one way to bind or
  replace that catalog: ids in column order, the model's per-item features by name (``catalog_features``). A
  feature left out is taken from the bound catalog by id, so ``set_catalog(ids)`` restricts or reorders it.

Models implement ``_recommend_batch`` (beam search) or only ``score`` + ``encode_histories`` (full scoring: the
default ``_recommend_batch`` masks and takes the top-k).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genrec.models.catalog import CatalogMixin
from genrec.models.histories import seen_items_mask, top_items

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_EXCLUDE_HISTORY", "DEFAULT_K", "Recommender", "check_histories"]

DEFAULT_K = 10
DEFAULT_EXCLUDE_HISTORY = True
DEFAULT_BATCH_SIZE = 32

Recommendations = list[list[tuple[str, float]]]


def check_histories(histories: Sequence[Sequence[str]], item_index: dict[str, int]) -> list[list[str]]:
    """Validate string histories against a catalog; return them as lists of ``str``.

    Raises:
        ValueError: a string instead of a list, an empty history, or ids not in the catalog (all of them named,
            with the history number).
    """
    if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
        raise ValueError("`histories` must be a list of histories (lists of item ids), not "
                         f"{type(histories).__name__}")
    checked = []
    for number, history in enumerate(histories):
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or len(history) == 0:
            raise ValueError(f"history {number} ({history!r}) must be a non-empty list of item ids")
        history = [str(item) for item in history]
        unknown = [item for item in history if item not in item_index]
        if unknown:
            raise ValueError(f"history {number} holds item ids not in the model's catalog of {len(item_index)} "
                             f"items: {', '.join(repr(item) for item in dict.fromkeys(unknown))}")
        checked.append(history)
    return checked


class Recommender(CatalogMixin):
    """Mixin holding the shared ``recommend`` (validation, batching, eval mode, history exclusion) and
    :meth:`~genrec.models.catalog.CatalogMixin.set_catalog`.

    The host is a ``PreTrainedModel`` with ``item_ids`` / ``item_index``, the catalog hooks of
    :class:`~genrec.models.catalog.CatalogMixin`, and either ``score`` + ``encode_histories`` (full-catalog scoring)
    or its own :meth:`_recommend_batch`.
    """

    @property
    def num_items(self) -> int:
        """Size of the bound catalog (0 before binding)."""
        return 0 if self.item_ids is None else len(self.item_ids)

    def _require_items(self) -> None:
        if self.item_ids is None:
            raise ValueError(f"this {type(self).__name__} has no catalog (`item_ids`); build it with from_dataset(), "
                             "bind one with set_catalog() or load a checkpoint saved with one")

    @torch.no_grad()
    def recommend(self, histories: Sequence[Sequence[str]], k: int = DEFAULT_K, *,
                  exclude_history: bool = DEFAULT_EXCLUDE_HISTORY,
                  batch_size: int = DEFAULT_BATCH_SIZE, **options) -> Recommendations:
        """Top-``k`` next items per history (the genrec contract, see :mod:`genrec.models.recommender`).

        Args:
            histories: one list of catalog item ids per user, oldest first.
            k (int, defaults to 10): items per user, ``1..num_items``.
            exclude_history (bool, defaults to True): never return an item of the history (all of it, also items
                older than the model's input window): users want new items.
            batch_size (int, defaults to 32): histories handled at once; bounds memory, never changes results.
            **options: model-specific keyword options documented by the model (e.g. P5's ``candidates``,
                BIGRec's ``method``); an unknown one raises ``TypeError``.

        Returns:
            per history, up to ``k`` ``(item_id, score)`` pairs, best first (score as :meth:`score`); fewer only
            when fewer items are left.

        Raises:
            ValueError: no catalog, ``k`` or ``batch_size`` out of range, an empty history or unknown item ids.
        """
        from genrec.utils.threads import warn_if_threads_may_spin

        self._require_items()
        num_items = self.num_items
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_items:
            raise ValueError(f"`k` ({k!r}) must be an integer in [1, {num_items}] (the catalog size)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` ({batch_size!r}) must be a positive integer")
        if not isinstance(exclude_history, bool):
            raise ValueError(f"`exclude_history` ({exclude_history!r}) must be True or False")
        item_index = self.item_index
        histories = check_histories(histories, item_index)
        if self.device.type == "cpu":
            warn_if_threads_may_spin()
        was_training = self.training
        self.eval()
        results: Recommendations = []
        try:
            for start in range(0, len(histories), batch_size):
                chunk = histories[start:start + batch_size]
                banned = seen_items_mask(chunk, item_index, num_items) if exclude_history else None
                results.extend(self._recommend_batch(chunk, k, banned, offset=start, **options))
        finally:
            self.train(was_training)
        return results

    def _recommend_batch(self, histories: list[list[str]], k: int, banned: torch.Tensor | None, *,
                         offset: int = 0) -> Recommendations:
        """One batch of :meth:`recommend` (histories already validated, eval mode, no grad).

        Args:
            histories: validated string histories. k: items per history.
            banned: bool ``(batch, num_items)`` of items never to return, or None.
            offset: index of ``histories[0]`` in the whole call (to slice per-history options).
        """
        scores = self.score_histories(histories)  # (batch, num_items)
        if banned is not None:
            scores = scores.masked_fill(banned.to(scores.device), float("-inf"))
        return top_items(scores, k, self.item_ids)

    @torch.no_grad()
    def score_histories(self, histories: Sequence[Sequence[str]]) -> torch.Tensor:
        """:meth:`score` for string histories: float ``(len(histories), num_items)``, column ``j`` = ``item_ids[j]``.

        Raises:
            ValueError: no catalog, an empty history or unknown item ids.
        """
        self._require_items()
        histories = check_histories(histories, self.item_index)
        return self.score(self.encode_histories(histories)).float()
