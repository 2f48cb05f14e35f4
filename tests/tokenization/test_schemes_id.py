"""The id-based schemes: sequential, sequential-shuffled, random, semantic, collaborative, title, hybrid.

Each runs on a small synthetic catalog with planted structure (4 communities of co-bought items, a
category tree, duplicate and empty titles) and, where fast, on the real Beauty catalog.
"""

import time

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data import ItemCatalog
from genrec.tokenization import AutoItemTokenizer, get_tokenizer_class
from genrec.tokenization.collaborative import cooccurrence_matrix, spectral_split
from genrec.tokenization.collisions import codes_are_unique
from genrec.tokenization.semantic import category_codes
from genrec.tokenization.sequential import first_appearance_order

NUM_COMMUNITIES, COMMUNITY_SIZE = 4, 15


def _synthetic():
    """60 items in 4 communities; users buy within one community. Items 58, 59 are never bought."""
    rng = np.random.default_rng(0)
    ids = [f"p{k:02d}" for k in range(NUM_COMMUNITIES * COMMUNITY_SIZE)]
    records = []
    for k in range(len(ids)):
        community = k // COMMUNITY_SIZE
        title = f"{['red', 'blue', 'green', 'gold'][community]} lipstick shade {k % 5}"
        if k == 7:
            title = ""
        records.append({"title": title, "categories": ["Shop", f"dept{community % 2}", f"aisle{community}"]})
    records[5]["categories"] = []  # an item without categories
    sequences = {}
    for user in range(160):
        community = user % NUM_COMMUNITIES
        members = [k for k in range(community * COMMUNITY_SIZE, (community + 1) * COMMUNITY_SIZE) if k < 58]
        picked = rng.choice(members, size=6, replace=False)
        sequences[f"u{user}"] = [ids[k] for k in picked]
    return ItemCatalog(ids, records), sequences


@pytest.fixture(scope="module")
def synthetic():
    return _synthetic()


@pytest.fixture(scope="module")
def beauty():
    from genrec.data import leave_one_out, load_dataset

    data = load_dataset("amazon-beauty")
    return data.catalog, leave_one_out(data).train_sequences


SMALL = {
    "sequential": {},
    "sequential-shuffled": {},
    "random": {"codebook_size": 8, "num_levels": 2},
    "semantic": {},
    "collaborative": {"num_clusters": 4, "leaf_size": 5},
    "title": {"vocab_size": 300, "min_frequency": 1},
    "hybrid": {"component_configs": [{}, {"num_clusters": 4, "leaf_size": 5}]},
}


@pytest.mark.parametrize("method", sorted(SMALL))
def test_scheme_on_synthetic_catalog(method, synthetic, tmp_path):
    catalog, sequences = synthetic
    cls = get_tokenizer_class(method)
    tokenizer = cls(**SMALL[method]).fit(catalog, sequences=sequences)
    assert codes_are_unique(tokenizer.codes) and tokenizer.stats["collision_rate_after"] == 0.0
    for item in catalog.item_ids:
        assert tokenizer.decode(tokenizer.encode(item)) == item
    # determinism: same inputs + seed -> identical codes
    again = cls(**SMALL[method]).fit(catalog, sequences=sequences)
    assert np.array_equal(again.codes, tokenizer.codes)
    # HF vocabulary round trip and folder round trip
    hf = tokenizer.build_hf_tokenizer()
    rows = tokenizer.item_token_sequences(hf)
    assert all(tokenizer.decode_token_ids(row + [hf.eos_token_id]) == item for row, item in zip(rows, catalog.item_ids))
    loaded = AutoItemTokenizer.from_pretrained(tokenizer.save_pretrained(tmp_path / method))
    assert type(loaded) is cls and np.array_equal(loaded.codes, tokenizer.codes)
    assert loaded.item_token_sequences(loaded.build_hf_tokenizer()) == rows


# ---------------------------------------------------------------------------------------- sequential


def test_sequential_numbers_follow_first_appearance():
    catalog = ItemCatalog([str(i) for i in range(12)])
    sequences = {"u1": ["5", "3", "5"], "u2": ["3", "11", "0"]}
    assert first_appearance_order(catalog.item_ids, list(sequences.values())).tolist() == [
        5, 3, 11, 0, 1, 2, 4, 6, 7, 8, 9, 10]
    tokenizer = get_tokenizer_class("sequential")().fit(catalog, sequences=sequences)
    assert tokenizer.codebook_sizes == [10, 10]
    assert [tokenizer.encode(i) for i in ("5", "3", "11", "0", "1", "10")] == [
        [0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 1]]
    assert get_tokenizer_class("sequential")(base=4).fit(catalog, sequences=sequences).encode("10") == [2, 3]
    with pytest.raises(ValueError, match=r"`num_levels` \(1\) digits of `base` \(10\) number only 10 items"):
        get_tokenizer_class("sequential")(num_levels=1).fit(catalog, sequences=sequences)


def test_shuffled_sequential_breaks_the_consecutive_pattern(synthetic):
    catalog, sequences = synthetic
    plain = get_tokenizer_class("sequential")().fit(catalog, sequences=sequences)
    shuffled = get_tokenizer_class("sequential-shuffled")().fit(catalog, sequences=sequences)
    assert shuffled.config.shuffle and not plain.config.shuffle
    numbers = plain.item_numbers
    first_user = [catalog.item_index[i] for i in sequences["u0"]]
    assert numbers[first_user].tolist() == list(range(6))  # the leak: ids count up along histories
    assert sorted(shuffled.item_numbers.tolist()) == list(range(60))
    assert not np.array_equal(shuffled.item_numbers, numbers)
    other_seed = get_tokenizer_class("sequential-shuffled")(seed=1).fit(catalog, sequences=sequences)
    assert not np.array_equal(other_seed.codes, shuffled.codes)


# ---------------------------------------------------------------------------------------- random


def test_random_codes_distinct_or_disambiguated(synthetic):
    catalog, _ = synthetic
    distinct = get_tokenizer_class("random")(codebook_size=8, num_levels=2).fit(catalog)
    assert distinct.code_length == 2 and not distinct.stats["disambiguation_level_added"]
    independent = get_tokenizer_class("random")(codebook_size=4, num_levels=2, allow_collisions=True).fit(catalog)
    assert independent.stats["collision_rate_before"] > 0 and independent.code_length == 3
    other = get_tokenizer_class("random")(codebook_size=8, num_levels=2, seed=5).fit(catalog)
    assert not np.array_equal(other.codes, distinct.codes)
    with pytest.raises(ValueError, match=r"`codebook_size` \(4\) \*\* `num_levels` \(2\) = 16 distinct codes cannot hold 60"):
        get_tokenizer_class("random")(codebook_size=4, num_levels=2).fit(catalog)


# ---------------------------------------------------------------------------------------- semantic


def test_category_codes_rank_siblings_and_pad_missing_levels():
    paths = [["Root", "B", "y"], ["Root", "A", "x"], ["Root", "B", "x"], ["Root", "A"], ["Root"]]
    codes, sizes = category_codes(paths)
    # after dropping the shared root: level 0 siblings ["", "A", "B"], level 1 under each parent
    assert codes.tolist() == [[2, 1], [1, 1], [2, 0], [1, 0], [0, 0]]
    assert sizes == [3, 2]
    codes, _ = category_codes(paths, skip_shared_root=False)
    assert codes.shape == (5, 3) and (codes[:, 0] == 0).all()
    with pytest.raises(ValueError, match=r"`category_depth` \(3\) exceeds the deepest category path in the catalog \(2 levels"):
        category_codes(paths, category_depth=3)
    with pytest.raises(ValueError, match="no category information"):
        category_codes([[], []])


def test_semantic_prefix_is_the_category_path(synthetic):
    catalog, _ = synthetic
    tokenizer = get_tokenizer_class("semantic")().fit(catalog)
    assert tokenizer.code_length == 3  # dept, aisle, leaf index
    for a in catalog.item_ids:
        for b in catalog.item_ids[:20]:
            same_path = catalog.categories(a) == catalog.categories(b)
            assert (tokenizer.encode(a)[:2] == tokenizer.encode(b)[:2]) == same_path
    # the leaf index counts 0, 1, ... in catalog order within each category
    aisle1 = [tokenizer.encode(f"p{k}")[2] for k in range(15, 30)]
    assert aisle1 == list(range(15))
    digits = get_tokenizer_class("semantic")(leaf_base=4).fit(catalog)
    assert digits.codebook_sizes[2:] == [4, 4] and codes_are_unique(digits.codes)
    with pytest.raises(ValueError, match="`category_depth` \\(5\\)"):
        get_tokenizer_class("semantic")(category_depth=5).fit(catalog)


# ---------------------------------------------------------------------------------------- collaborative


def test_cooccurrence_matrix_counts_pairs_within_window():
    rows = [np.array([0, 1, 2, 3]), np.array([1, 2])]
    full = cooccurrence_matrix(rows, 5, window=0)
    assert sp.issparse(full) and full.shape == (5, 5)
    dense = full.toarray()
    assert dense[1, 2] == 2 and dense[0, 3] == 1 and dense[2, 1] == 2 and dense[4].sum() == 0
    assert np.array_equal(dense, dense.T) and np.diag(dense).sum() == 0
    near = cooccurrence_matrix(rows, 5, window=1).toarray()
    assert near[0, 1] == 1 and near[0, 2] == 0 and near[1, 2] == 2


def test_spectral_split_separates_planted_blocks():
    rng = np.random.default_rng(0)
    blocks = np.repeat(np.arange(3), 20)
    dense = (blocks[:, None] == blocks[None, :]).astype(float) * rng.integers(1, 3, (60, 60))
    dense = np.triu(dense, 1) + np.triu(dense, 1).T
    labels = spectral_split(sp.csr_matrix(dense), 3, rng=rng, capacity_slack=0.0)
    for block in range(3):
        assert len(set(labels[blocks == block].tolist())) == 1
    assert sorted(np.bincount(labels).tolist()) == [20, 20, 20]


def test_collaborative_recovers_communities_and_handles_cold_items(synthetic):
    catalog, sequences = synthetic
    tokenizer = get_tokenizer_class("collaborative")(num_clusters=4, leaf_size=5).fit(catalog, sequences=sequences)
    top = tokenizer.codes[:, 0]
    community = np.arange(60) // COMMUNITY_SIZE
    bought = np.arange(58)
    for c in range(NUM_COMMUNITIES):  # every community lands in a single top-level cluster
        assert len(set(top[bought][community[bought] == c].tolist())) == 1
    assert len(set(top.tolist())) == NUM_COMMUNITIES
    assert tokenizer.codebook_sizes[:-1] == [4] * (tokenizer.code_length - 1)
    assert tokenizer.codebook_sizes[-1] <= 5 and codes_are_unique(tokenizer.codes)
    assert tokenizer.stats["cooccurrence_nnz"] > 0
    # no co-occurrence at all: still unique ids
    lonely = get_tokenizer_class("collaborative")(num_clusters=3, leaf_size=4).fit(catalog, sequences={"u": ["p00"]})
    assert codes_are_unique(lonely.codes)


# ---------------------------------------------------------------------------------------- title


def test_title_ids_spell_the_title_and_disambiguate_duplicates(synthetic, tmp_path):
    catalog, _ = synthetic
    tokenizer = get_tokenizer_class("title")(vocab_size=300, min_frequency=1).fit(catalog)
    assert tokenizer.title_text("p00") == "red lipstick shade 0"
    assert tokenizer.title_text("p05") == "red lipstick shade 0 #2"  # same title as p00
    assert tokenizer.title_text("p10") == "red lipstick shade 0 #3"
    assert tokenizer.title_text("p07") == "item p07"  # empty title
    assert tokenizer.stats["collision_rate_before"] > 0.5 and tokenizer.stats["collision_rate_after"] == 0.0
    lengths = tokenizer.code_lengths
    assert lengths.min() < lengths.max() == tokenizer.code_length
    assert (tokenizer.codes[lengths < tokenizer.code_length, -1] == -1).all()
    hf = tokenizer.build_hf_tokenizer()
    table = tokenizer.item_token_ids(hf)
    assert np.array_equal(table.numpy(), tokenizer.codes)  # codes are the subword ids themselves
    assert hf.decode(tokenizer.encode("p03")) == "red lipstick shade 3"
    # any HF tokenizer can cut the titles: reuse the trained one as a "pretrained" tokenizer
    hf.save_pretrained(tmp_path / "text-tok")
    reuse = get_tokenizer_class("title")(pretrained_tokenizer=str(tmp_path / "text-tok")).fit(catalog)
    assert np.array_equal(reuse.codes, tokenizer.codes)
    truncated = get_tokenizer_class("title")(vocab_size=300, min_frequency=1, max_tokens=2).fit(catalog)
    assert codes_are_unique(truncated.codes) and truncated.stats["collision_rate_before"] > 0.9
    with pytest.raises(ValueError, match="`pretrained_tokenizer` '/no/such/tokenizer' could not be loaded"):
        get_tokenizer_class("title")(pretrained_tokenizer="/no/such/tokenizer").fit(catalog)


# ---------------------------------------------------------------------------------------- hybrid


def test_hybrid_concatenates_components(synthetic):
    catalog, sequences = synthetic
    hybrid = get_tokenizer_class("hybrid")(**SMALL["hybrid"]).fit(catalog, sequences=sequences)
    semantic = get_tokenizer_class("semantic")().fit(catalog)
    assert np.array_equal(hybrid.codes[:, :2], semantic.codes[:, :2])  # category path prefix
    assert hybrid.stats["components"][0] == {"method": "semantic", "levels": 2}
    with pytest.raises(ValueError, match="variable-length codes"):
        get_tokenizer_class("hybrid")(components=["semantic", "title"]).fit(catalog)
    with pytest.raises(ValueError, match="unknown tokenizer `method` 'nope'"):
        get_tokenizer_class("hybrid")(components=["semantic", "nope"])
    with pytest.raises(ValueError, match=r"`component_configs\[1\]` for 'random'"):
        get_tokenizer_class("hybrid")(components=["semantic", "random"], component_configs=[{}, {"codebook_size": 1}])
    with pytest.raises(ValueError, match="at least 2"):
        get_tokenizer_class("hybrid")(components=["semantic"])


# ---------------------------------------------------------------------------------------- real Beauty


@pytest.mark.parametrize("method", ["sequential", "sequential-shuffled", "random", "semantic", "collaborative"])
def test_scheme_on_beauty(method, beauty):
    catalog, train_sequences = beauty
    start = time.perf_counter()
    tokenizer = get_tokenizer_class(method)().fit(catalog, sequences=train_sequences)
    assert time.perf_counter() - start < 120  # the brief's budget for Beauty
    stats = tokenizer.stats
    assert stats["num_items"] == 12101 and stats["collision_rate_after"] == 0.0
    assert codes_are_unique(tokenizer.codes)
    assert all(0 < u <= 1 for u in stats["utilisation"])
    if method == "collaborative":
        # 12,101 items, 10-way balanced splits, leaves <= 20 -> 3 cluster levels + a leaf index
        assert tokenizer.codebook_sizes[:3] == [10, 10, 10] and tokenizer.codebook_sizes[-1] <= 20
    if method == "semantic":
        assert tokenizer.encode("1")[:4] == tokenizer.encode("2")[:4] or catalog.categories("1") != catalog.categories("2")


def test_title_on_beauty(beauty):
    catalog, _ = beauty
    tokenizer = get_tokenizer_class("title")(vocab_size=1000).fit(catalog)
    assert codes_are_unique(tokenizer.codes) and tokenizer.code_length <= 64 + 3
    duplicates = tokenizer.stats["num_collision_groups_before"]
    assert duplicates >= 12101 - 12067 - 7  # at least the duplicate titles of the catalog README


def test_spectral_item_embeddings_put_co_occurring_items_together():
    from genrec.tokenization.collaborative import spectral_item_embeddings

    items = [f"i{j}" for j in range(12)]
    # two communities that never meet (i0..i5 and i6..i11) and one item nobody consumed (i11 only in catalog)
    sequences = [["i0", "i1", "i2"], ["i2", "i3", "i4"], ["i4", "i5", "i0"], ["i1", "i3", "i5"],
                 ["i6", "i7", "i8"], ["i8", "i9", "i10"], ["i10", "i6", "i7"], ["i7", "i9"]]
    vectors = spectral_item_embeddings(sequences, items, dim=2, window=0)
    assert vectors.shape == (12, 2) and vectors.dtype == np.float32
    assert not vectors[11].any()  # cold item: zeros
    cosine = vectors @ vectors.T
    same = [cosine[a, b] for a in range(6) for b in range(6)] + [cosine[a, b] for a in range(6, 11) for b in range(6, 11)]
    across = [cosine[a, b] for a in range(6) for b in range(6, 11)]
    assert min(same) > max(across) + 0.5
    with pytest.raises(ValueError, match="dim"):
        spectral_item_embeddings(sequences, items, dim=12)
    with pytest.raises(ValueError, match="not in the catalog"):
        spectral_item_embeddings([["zz"]], items, dim=2)
