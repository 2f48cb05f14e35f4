"""genrec.alignment.preference: candidates from constrained decoding, ground-truth and reward pairs, text rendering."""

import math

import pytest
import torch

from genrec.alignment.preference import (
    build_preference_dataset,
    generate_candidates,
    render_preference_text,
)

STATS_KEYS = {"num_users", "num_pairs", "num_skipped", "reward_mean", "reward_chosen_mean", "reward_rejected_mean",
              "generate_seconds", "reward_seconds"}
COLUMNS = {"user_id", "history", "chosen_items", "rejected_items", "chosen_reward", "rejected_reward", "prompt",
           "chosen", "rejected"}


@pytest.fixture(scope="module")
def examples(toy_split):
    """The first 8 validation rows: user_id, history (the training prefix), target (the validation item)."""
    return toy_split.valid.select(range(8))


def _catalog(split):
    return set(split.data.item_ids)


@pytest.mark.parametrize("model_name", ["tiny_p5", "tiny_onerec", "tiny_recgpt"])
def test_candidates_are_distinct_catalog_items_from_recommend(model_name, request, examples, toy_split):
    model = request.getfixturevalue(model_name)
    histories = list(examples["history"])
    candidates = generate_candidates(model, histories, num_candidates=4, session_length=1, batch_size=3)
    assert len(candidates) == len(histories)
    for user_candidates in candidates:
        assert 1 <= len(user_candidates) <= 4 and all(len(session) == 1 for session in user_candidates)
        assert len({session[0] for session in user_candidates}) == len(user_candidates)
        assert {session[0] for session in user_candidates} <= _catalog(toy_split)
    # exactly the model's own top-4, in its order (batching does not change them)
    expected = [[item for item, _ in ranked] for ranked in model.recommend(histories, k=4)]
    assert [[s[0] for s in user] for user in candidates] == expected


def test_recgpt_candidates_fill_n_and_skip_history(tiny_recgpt, examples):
    histories = list(examples["history"])
    candidates = generate_candidates(tiny_recgpt, histories, num_candidates=6)
    for history, user_candidates in zip(histories, candidates):
        assert len(user_candidates) == 6  # RecGPT scores the whole catalog
        assert not {s[0] for s in user_candidates} & set(history)  # RecGPT excludes the history itself


def test_onerec_sessions(tiny_onerec, examples, toy_split):
    histories = list(examples["history"])[:3]
    candidates = generate_candidates(tiny_onerec, histories, num_candidates=3, session_length=3, batch_size=2)
    expected = tiny_onerec.generate_candidate_sessions(histories, num_sessions=3, session_length=3)
    assert candidates == [[[item for item, _ in session] for session in user] for user in expected]
    for user_candidates in candidates:
        assert len(user_candidates) == 3  # distinct first items
        assert len({session[0] for session in user_candidates}) == 3
        for session in user_candidates:
            assert len(session) == 3 and len(set(session)) == 3 and set(session) <= _catalog(toy_split)


def test_one_item_models_reject_sessions(tiny_p5, tiny_recgpt):
    for model in (tiny_p5, tiny_recgpt):
        with pytest.raises(ValueError, match="session_length"):
            generate_candidates(model, [["1", "2"]], num_candidates=2, session_length=2)
    with pytest.raises(ValueError, match="num_candidates"):
        generate_candidates(tiny_p5, [["1"]], num_candidates=0)
    with pytest.raises(ValueError, match="histories"):
        generate_candidates(tiny_p5, [[]], num_candidates=2)
    with pytest.raises(ValueError, match="'nope'"):
        generate_candidates(tiny_p5, [["nope"]], num_candidates=2)


def test_unsupported_model_is_named():
    from genrec.models.sasrec import SASRecConfig, SASRecModel

    model = SASRecModel(SASRecConfig(num_items=3), item_ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="SASRecModel"):
        generate_candidates(model, [["a"]], num_candidates=2)


def test_ground_truth_pairs(tiny_p5, examples, toy_split):
    dataset, stats = build_preference_dataset(tiny_p5, examples, strategy="ground_truth", num_candidates=4,
                                              batch_size=3)
    assert set(dataset.column_names) == COLUMNS and STATS_KEYS <= set(stats)
    assert stats["num_users"] == 8 and stats["num_pairs"] + stats["num_skipped"] == 8 and stats["num_pairs"] >= 7
    candidates = generate_candidates(tiny_p5, list(examples["history"]), num_candidates=4)
    by_user = {row["user_id"]: row for row in examples}
    for row in dataset:
        source = by_user[row["user_id"]]
        assert row["chosen_items"] == [source["target"]] and row["history"] == source["history"]
        assert row["rejected_items"] != row["chosen_items"] and set(row["rejected_items"]) <= _catalog(toy_split)
        # the rejected item is the model's best candidate that is not the target
        user_candidates = candidates[list(examples["user_id"]).index(row["user_id"])]
        assert row["rejected_items"] == next(s for s in user_candidates if s != row["chosen_items"])
        assert math.isnan(row["chosen_reward"]) and math.isnan(row["rejected_reward"])
        assert (row["prompt"], row["chosen"]) == render_preference_text(tiny_p5, row["history"], row["chosen_items"])
        assert row["rejected"] == render_preference_text(tiny_p5, row["history"], row["rejected_items"])[1]
        assert row["chosen"] != row["rejected"]
    assert math.isnan(stats["reward_mean"]) and math.isnan(stats["reward_chosen_mean"])


def test_ground_truth_with_reward_model_fills_rewards(tiny_recgpt, toy_reward, examples):
    reward_model, _ = toy_reward
    dataset, stats = build_preference_dataset(tiny_recgpt, list(examples), strategy="ground_truth",
                                              reward_model=reward_model, num_candidates=3)
    assert stats["num_pairs"] == 8
    for row in dataset:
        expected = reward_model.session_reward([row["history"]] * 2, [row["chosen_items"], row["rejected_items"]])
        assert [row["chosen_reward"], row["rejected_reward"]] == pytest.approx(expected, rel=1e-4)  # other batch
    # the trained reward model prefers the true next item to the untrained RecGPT's guesses
    assert stats["reward_chosen_mean"] > stats["reward_rejected_mean"]


@pytest.mark.parametrize(("model_name", "session_length"), [("tiny_recgpt", 1), ("tiny_p5", 1), ("tiny_onerec", 3)])
def test_reward_pairs_are_argmax_and_argmin(model_name, session_length, request, toy_reward, examples, toy_split):
    model = request.getfixturevalue(model_name)
    reward_model, _ = toy_reward
    dataset, stats = build_preference_dataset(model, examples, strategy="reward", reward_model=reward_model,
                                              num_candidates=5, session_length=session_length, batch_size=4)
    assert STATS_KEYS <= set(stats) and stats["num_pairs"] + stats["num_skipped"] == 8 and stats["num_pairs"] >= 6
    histories = list(examples["history"])
    candidates = generate_candidates(model, histories, num_candidates=5, session_length=session_length)
    all_rewards = []
    rows = {row["user_id"]: row for row in dataset}
    for user, history, user_candidates in zip(examples["user_id"], histories, candidates):
        rewards = reward_model.session_reward([history] * len(user_candidates), user_candidates)
        all_rewards.extend(rewards)
        if user not in rows:
            continue
        row = rows[user]
        # the argmax / argmin session; sessions within float noise of it (scored here in other batches) tie
        best = [c for c, r in zip(user_candidates, rewards) if r == pytest.approx(max(rewards), rel=1e-5, abs=1e-12)]
        worst = [c for c, r in zip(user_candidates, rewards) if r == pytest.approx(min(rewards), rel=1e-5, abs=1e-12)]
        assert row["chosen_items"] in best and row["rejected_items"] in worst
        assert row["chosen_reward"] == pytest.approx(max(rewards), rel=1e-4)
        assert row["rejected_reward"] == pytest.approx(min(rewards), rel=1e-4)
        assert row["chosen_reward"] > row["rejected_reward"] and row["chosen_items"] != row["rejected_items"]
        assert len(row["chosen_items"]) == session_length and set(row["chosen_items"]) <= _catalog(toy_split)
    assert stats["reward_mean"] == pytest.approx(sum(all_rewards) / len(all_rewards), rel=1e-4)
    assert stats["reward_chosen_mean"] > stats["reward_mean"] > stats["reward_rejected_mean"]


class _ConstantReward:
    """A reward model under which every session ties."""

    def session_reward(self, histories, sessions, batch_size=256):
        return [0.5] * len(sessions)


def test_tied_rewards_are_skipped(tiny_recgpt, examples):
    dataset, stats = build_preference_dataset(tiny_recgpt, examples, strategy="reward", reward_model=_ConstantReward(),
                                              num_candidates=3)
    assert len(dataset) == 0 and set(dataset.column_names) == COLUMNS
    assert stats["num_pairs"] == 0 and stats["num_skipped"] == 8 and stats["reward_mean"] == 0.5


def test_bad_arguments(tiny_p5, examples):
    with pytest.raises(ValueError, match="strategy"):
        build_preference_dataset(tiny_p5, examples, strategy="best")
    with pytest.raises(ValueError, match="reward_model"):
        build_preference_dataset(tiny_p5, examples, strategy="reward")
    with pytest.raises(ValueError, match="session_length"):
        build_preference_dataset(tiny_p5, examples, strategy="ground_truth", session_length=2)
    with pytest.raises(ValueError, match="'zzz'"):
        build_preference_dataset(tiny_p5, [{"user_id": "u", "history": ["1"], "target": "zzz"}])
    with pytest.raises(ValueError, match="target"):
        build_preference_dataset(tiny_p5, examples.remove_columns("target"))


def test_render_t5_text_round_trips_to_the_model_tokens(tiny_p5, tiny_onerec):
    history, items = ["3", "4", "5"], ["6", "9"]
    for model in (tiny_p5, tiny_onerec):
        rows = [model.item_index[i] for i in history]
        prompt, completion = render_preference_text(model, history, items)
        encoder_ids = model.encode_history(rows)
        assert model.tokenizer(prompt, add_special_tokens=False).input_ids == encoder_ids[:-1]  # all but </s>
        target_ids = [t for i in items for t in model.item_tokens(model.item_index[i])]
        assert model.tokenizer(completion, add_special_tokens=False).input_ids == target_ids
    assert render_preference_text(tiny_p5, history, items)[0].startswith("given the following purchase history")


def test_render_recgpt_and_bigrec(tiny_recgpt, tiny_bigrec):
    prompt, completion = render_preference_text(tiny_recgpt, [str(i) for i in range(1, 9)], ["12"])
    # item "12" is row 11: codes (11 mod 5, 11 div 5) = (1, 2); only the last 6 history items are read
    assert completion == "<a_1><b_2>" and len(prompt.split()) == 6 and prompt.split()[-1] == "<a_2><b_1>"
    from genrec.models.bigrec.prompts import format_response

    prompt, completion = render_preference_text(tiny_bigrec, ["1", "2"], ["3"])
    assert prompt == tiny_bigrec.prompts([["1", "2"]])[0]
    assert completion == format_response(tiny_bigrec.item_titles[2]) == '"Green Lipstick"'
    with pytest.raises(ValueError, match="items"):
        render_preference_text(tiny_bigrec, ["1"], [])


def test_bigrec_candidates_use_title_constrained_decoding(tiny_bigrec, toy_split):
    histories = [["1", "2"], ["7"]]
    with torch.no_grad():
        candidates = generate_candidates(tiny_bigrec, histories, num_candidates=3, batch_size=2)
    expected = tiny_bigrec.recommend(histories, k=3, method="constrained")
    assert [[s[0] for s in user] for user in candidates] == [[i for i, _ in user] for user in expected]
    for history, user_candidates in zip(histories, candidates):
        assert len(user_candidates) == 3 and {s[0] for s in user_candidates} <= _catalog(toy_split) - set(history)
