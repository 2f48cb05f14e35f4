"""User interaction sequences: the ``InteractionData`` container, k-core filtering, statistics.

Every public function takes and returns item/user ids as strings exactly as in the source data.
Integer rows appear only in explicit index helpers (``InteractionData.item_index``,
``InteractionData.sequence_rows``).

Ordering convention (all readers): a user's sequence is sorted by timestamp with a *stable* sort, so
interactions with equal timestamps keep their order in the source file. Files without timestamps
(the S3-Rec/P5 ``sequential_data.txt``) are already chronological and kept as written. Users are
listed in order of first appearance in the source file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from transformers.utils import logging

from genrec.data.catalog import ItemCatalog

logger = logging.get_logger(__name__)

__all__ = ["InteractionData", "kcore_filter", "drop_duplicate_events", "consecutive_id_rate", "sequence_length_stats"]


@dataclass
class InteractionData:
    """A dataset: one chronological item sequence per user plus the item catalog.

    Treat it as read-only: ``user_ids``, ``item_ids``, ``item_index`` and ``sequence_rows()`` are
    shared/cached, not copied. Build a new ``InteractionData`` to change the data.

    Args:
        name (str): dataset name (bundled name or folder name).
        sequences (dict[str, list[str]]): user id -> item ids, oldest first; dict order = user order.
        catalog (ItemCatalog): every item; every item in ``sequences`` must be in it.
        timestamps (dict[str, list[int]] | None): per-user timestamps aligned with ``sequences``
            (None for formats without time).
        source (str): where it was read from (for messages).
        duplicates_dropped (int, default 0): duplicate events the loader removed (see
            ``drop_duplicate_events``); reported by ``stats()``.

    Raises:
        ValueError: an item in ``sequences`` is missing from the catalog (names user and item), or
            a user has an empty sequence.
    """

    name: str
    sequences: dict[str, list[str]]
    catalog: ItemCatalog
    timestamps: dict[str, list[int]] | None = None
    source: str = ""
    duplicates_dropped: int = 0
    _rows_cache: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _user_ids_cache: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = self.catalog._index  # noqa: SLF001 - same package, read-only
        for user, items in self.sequences.items():
            if not isinstance(user, str):
                raise ValueError(f"user ids must be strings; got {user!r} ({type(user).__name__})")
            if not items:
                raise ValueError(f"user {user!r} has an empty sequence; every user needs >= 1 item")
            for item in items:
                if item not in index:
                    raise ValueError(
                        f"unknown item id {item!r} in the sequence of user {user!r}: not in the "
                        f"{self.name!r} catalog of {len(self.catalog)} items"
                    )
        if self.timestamps is not None:
            for user, items in self.sequences.items():
                stamps = self.timestamps.get(user)
                if stamps is None or len(stamps) != len(items):
                    raise ValueError(
                        f"`timestamps` of user {user!r} must align with its sequence "
                        f"({len(items)} items, got {None if stamps is None else len(stamps)})"
                    )

    # ------------------------------------------------------------------ contract attributes
    @property
    def user_ids(self) -> list[str]:
        """Every user, in source-file order (cached; do not mutate ``sequences`` after construction)."""
        if self._user_ids_cache is None:
            self._user_ids_cache = list(self.sequences)
        return self._user_ids_cache

    @property
    def item_ids(self) -> list[str]:
        """Every catalog item; row ``i`` of any item matrix is ``item_ids[i]``."""
        return self.catalog.item_ids

    @property
    def item_index(self) -> dict[str, int]:
        """Item id -> row."""
        return self.catalog.item_index

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.catalog)

    @property
    def num_interactions(self) -> int:
        return sum(len(items) for items in self.sequences.values())

    def __repr__(self) -> str:
        return (
            f"InteractionData(name={self.name!r}, num_users={self.num_users}, "
            f"num_items={self.num_items}, num_interactions={self.num_interactions})"
        )

    # ------------------------------------------------------------------ index helpers
    def sequence_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """All sequences as catalog rows, flattened (explicit index helper).

        Returns:
            tuple: ``rows`` int64 ``(num_interactions,)`` and ``offsets`` int64
            ``(num_users + 1,)``; user ``u`` (``user_ids[u]``) owns ``rows[offsets[u]:offsets[u+1]]``.
        """
        if self._rows_cache is None:
            index = self.catalog._index  # noqa: SLF001
            lengths = np.fromiter((len(s) for s in self.sequences.values()), np.int64, self.num_users)
            offsets = np.zeros(self.num_users + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            rows = np.fromiter(
                (index[item] for items in self.sequences.values() for item in items),
                np.int64,
                int(offsets[-1]),
            )
            self._rows_cache = (rows, offsets)
        return self._rows_cache

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, Any]:
        """Counts and sequence-length statistics.

        Returns:
            dict: ``name``, ``num_users``, ``num_items``, ``num_interactions``, ``density``
            (interactions / (users * items)), ``seq_len_mean/median/min/max``,
            ``items_with_text``, ``duplicates_dropped`` (duplicate events removed at load time),
            ``users_with_repeats`` (users who consume an item again), ``last_item_in_history_rate`` (share of
            users whose last item -- the leave-one-out test target -- is already in their history),
            ``consecutive_id_rate`` (share of users
            whose last item id == max(earlier item ids) + 1; None for non-integer ids — see
            ``consecutive_id_rate``).
        """
        rows, offsets = self.sequence_rows()
        lengths = np.diff(offsets)
        out: dict[str, Any] = {
            "name": self.name,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_interactions": int(lengths.sum()),
            "density": float(lengths.sum()) / max(1, self.num_users * self.num_items),
        }
        out.update(sequence_length_stats(lengths))
        out["items_with_text"] = sum(1 for item in self.catalog.item_ids if self.catalog.text(item))
        out["duplicates_dropped"] = self.duplicates_dropped
        out["users_with_repeats"] = sum(
            1 for items in self.sequences.values() if len(set(items)) != len(items)
        )
        # Under leave-one-out the last item is the test target: a repeat there is a hit for a "repeat the history"
        # model under full ranking and a certain miss with the history excluded.
        out["last_item_in_history_rate"] = sum(
            1 for items in self.sequences.values() if items[-1] in items[:-1]
        ) / max(1, self.num_users)
        histories = [items[:-1] for items in self.sequences.values() if len(items) >= 2]
        targets = [items[-1] for items in self.sequences.values() if len(items) >= 2]
        out["consecutive_id_rate"] = consecutive_id_rate(histories, targets)
        return out

    def filter_kcore(self, min_user_interactions: int = 5, min_item_interactions: int = 5) -> "InteractionData":
        """Iterative k-core filter (see ``kcore_filter``); the catalog keeps only surviving items."""
        sequences, kept_items = kcore_filter(
            self.sequences, min_user_interactions=min_user_interactions,
            min_item_interactions=min_item_interactions,
        )
        timestamps = None
        if self.timestamps is not None:
            timestamps = {}
            for user in sequences:
                original = self.sequences[user]
                stamps = self.timestamps[user]
                timestamps[user] = [t for item, t in zip(original, stamps) if item in kept_items]
        item_ids = [item for item in self.catalog.item_ids if item in kept_items]
        return InteractionData(
            name=self.name, sequences=sequences, catalog=self.catalog.subset(item_ids),
            timestamps=timestamps, source=self.source, duplicates_dropped=self.duplicates_dropped,
        )


def drop_duplicate_events(
    sequences: dict[str, list[str]], timestamps: dict[str, list[int]] | None
) -> tuple[dict[str, list[str]], dict[str, list[int]] | None, int]:
    """Remove duplicate events: the same user, item and timestamp more than once.

    With timestamps, an event is a duplicate when an earlier event of the same user has the same item and
    timestamp (wherever it is among that timestamp's ties). Without timestamps (S3-Rec files, tables without a
    time column) nothing tells a logged-twice row from consuming the item again at once, so an item that repeats
    the user's previous item is the duplicate. Repeat consumption -- the item again at a later time, or after
    other items -- is kept. Why it matters: a log with every row twice gives every user a test item that is
    also the last history item, and a model that repeats the last item scores recall@10 near 1.

    Args:
        sequences: user -> chronological item ids. timestamps: user -> aligned timestamps, or None.

    Returns:
        ``(sequences, timestamps, dropped)``: the same dicts (not copied) when nothing was dropped; order kept.
    """
    out_sequences: dict[str, list[str]] | None = None
    out_timestamps = None
    dropped = 0
    for user, items in sequences.items():
        stamps = None if timestamps is None else timestamps[user]
        if stamps is None:
            keep = [0] + [i for i in range(1, len(items)) if items[i] != items[i - 1]]
        else:
            seen: set = set()
            keep = []
            for i, event in enumerate(zip(items, stamps)):
                if event not in seen:
                    seen.add(event)
                    keep.append(i)
        if len(keep) == len(items):
            continue
        if out_sequences is None:  # copy on the first user with a duplicate
            out_sequences = dict(sequences)
            out_timestamps = None if timestamps is None else dict(timestamps)
        dropped += len(items) - len(keep)
        out_sequences[user] = [items[i] for i in keep]
        if out_timestamps is not None:
            out_timestamps[user] = [stamps[i] for i in keep]
    if out_sequences is None:
        return sequences, timestamps, 0
    return out_sequences, out_timestamps, dropped


def sequence_length_stats(lengths: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Mean/median/min/max of sequence lengths (keys ``seq_len_mean`` ...)."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return {"seq_len_mean": 0.0, "seq_len_median": 0.0, "seq_len_min": 0, "seq_len_max": 0}
    return {
        "seq_len_mean": float(lengths.mean()),
        "seq_len_median": float(np.median(lengths)),
        "seq_len_min": int(lengths.min()),
        "seq_len_max": int(lengths.max()),
    }


def kcore_filter(
    sequences: Mapping[str, Sequence[str]],
    *,
    min_user_interactions: int = 5,
    min_item_interactions: int = 5,
) -> tuple[dict[str, list[str]], set[str]]:
    """Iterative k-core: drop users and items with too few interactions until none is left to drop.

    Counts are interactions (a repeated item counts each time), like the S3-Rec preprocessing.
    Dropping an item shortens sequences, which can push a user under the threshold and so on;
    the loop stops at the fixed point. Order is preserved (users and items within sequences).

    Args:
        sequences (Mapping[str, Sequence[str]]): user -> chronological item ids.
        min_user_interactions (int, default 5): keep users with at least this many interactions.
        min_item_interactions (int, default 5): keep items with at least this many interactions.

    Returns:
        tuple: (filtered sequences, set of surviving item ids).

    Raises:
        ValueError: a threshold is negative.
    """
    for name, value in (("min_user_interactions", min_user_interactions),
                        ("min_item_interactions", min_item_interactions)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` ({value!r}) must be an integer >= 0")
    users = list(sequences)
    # Work on integer codes so each round is a few numpy passes.
    item_codes: dict[str, int] = {}
    flat = np.fromiter(
        (item_codes.setdefault(i, len(item_codes)) for s in sequences.values() for i in s), np.int64
    )
    owner = np.repeat(np.arange(len(users)), [len(sequences[u]) for u in users])
    alive = np.ones(flat.size, dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        item_count = np.bincount(flat[alive], minlength=len(item_codes))
        user_count = np.bincount(owner[alive], minlength=len(users))
        keep = alive & (item_count[flat] >= min_item_interactions) & (user_count[owner] >= min_user_interactions)
        if keep.sum() == alive.sum():
            break
        alive = keep
    code_to_item = np.array(list(item_codes), dtype=object)
    result: dict[str, list[str]] = {}
    bounds = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum([len(sequences[u]) for u in users], out=bounds[1:])
    for u, user in enumerate(users):
        mask = alive[bounds[u]:bounds[u + 1]]
        if mask.any():
            result[user] = code_to_item[flat[bounds[u]:bounds[u + 1]][mask]].tolist()
    kept = set(code_to_item[np.unique(flat[alive])].tolist()) if alive.any() else set()
    logger.info(
        "k-core (users >= %d, items >= %d): %d -> %d users, %d -> %d items in %d rounds",
        min_user_interactions, min_item_interactions, len(users), len(result), len(item_codes),
        len(kept), rounds,
    )
    return result, kept


def consecutive_id_rate(histories: Sequence[Sequence[str]], targets: Sequence[str]) -> float | None:
    """Share of samples whose target id == max(integer ids in the history) + 1.

    This measures the P5 id leak: S3-Rec/P5 files number items 1, 2, ... in order of first
    appearance while walking users one after another, so a user's next *new* item very often has
    the id right after the largest id in their history. A model over raw integer ids (e.g. P5's
    "sequential indexing", where "1234" is tokenised into sub-tokens) can exploit this; random
    or learned item codes cannot. On Beauty's raw ids the last-item rate is high (see
    ``genrec data stats amazon-beauty``); with ids assigned independently of the user order it
    would be about 1 / num_items.

    Args:
        histories (Sequence[Sequence[str]]): item ids before each target (non-empty).
        targets (Sequence[str]): the target item id of each sample.

    Returns:
        float | None: the rate in [0, 1]; None when ids are not all integers or there are no samples.
    """
    if len(histories) != len(targets):
        raise ValueError(
            f"`histories` ({len(histories)}) and `targets` ({len(targets)}) must have the same length"
        )
    if not targets:
        return None
    try:
        maxima = np.fromiter((max(int(i) for i in h) for h in histories), np.int64, len(histories))
        target_ids = np.fromiter((int(t) for t in targets), np.int64, len(targets))
    except ValueError:  # non-integer ids, or an empty history
        return None
    return float(np.mean(target_ids == maxima + 1))
