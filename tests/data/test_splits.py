"""Leave-one-out split, sliding windows, and leak guards (each guard is shown to catch a leak)."""

import numpy as np
import pytest

from genrec.data import (
    InteractionData,
    ItemCatalog,
    consecutive_id_rate,
    leave_one_out,
    sliding_windows,
)


def _data(sequences, name="toy"):
    items = list(dict.fromkeys(i for s in sequences.values() for i in s))
    return InteractionData(name=name, sequences=sequences, catalog=ItemCatalog(items, name=name))


def test_leave_one_out_exact_contents():
    data = _data({"u1": ["a", "b", "c", "d", "e"], "u2": ["c", "a", "c"]})
    split = leave_one_out(data)
    assert split.train_sequences == {"u1": ["a", "b", "c"], "u2": ["c"]}
    assert split.valid.to_dict() == {
        "user_id": ["u1", "u2"], "history": [["a", "b", "c"], ["c"]], "target": ["d", "a"]}
    assert split.test.to_dict() == {
        "user_id": ["u1", "u2"], "history": [["a", "b", "c", "d"], ["c", "a"]], "target": ["e", "c"]}
    windows = split.train_windows(max_history=50)
    assert windows.to_dict() == {
        "user_id": ["u1", "u1"], "history": [["a"], ["a", "b"]], "target": ["b", "c"]}
    assert windows.column_names == ["user_id", "history", "target"]
    short = split.train_windows(max_history=1)
    assert short["history"] == [["a"], ["b"]]
    with_valid = split.train_windows(max_history=2, include_validation=True)
    assert with_valid.to_dict() == {
        "user_id": ["u1", "u1", "u1", "u2"], "history": [["a"], ["a", "b"], ["b", "c"], ["c"]],
        "target": ["b", "c", "d", "a"]}
    assert split.train_windows(max_history=3, min_history=2)["target"] == ["c"]
    with pytest.raises(ValueError, match="`max_history`"):
        split.train_windows(max_history=0)


def test_short_users_raise_or_are_dropped():
    data = _data({"u1": ["a", "b", "c"], "shorty": ["a", "b"], "u3": ["c"]})
    with pytest.raises(ValueError, match=r"user 'shorty' has 2 interaction\(s\); leave-one-out needs >= 3.*2 such users"):
        leave_one_out(data)
    split = leave_one_out(data, drop_short_users=True)
    assert split.test["user_id"] == ["u1"] and split.train_sequences == {"u1": ["a"]}
    assert len(split.data.catalog) == 3  # items stay in the catalog


def _check_no_leak(data, windows, valid, test, max_history):
    """Assert the split is leak-free by reconstructing every sample's position in its sequence.

    Fails if: a training window's target is the validation/test item (position >= n-2), a history
    contains anything at/after its target position, histories are not the contiguous recent past,
    or valid/test histories differ from the sequence minus its last 2 / last 1 items.
    """
    sequences = data.sequences
    windows = windows.to_dict()  # datasets 5 columns are lazy; per-row access is slow
    users = np.asarray(windows["user_id"], dtype=object)
    histories, targets = windows["history"], windows["target"]
    change = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[change, len(users)])
    for start, count in zip(change, counts):
        seq = sequences[users[start]]
        assert count == max(len(seq) - 3, 0), "a user has windows beyond the training prefix"
        for offset in range(count):
            position = 1 + offset  # window `offset` predicts seq[position]
            assert position <= len(seq) - 3, "window target is the validation or test item"
            assert targets[start + offset] == seq[position]
            assert histories[start + offset] == seq[max(0, position - max_history):position]
    test, valid = test.to_dict(), valid.to_dict()  # column lists: row access on a Dataset is slow
    assert test["user_id"] == valid["user_id"] == list(sequences)
    for user, test_history, test_target, valid_history, valid_target in zip(
        test["user_id"], test["history"], test["target"], valid["history"], valid["target"]
    ):
        seq = sequences[user]
        assert test_history == seq[:-1] and test_target == seq[-1]
        assert valid_history == seq[:-2] and valid_target == seq[-2]


def test_leak_guards_beauty(beauty, beauty_split):
    windows = beauty_split.train_windows(max_history=20)
    assert len(windows) == beauty.num_interactions - 3 * beauty.num_users == 131413
    _check_no_leak(beauty, windows, beauty_split.valid, beauty_split.test, max_history=20)
    # Beauty has no repeated items, so also check by value: neither held-out item of a user ever
    # appears in that user's training windows (as target or in a history).
    held_out = {u: {s[-1], s[-2]} for u, s in beauty.sequences.items()}
    columns = windows.to_dict()
    for user, history, target in zip(columns["user_id"], columns["history"], columns["target"]):
        assert target not in held_out[user] and not held_out[user].intersection(history)
    # The training prefixes (what tokenizers are fitted on) never include a held-out item.
    for user, prefix in beauty_split.train_sequences.items():
        assert not held_out[user].intersection(prefix)


def test_leak_guard_catches_leaks():
    rng = np.random.default_rng(0)
    sequences = {f"u{u}": [str(i) for i in rng.integers(0, 30, size=rng.integers(3, 12))] for u in range(40)}
    data = _data(sequences)
    split = leave_one_out(data)
    windows = split.train_windows(max_history=4)
    _check_no_leak(data, windows, split.valid, split.test, max_history=4)  # repeats allowed
    # Leak 1: windows built over the full sequences (validation and test targets become targets).
    rows, offsets = data.sequence_rows()
    leaky = sliding_windows(np.array(data.user_ids, dtype=object), np.array(data.item_ids, dtype=object),
                            rows, offsets, max_history=4)
    with pytest.raises(AssertionError):
        _check_no_leak(data, leaky, split.valid, split.test, max_history=4)
    # Leak 2: a history that sees the target (shifted by one).
    shifted = windows.map(lambda s: {"history": s["history"][1:] + [s["target"]]})
    with pytest.raises(AssertionError):
        _check_no_leak(data, shifted, split.valid, split.test, max_history=4)
    # Leak 3: test history including the test target.
    bad_test = split.test.map(lambda s: {"history": s["history"] + [s["target"]]})
    with pytest.raises(AssertionError):
        _check_no_leak(data, windows, split.valid, bad_test, max_history=4)


def test_consecutive_id_rate():
    assert consecutive_id_rate([["1", "2"], ["5", "3"], ["7"]], ["3", "4", "9"]) == pytest.approx(1 / 3)
    assert consecutive_id_rate([["a"]], ["b"]) is None  # non-integer ids
    assert consecutive_id_rate([], []) is None
    with pytest.raises(ValueError, match="same length"):
        consecutive_id_rate([["1"]], [])


def test_consecutive_id_leak_on_beauty_raw_ids(beauty, beauty_split):
    """Beauty's raw ids leak order (the P5 id leak); a random relabelling removes it."""
    test = beauty_split.test.to_dict()
    rate = consecutive_id_rate(test["history"], test["target"])
    assert rate == pytest.approx(beauty.stats()["consecutive_id_rate"])
    chance = 1 / beauty.num_items
    assert rate > 100 * chance  # measured ~0.044 vs chance ~8e-5
    perm = np.random.default_rng(0).permutation(beauty.num_items) + 1
    relabel = {str(i + 1): str(p) for i, p in enumerate(perm)}
    shuffled = consecutive_id_rate([[relabel[i] for i in h] for h in test["history"]],
                                   [relabel[t] for t in test["target"]])
    assert shuffled < 10 * chance


def test_ragged_ranges_matches_naive():
    from genrec.data.splits import _ragged_ranges

    rng = np.random.default_rng(3)
    for _ in range(50):
        starts = rng.integers(0, 20, size=rng.integers(0, 8))
        stops = starts + rng.integers(0, 5, size=starts.size)  # zero-length segments included
        naive = [i for a, b in zip(starts, stops) for i in range(a, b)]
        assert _ragged_ranges(starts, stops).tolist() == naive
