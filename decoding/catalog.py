"""A compact, vectorised index of every valid item token sequence (the decoding trie).

Every catalog item is a short sequence of token ids (semantic-ID codes already offset into the model's
vocabulary, or an item title under an LLM tokenizer). Constrained decoding needs, for a prefix, the set of
tokens that can follow it. Instead of a Python dict trie (one dict per node: ~100x the memory and a Python
call per beam per step), the trie is stored level by level as flat integer tensors, as in "Vectorizing the
Trie" (STATIC, 2025):

* nodes at depth ``d`` are numbered ``0 .. num_nodes[d]-1`` in lexicographic order, so the children of the
  depth-``d`` nodes are exactly the depth-``d+1`` nodes, stored contiguously per parent (CSR):
  ``child_ptr[d]`` (num_nodes[d] + 1,) offsets, ``child_token[d]`` (num_nodes[d+1],) their token ids;
* the first levels, where they are small, also get a dense ``(num_nodes[d], level_span)`` table mapping
  ``(node, token)`` to the child in O(1) (below them a vectorised binary search over the CSR segment);
* every node covers a contiguous range ``[leaf_lo, leaf_hi)`` of the leaves in lexicographic order, which
  lets the decoder drop a prefix whose items are all banned for a user without walking the subtree.

Worked example (two-level codes)::

    >>> cat = Catalog.from_codes(torch.tensor([[10, 21], [10, 20], [11, 20]]))
    >>> cat.item_of([10, 20]), cat.item_of([11, 21])
    (1, None)
    >>> cat.child_token[0].tolist(), cat.child_ptr[0].tolist()   # root -> 10, 11
    ([10, 11], [0, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["Catalog"]

# Dense (node, token) -> child tables are built for a level when they cost at most this many entries,
# or at most `_DENSE_ENTRIES_PER_ITEM` int32 entries per item (so the index stays well under 100 B/item).
_DENSE_MIN_ENTRIES = 1 << 16
_DENSE_ENTRIES_PER_ITEM = 4


@dataclass(eq=False)
class Catalog:
    """Level-by-level CSR trie over the catalog's token sequences; build it with :meth:`from_codes`.

    Attributes (``D`` = ``max_length``, lists indexed by depth):
        num_items: number of catalog rows.
        num_leaves: number of distinct token sequences (``num_items - num_duplicates``).
        num_nodes: ``D + 1`` ints; ``num_nodes[0] == 1`` (the root).
        child_ptr: ``D`` int32 tensors ``(num_nodes[d] + 1,)``: children of depth-``d`` node ``n`` are the
            depth-``d+1`` nodes ``child_ptr[d][n] .. child_ptr[d][n+1]-1``.
        child_token: ``D`` int32 tensors ``(num_nodes[d+1],)``: the token leading to each depth-``d+1`` node
            (sorted within each parent).
        leaf_lo, leaf_hi: ``D + 1`` int32 tensors ``(num_nodes[d],)``: leaves (lexicographic positions)
            under each node.
        is_leaf: ``D + 1`` bool tensors ``(num_nodes[d],)``: the node completes an item.
        leaf_item: int32 ``(num_leaves,)``: catalog row returned for each leaf (smallest row among
            duplicates).
        item_leaf: int32 ``(num_items,)``: leaf of each catalog row.
        token_lo, token_hi: ``D`` ints: tokens at position ``d`` lie in ``[token_lo[d], token_hi[d])``.
        max_children: ``D`` ints: largest branching at each depth.
        dense_child: ``D`` entries, an int32 ``(num_nodes[d], token_hi[d] - token_lo[d])`` table or None.
        eos_token_id: token appended to every sequence by :meth:`from_sequences`, or None.
    """

    num_items: int
    num_leaves: int
    num_nodes: list[int]
    child_ptr: list[torch.Tensor]
    child_token: list[torch.Tensor]
    leaf_lo: list[torch.Tensor]
    leaf_hi: list[torch.Tensor]
    is_leaf: list[torch.Tensor]
    leaf_item: torch.Tensor
    item_leaf: torch.Tensor
    token_lo: list[int]
    token_hi: list[int]
    max_children: list[int]
    dense_child: list[torch.Tensor | None] = field(default_factory=list)
    eos_token_id: int | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_codes(cls, token_ids: torch.Tensor | np.ndarray, *, dense_levels: int | None = None) -> "Catalog":
        """Build the index from each item's token ids.

        Args:
            token_ids: integer tensor or array ``(num_items, code_length)``; row ``i`` is catalog item ``i``'s
                tokens as the model emits them (per-level codes already offset into the vocabulary). A
                trailing ``-1`` pads a shorter item (variable-length codes); then no item may be a proper
                prefix of another.
            dense_levels: build dense lookup tables for at most this many first levels (default: every
                level whose table is small, see module docstring).

        Returns:
            Catalog.

        Raises:
            ValueError: empty catalog, not 2-D, negative tokens before the padding, an empty row, or one item
                a proper prefix of another.
        """
        if isinstance(token_ids, torch.Tensor):
            if token_ids.is_floating_point() or token_ids.is_complex():
                raise ValueError(f"`token_ids` must be an integer tensor, got dtype {token_ids.dtype}")
            array = token_ids.detach().cpu().numpy()
        else:
            array = np.asarray(token_ids)
            if not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"`token_ids` must hold integers, got dtype {array.dtype}")
        if array.ndim != 2:
            raise ValueError(f"`token_ids` must be 2-D (num_items, code_length), got shape {tuple(array.shape)}")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"`token_ids` must have at least one item and one level, got shape {tuple(array.shape)}")
        array = array.astype(np.int64, copy=False)
        valid = array >= 0
        lengths = valid.sum(axis=1)
        # padding must be trailing: valid tokens form a prefix of every row
        if not np.array_equal(valid, np.arange(array.shape[1])[None, :] < lengths[:, None]):
            bad = int(np.nonzero((valid != (np.arange(array.shape[1])[None, :] < lengths[:, None])).any(1))[0][0])
            raise ValueError(
                f"`token_ids` row {bad} ({array[bad].tolist()}) has a negative token before a valid one; "
                "only trailing -1 padding is allowed"
            )
        if (lengths == 0).any():
            bad = int(np.nonzero(lengths == 0)[0][0])
            raise ValueError(f"`token_ids` row {bad} is empty (all padding); every item needs at least one token")
        return cls._build(np.where(valid, array, -1), lengths, eos_token_id=None, dense_levels=dense_levels)

    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[Sequence[int]],
        *,
        eos_token_id: int | None = None,
        dense_levels: int | None = None,
    ) -> "Catalog":
        """Build the index from variable-length token sequences (e.g. item titles under an LLM tokenizer).

        Args:
            sequences: one list of token ids per catalog item (row ``i`` = item ``i``).
            eos_token_id: appended to every sequence, so a title that is a prefix of another stays a distinct
                item (the model must then emit it to finish an item). Without it the sequences must be
                prefix-free.
            dense_levels: see :meth:`from_codes`.

        Returns:
            Catalog.

        Raises:
            ValueError: no sequences, an empty sequence, a negative token, or (without ``eos_token_id``) one
                sequence a proper prefix of another.
        """
        if len(sequences) == 0:
            raise ValueError("`sequences` is empty; a catalog needs at least one item")
        if eos_token_id is not None and (not isinstance(eos_token_id, int) or eos_token_id < 0):
            raise ValueError(f"`eos_token_id` must be a non-negative int or None, got {eos_token_id!r}")
        extra = 1 if eos_token_id is not None else 0
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        if (lengths == 0).any():
            bad = int(np.nonzero(lengths == 0)[0][0])
            raise ValueError(f"`sequences[{bad}]` is empty; every item needs at least one token")
        width = int(lengths.max()) + extra
        array = np.full((len(sequences), width), -1, dtype=np.int64)
        flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lengths.sum()))
        if (flat < 0).any():
            raise ValueError(f"`sequences` must hold non-negative token ids, got {int(flat.min())}")
        rows = np.repeat(np.arange(len(sequences)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        array[rows, cols] = flat
        if eos_token_id is not None:
            array[np.arange(len(sequences)), lengths] = eos_token_id
            lengths = lengths + 1
        return cls._build(array, lengths, eos_token_id=eos_token_id, dense_levels=dense_levels)

    @classmethod
    def _build(
        cls, padded: np.ndarray, lengths: np.ndarray, *, eos_token_id: int | None, dense_levels: int | None
    ) -> "Catalog":
        """Vectorised construction from a ``(N, D)`` int64 array padded with -1 (see class docstring)."""
        num_items, depth = padded.shape
        depth = int(lengths.max())
        padded = padded[:, :depth]
        # lexicographic order; -1 padding sorts a shorter sequence before its extensions; stable, so among
        # duplicate sequences the smallest catalog row comes first
        order = np.lexsort(padded.T[::-1])
        rows = padded[order]
        row_len = lengths[order]

        differs = np.zeros(num_items, dtype=bool)  # sorted row's prefix differs from the previous row's
        differs[0] = True
        node_of_row = np.zeros(num_items, dtype=np.int64)  # depth-0: the root
        num_nodes = [1]
        child_ptr, child_token, token_lo, token_hi, max_children = [], [], [], [], []
        first_rows, last_rows = [np.zeros(1, dtype=np.int64)], [np.full(1, num_items - 1)]
        is_leaf = [np.zeros(1, dtype=bool)]
        for d in range(1, depth + 1):
            column = rows[:, d - 1]
            differs[1:] |= column[1:] != column[:-1]
            valid = row_len >= d
            new = valid & differs
            first = np.nonzero(new)[0]  # (num_nodes[d],) first sorted row of each node
            parent = node_of_row[first]
            counts = np.bincount(parent, minlength=num_nodes[-1])
            child_ptr.append(np.concatenate([[0], np.cumsum(counts)]))
            tokens = column[first]
            child_token.append(tokens)
            token_lo.append(int(tokens.min()))
            token_hi.append(int(tokens.max()) + 1)
            max_children.append(int(counts.max()))
            node_of_row = np.cumsum(new) - 1  # meaningful on valid rows only
            num_nodes.append(len(first))
            # rows of one node are contiguous among the valid rows (lexicographic order)
            valid_rows = np.nonzero(valid)[0]
            node = node_of_row[valid_rows]
            last_mask = np.ones(valid_rows.size, dtype=bool)
            last_mask[:-1] = node[1:] != node[:-1]
            first_rows.append(first)
            last_rows.append(valid_rows[last_mask])
            leaf_flags = np.zeros(len(first), dtype=bool)
            leaf_flags[node_of_row[row_len == d]] = True
            is_leaf.append(leaf_flags)

        for d in range(1, depth):
            clash = is_leaf[d] & (np.diff(child_ptr[d]) > 0)
            if clash.any():
                row = int(order[first_rows[d][np.nonzero(clash)[0][0]]])
                raise ValueError(
                    f"item {row} ({padded[row, :d].tolist()}) is a proper prefix of another item; pass "
                    "`eos_token_id` to Catalog.from_sequences (or give every item the same code length)"
                )

        # leaves = distinct full sequences, numbered in lexicographic order
        leaf_of_row = np.cumsum(differs) - 1
        num_leaves = int(leaf_of_row[-1]) + 1
        leaf_item = order[np.nonzero(differs)[0]]
        item_leaf = np.empty(num_items, dtype=np.int64)
        item_leaf[order] = leaf_of_row
        leaf_lo = [leaf_of_row[f] for f in first_rows]
        leaf_hi = [leaf_of_row[last] + 1 for last in last_rows]

        num_duplicates = num_items - num_leaves
        if num_duplicates:
            logger.warning(
                "Catalog: %d of %d items share their token sequence with another item; decoding returns the "
                "smallest row of each group",
                num_duplicates,
                num_items,
            )

        def t32(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int32))

        catalog = cls(
            num_items=num_items,
            num_leaves=num_leaves,
            num_nodes=num_nodes,
            child_ptr=[t32(a) for a in child_ptr],
            child_token=[t32(a) for a in child_token],
            leaf_lo=[t32(a) for a in leaf_lo],
            leaf_hi=[t32(a) for a in leaf_hi],
            is_leaf=[torch.from_numpy(a) for a in is_leaf],
            leaf_item=t32(leaf_item),
            item_leaf=t32(item_leaf),
            token_lo=token_lo,
            token_hi=token_hi,
            max_children=max_children,
            eos_token_id=eos_token_id,
        )
        catalog.dense_child = catalog._build_dense(dense_levels)
        return catalog

    def _build_dense(self, dense_levels: int | None) -> list[torch.Tensor | None]:
        budget = max(_DENSE_MIN_ENTRIES, _DENSE_ENTRIES_PER_ITEM * self.num_items)
        tables: list[torch.Tensor | None] = []
        for d in range(self.max_length):
            span = self.token_hi[d] - self.token_lo[d]
            entries = self.num_nodes[d] * span
            if (dense_levels is not None and d >= dense_levels) or entries > budget:
                tables.append(None)
                continue
            table = torch.full((self.num_nodes[d], span), -1, dtype=torch.int32)
            parents = torch.repeat_interleave(
                torch.arange(self.num_nodes[d]), (self.child_ptr[d][1:] - self.child_ptr[d][:-1]).long()
            )
            table[parents, (self.child_token[d] - self.token_lo[d]).long()] = torch.arange(
                self.num_nodes[d + 1], dtype=torch.int32
            )
            tables.append(table)
        return tables

    # ------------------------------------------------------------------ properties
    @property
    def max_length(self) -> int:
        """Longest token sequence (number of decoding steps), eos included."""
        return len(self.child_ptr)

    @property
    def num_duplicates(self) -> int:
        """Items whose token sequence repeats an earlier (smaller) row's; decoding never returns them."""
        return self.num_items - self.num_leaves

    @property
    def nbytes(self) -> int:
        """Bytes held by the index tensors."""
        tensors = [*self.child_ptr, *self.child_token, *self.leaf_lo, *self.leaf_hi, *self.is_leaf,
                   self.leaf_item, self.item_leaf, *(t for t in self.dense_child if t is not None)]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def bytes_per_item(self) -> float:
        """Index memory per catalog item."""
        return self.nbytes / self.num_items

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return (
            f"Catalog(num_items={self.num_items}, max_length={self.max_length}, num_nodes={self.num_nodes}, "
            f"max_children={self.max_children}, bytes_per_item={self.bytes_per_item:.1f})"
        )

    def to(self, device: torch.device | str) -> "Catalog":
        """Return a copy whose tensors live on ``device`` (the decoder moves the catalog next to the model)."""
        def move(t):
            return None if t is None else t.to(device)

        return Catalog(
            num_items=self.num_items, num_leaves=self.num_leaves, num_nodes=list(self.num_nodes),
            child_ptr=[move(t) for t in self.child_ptr], child_token=[move(t) for t in self.child_token],
            leaf_lo=[move(t) for t in self.leaf_lo], leaf_hi=[move(t) for t in self.leaf_hi],
            is_leaf=[move(t) for t in self.is_leaf], leaf_item=move(self.leaf_item),
            item_leaf=move(self.item_leaf), token_lo=list(self.token_lo), token_hi=list(self.token_hi),
            max_children=list(self.max_children), dense_child=[move(t) for t in self.dense_child],
            eos_token_id=self.eos_token_id,
        )

    @property
    def device(self) -> torch.device:
        return self.leaf_item.device

    # ------------------------------------------------------------------ lookups
    def child(self, depth: int, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child of each depth-``depth`` node along ``tokens``, or -1 where that token is not allowed.

        Args:
            depth: depth of ``nodes`` (0 = root), ``0 <= depth < max_length``.
            nodes: int tensor ``(R,)`` of node ids at ``depth``; negative entries stay -1.
            tokens: int tensor ``(R,)`` of token ids.

        Returns:
            LongTensor ``(R,)``: depth-``depth+1`` node ids, -1 where not a child.
        """
        nodes = nodes.long()
        tokens = tokens.long()
        alive = nodes >= 0
        safe_nodes = nodes.clamp(min=0)
        table = self.dense_child[depth]
        if table is not None:
            col = tokens - self.token_lo[depth]
            inside = alive & (col >= 0) & (col < table.shape[1])
            found = table[safe_nodes, col.clamp(0, table.shape[1] - 1)].long()
            return torch.where(inside, found, torch.full_like(found, -1))
        ptr = self.child_ptr[depth]
        lo = ptr[safe_nodes].long()
        end = ptr[safe_nodes + 1].long()
        hi = end.clone()
        labels = self.child_token[depth]
        # vectorised lower bound of `tokens` in each node's sorted child segment
        for _ in range(max(1, int(self.max_children[depth]).bit_length())):
            active = lo < hi
            mid = torch.where(active, (lo + hi) // 2, lo)
            less = labels[mid.clamp(max=max(labels.numel() - 1, 0))].long() < tokens
            lo = torch.where(active & less, mid + 1, lo)
            hi = torch.where(active & ~less, mid, hi)
        hit = alive & (lo < end) & (labels[lo.clamp(max=labels.numel() - 1)].long() == tokens)
        return torch.where(hit, lo, torch.full_like(lo, -1))

    def walk(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Follow each row's tokens from the root.

        Args:
            sequences: int tensor ``(R, T)``, ``T <= max_length``; -1 entries are padding (the walk stops).

        Returns:
            ``(nodes, depths)``: LongTensors ``(R,)``: node reached (-1 if the prefix is not in the catalog) and
            its depth (number of non-padding tokens followed).
        """
        if sequences.dim() != 2:
            raise ValueError(f"`sequences` must be 2-D (rows, length), got shape {tuple(sequences.shape)}")
        if sequences.shape[1] > self.max_length:
            raise ValueError(
                f"`sequences` length {sequences.shape[1]} exceeds the catalog's max_length {self.max_length}"
            )
        rows = sequences.shape[0]
        nodes = torch.zeros(rows, dtype=torch.long, device=sequences.device)
        depths = torch.zeros(rows, dtype=torch.long, device=sequences.device)
        for d in range(sequences.shape[1]):
            token = sequences[:, d].long()
            step = (token >= 0) & (depths == d) & (nodes >= 0)
            nxt = self.child(d, torch.where(step, nodes, -1), token)  # rows not at depth d: no lookup
            nodes = torch.where(step, nxt, nodes)
            depths = torch.where(step, depths + 1, depths)
        return nodes, depths

    def items_of(self, sequences: torch.Tensor) -> torch.Tensor:
        """Catalog row of each token sequence, or -1 where it is not a catalog item.

        Args:
            sequences: int tensor ``(R, T)``; -1 entries are padding. For an ``eos_token_id`` catalog a row may
                stop before or after the eos token.

        Returns:
            LongTensor ``(R,)``.
        """
        sequences = sequences.to(self.device)
        if self.eos_token_id is not None:
            # ignore anything after the first eos; add an eos where the row has none
            is_eos = sequences == self.eos_token_id
            after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
            sequences = sequences.masked_fill(after, -1)
            has_eos = is_eos.any(1)
            pad = torch.full((sequences.shape[0], 1), -1, dtype=sequences.dtype, device=sequences.device)
            sequences = torch.cat([sequences, pad], 1)
            length = (sequences >= 0).sum(1)
            sequences[torch.arange(sequences.shape[0], device=sequences.device)[~has_eos], length[~has_eos]] = (
                self.eos_token_id
            )
            sequences = sequences[:, : self.max_length] if sequences.shape[1] > self.max_length else sequences
        if sequences.shape[1] > self.max_length:
            too_long = (sequences[:, self.max_length:] >= 0).any(1)
            sequences = sequences[:, : self.max_length]
        else:
            too_long = torch.zeros(sequences.shape[0], dtype=torch.bool, device=sequences.device)
        nodes, depths = self.walk(sequences)
        length = (sequences >= 0).sum(1)
        ok = (nodes >= 0) & (depths == length) & ~too_long
        items = torch.full_like(nodes, -1)
        for d in range(1, self.max_length + 1):
            at = ok & (depths == d)
            if at.any():
                leaf = self.is_leaf[d][nodes[at]]
                rows = self.leaf_item[self.leaf_lo[d][nodes[at]].long()].long()
                items[at] = torch.where(leaf, rows, torch.full_like(rows, -1))
        return items

    def item_of(self, sequence: Sequence[int] | torch.Tensor) -> int | None:
        """Catalog row whose token sequence is ``sequence`` (eos optional for eos catalogs), or None."""
        seq = torch.as_tensor(list(sequence) if not isinstance(sequence, torch.Tensor) else sequence)
        if seq.numel() == 0:
            return None
        item = int(self.items_of(seq.long().view(1, -1))[0])
        return None if item < 0 else item

    def banned_leaves(self, banned_items: torch.Tensor) -> torch.Tensor:
        """Convert per-row banned catalog rows to sorted leaf positions, the decoder's ban format.

        Args:
            banned_items: bool ``(B, num_items)`` mask, or int ``(B, M)`` catalog rows padded with -1.

        Returns:
            int32 ``(B, M')``: sorted distinct leaf positions, padded with ``num_leaves`` (past every leaf).

        Raises:
            ValueError: wrong shape, or a row index outside ``[-1, num_items)``.
        """
        if banned_items.dim() != 2:
            raise ValueError(
                f"`banned_items` must be 2-D: a (batch, num_items) bool mask or (batch, M) item rows padded "
                f"with -1; got shape {tuple(banned_items.shape)}"
            )
        banned_items = banned_items.to(self.device)
        if banned_items.dtype == torch.bool:
            if banned_items.shape[1] != self.num_items:
                raise ValueError(
                    f"`banned_items` bool mask has {banned_items.shape[1]} columns; the catalog has "
                    f"{self.num_items} items"
                )
            width = max(int(banned_items.sum(1).max()), 1)
            rows = torch.where(banned_items, torch.arange(self.num_items, device=self.device), -1)
            banned_items = rows.sort(1, descending=True).values[:, :width]
        banned_items = banned_items.long()
        if banned_items.numel() and (int(banned_items.min()) < -1 or int(banned_items.max()) >= self.num_items):
            raise ValueError(
                f"`banned_items` holds rows in [{int(banned_items.min())}, {int(banned_items.max())}]; allowed: "
                f"-1 (padding) or 0..{self.num_items - 1}"
            )
        leaves = torch.where(
            banned_items >= 0,
            self.item_leaf[banned_items.clamp(min=0)].long(),
            torch.full_like(banned_items, self.num_leaves),
        )
        leaves = leaves.sort(1).values
        # duplicate items share a leaf: count each banned leaf once
        repeated = torch.zeros_like(leaves, dtype=torch.bool)
        repeated[:, 1:] = leaves[:, 1:] == leaves[:, :-1]
        leaves = leaves.masked_fill(repeated, self.num_leaves).sort(1).values
        return leaves.to(torch.int32)
