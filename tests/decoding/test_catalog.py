"""genrec.decoding.Catalog: structure equals a brute-force trie; lookups; errors; size and build speed."""

import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec.decoding import Catalog

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

sequences_strategy = st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=4), min_size=1, max_size=25)


def _children(seqs, prefix):
    return sorted({s[len(prefix)] for s in seqs if len(s) > len(prefix) and list(s[: len(prefix)]) == list(prefix)})


def _check_structure(catalog, seqs):
    """Every node's CSR children and leaf range equal the brute-force trie's."""
    prefixes = {(): 0}
    for d in range(catalog.max_length):
        next_prefixes = {}
        for prefix, node in prefixes.items():
            lo, hi = int(catalog.child_ptr[d][node]), int(catalog.child_ptr[d][node + 1])
            tokens = catalog.child_token[d][lo:hi].tolist()
            assert tokens == _children(seqs, prefix)
            for child, token in zip(range(lo, hi), tokens):
                next_prefixes[prefix + (token,)] = child
                # the dense/CSR lookup finds the same child
                assert int(catalog.child(d, torch.tensor([node]), torch.tensor([token]))[0]) == child
            assert int(catalog.child(d, torch.tensor([node]), torch.tensor([99]))[0]) == -1
        for prefix, node in next_prefixes.items():
            under = sorted({tuple(s) for s in seqs if tuple(s[: len(prefix)]) == prefix})
            span = int(catalog.leaf_hi[d + 1][node] - catalog.leaf_lo[d + 1][node])
            assert span == len(under)
            assert bool(catalog.is_leaf[d + 1][node]) == (prefix in {tuple(s) for s in seqs})
        prefixes = next_prefixes


@SETTINGS
@given(seqs=sequences_strategy, dense=st.sampled_from([None, 0]))
def test_from_sequences_with_eos_matches_brute_force_trie(seqs, dense):
    catalog = Catalog.from_sequences(seqs, eos_token_id=9, dense_levels=dense)
    with_eos = [s + [9] for s in seqs]
    _check_structure(catalog, with_eos)
    for i, s in enumerate(seqs):
        first = next(j for j, t in enumerate(seqs) if t == s)  # duplicates map to the smallest row
        assert catalog.item_of(s) == first == catalog.item_of(s + [9])
        assert int(catalog.leaf_item[catalog.item_leaf[i]]) == first
    assert catalog.num_duplicates == len(seqs) - len({tuple(s) for s in seqs})


@SETTINGS
@given(data=st.data(), levels=st.integers(1, 4), codes=st.integers(1, 5), count=st.integers(1, 30),
       shared=st.booleans())
def test_from_codes_matches_brute_force_trie_and_rejects_non_items(data, levels, codes, count, shared):
    rows = data.draw(st.lists(st.lists(st.integers(0, codes - 1), min_size=levels, max_size=levels),
                              min_size=count, max_size=count))
    offsets = [0 if shared else level * codes for level in range(levels)]
    seqs = [[c + 3 + offsets[level] for level, c in enumerate(row)] for row in rows]
    catalog = Catalog.from_codes(torch.tensor(seqs))
    _check_structure(catalog, seqs)
    items = catalog.items_of(torch.tensor(seqs))
    for i, s in enumerate(seqs):
        assert int(items[i]) == seqs.index(s)
    probe = data.draw(st.lists(st.integers(3, 3 + levels * codes), min_size=levels, max_size=levels))
    assert (catalog.item_of(probe) is not None) == (probe in seqs)
    assert catalog.item_of(probe[:-1]) is None  # a proper prefix (or nothing) is never an item


def test_worked_example_and_variable_length_codes():
    catalog = Catalog.from_codes(torch.tensor([[10, 21], [10, 20], [11, 20]]))
    assert catalog.item_of([10, 20]) == 1 and catalog.item_of([11, 21]) is None
    assert catalog.child_token[0].tolist() == [10, 11] and catalog.child_ptr[0].tolist() == [0, 2]
    padded = Catalog.from_codes(torch.tensor([[3, 4, -1], [5, 6, 7]]))
    assert padded.item_of([3, 4]) == 0 and padded.item_of([5, 6, 7]) == 1 and padded.item_of([5, 6]) is None
    assert padded.items_of(torch.tensor([[3, 4, -1], [5, 6, 7], [5, 6, -1]])).tolist() == [0, 1, -1]
    # generate() output for an eos catalog: eos then padding; short rows must not index deeper levels
    titles = Catalog.from_sequences([[5], [6, 7, 8, 9], [6, 7, 8, 4]], eos_token_id=1)
    out = torch.tensor([[5, 1, 0, 0, 0], [6, 7, 8, 9, 1], [6, 1, 0, 0, 0], [5, 7, 0, 0, 0]])
    assert titles.items_of(out).tolist() == [0, 1, -1, -1]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Catalog.from_codes(torch.zeros((0, 3), dtype=torch.long)), "at least one item"),
        (lambda: Catalog.from_codes(torch.tensor([1, 2, 3])), "2-D"),
        (lambda: Catalog.from_codes(torch.tensor([[1.0, 2.0]])), "integer"),
        (lambda: Catalog.from_codes(torch.tensor([[3, -1, 4]])), "negative token before"),
        (lambda: Catalog.from_codes(torch.tensor([[-1, -1]])), "empty"),
        (lambda: Catalog.from_codes(torch.tensor([[3, 4, -1], [3, 4, 5]])), "proper prefix"),
        (lambda: Catalog.from_sequences([[3, 4], [3]]), "proper prefix"),
        (lambda: Catalog.from_sequences([]), "empty"),
        (lambda: Catalog.from_sequences([[3], []]), "empty"),
        (lambda: Catalog.from_sequences([[3, -2]]), "non-negative"),
        (lambda: Catalog.from_sequences([[3]], eos_token_id=-1), "eos_token_id"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_banned_leaves_formats_and_errors():
    catalog = Catalog.from_codes(torch.tensor([[3, 5], [3, 5], [4, 6]]))  # rows 0 and 1 share a leaf
    mask = torch.tensor([[True, True, False], [False, False, False]])
    leaves = catalog.banned_leaves(mask)
    assert leaves[0].tolist()[0] == int(catalog.item_leaf[0]) and (leaves[0, 1:] == catalog.num_leaves).all()
    assert (leaves[1] == catalog.num_leaves).all()
    assert torch.equal(catalog.banned_leaves(torch.tensor([[1, 0], [-1, -1]])), leaves)
    with pytest.raises(ValueError, match="banned_items"):
        catalog.banned_leaves(torch.tensor([[3]]))
    with pytest.raises(ValueError, match="columns"):
        catalog.banned_leaves(torch.ones((1, 2), dtype=torch.bool))


def test_large_catalog_is_compact_and_fast_to_build():
    # 200k random 4-level items (256 codes a level): the 1M-item numbers are in benchmarks/bench_decoding.py
    generator = np.random.default_rng(0)
    codes = torch.from_numpy(generator.integers(0, 256, size=(200_000, 4)) + 3 + 256 * np.arange(4))
    start = time.perf_counter()
    catalog = Catalog.from_codes(codes)
    seconds = time.perf_counter() - start
    assert catalog.bytes_per_item <= 100, catalog
    assert seconds < 5.0
    sample = torch.randint(0, 200_000, (500,))
    expected = catalog.leaf_item[catalog.item_leaf[sample].long()].long()
    assert torch.equal(catalog.items_of(codes[sample]), expected)
