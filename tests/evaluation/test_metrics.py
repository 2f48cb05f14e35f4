"""Metrics against hand-computed cases, plus a parity check between the two entry points."""

import math

import pytest
import torch

from genrec.evaluation import (
    MetricAccumulator,
    evaluate_rankings,
    evaluate_scores,
    history_mask,
    metrics_from_ranks,
    summarize,
    target_ranks,
)


def test_scores_hand_computed():
    scores = torch.tensor([
        [0.1, 0.9, 0.5, 0.3],  # target 2 -> rank 1
        [0.8, 0.1, 0.2, 0.3],  # target 0 -> rank 0
        [0.4, 0.3, 0.2, 0.1],  # target 3 -> rank 3
    ])
    targets = torch.tensor([2, 0, 3])
    assert target_ranks(scores, targets).tolist() == [1.0, 0.0, 3.0]
    out = evaluate_scores(scores, targets, ks=(1, 2, 4))
    assert out["recall@1"] == pytest.approx(1 / 3)
    assert out["recall@2"] == pytest.approx(2 / 3) and out["hr@2"] == out["recall@2"]
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert out["mrr@2"] == pytest.approx((1 / 2 + 1) / 3)
    assert out["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(5)) / 3)
    assert out["mrr@4"] == pytest.approx((1 / 2 + 1 + 1 / 4) / 3)
    per_sample = evaluate_scores(scores, targets, ks=(2,), reduce=False)
    assert per_sample["recall@2"].tolist() == [1.0, 1.0, 0.0]


def test_ties_are_pessimistic():
    # A constant model must not look perfect: every tied item ranks above the target.
    out = evaluate_scores(torch.zeros(2, 50), torch.tensor([0, 49]), ks=(1, 10))
    assert out["recall@10"] == 0.0 and out["mrr@10"] == 0.0
    scores = torch.tensor([[0.5, 0.5, 0.2]])
    assert target_ranks(scores, torch.tensor([0])).tolist() == [1.0]
    assert target_ranks(scores, torch.tensor([1])).tolist() == [1.0]


def test_exclusion_mask():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1]])
    targets = torch.tensor([2, 0])
    mask = history_mask([[0, 1], [0]], num_items=4)
    assert mask.tolist() == [[True, True, False, False], [True, False, False, False]]
    assert target_ranks(scores, targets).tolist() == [2.0, 0.0]
    ranks = target_ranks(scores, targets, exclude=mask)
    assert ranks[0] == 0.0  # the two history items no longer outrank the target
    assert math.isinf(ranks[1])  # an excluded target is a miss
    out = evaluate_scores(scores, targets, ks=(1,), exclude=mask)
    assert out["recall@1"] == 0.5
    with pytest.raises(ValueError, match="`exclude` must be a bool tensor"):
        evaluate_scores(scores, targets, exclude=mask.float())
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        history_mask([[5]], num_items=4)


def test_scores_input_errors():
    with pytest.raises(ValueError, match=r"NaN \(first in sample 1\)"):
        evaluate_scores(torch.tensor([[0.1, 0.2], [0.1, float("nan")]]), torch.tensor([0, 0]))
    # +inf and -inf in one row are legal (masked logits) and must not trip the NaN screen.
    infinite = torch.tensor([[float("inf"), float("-inf"), 0.0]])
    assert target_ranks(infinite, torch.tensor([2])).tolist() == [1.0]
    with pytest.raises(ValueError, match=r"`targets` must have shape \(1,\)"):
        evaluate_scores(torch.zeros(1, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"rows must be in \[0, 3\)"):
        evaluate_scores(torch.zeros(1, 3), torch.tensor([3]))
    with pytest.raises(ValueError, match="`ks`"):
        evaluate_scores(torch.zeros(1, 3), torch.tensor([0]), ks=(0, 5))
    with pytest.raises(ValueError, match="2-D"):
        evaluate_scores(torch.zeros(3), torch.tensor([0]))


def test_rankings_invalid_and_duplicates():
    ranked = torch.tensor([
        [5, -1, 2, 2],   # target 2 at rank 2; the second 2 is a duplicate; one invalid
        [-1, -1, -1, -1],  # all invalid
        [1, 1, 3, 0],    # target 3 at rank 2 (the repeated 1 still takes its slot)
    ])
    targets = torch.tensor([2, 0, 3])
    out = evaluate_rankings(ranked, targets, ks=(1, 3, 4), num_items=6)
    assert out["invalid_rate"] == pytest.approx(5 / 12)
    assert out["duplicate_rate"] == pytest.approx(2 / 12)
    assert out["recall@1"] == 0.0
    assert out["recall@3"] == pytest.approx(2 / 3)
    assert out["ndcg@3"] == pytest.approx(2 / math.log2(4) / 3)
    assert out["mrr@4"] == pytest.approx(2 / 3 / 3)
    # A duplicate of the target never hits, even if the first copy was outside the cut-off.
    dup_target = evaluate_rankings(torch.tensor([[4, 2, 2]]), torch.tensor([2]), ks=(1, 3), reduce=False)
    assert dup_target["mrr@3"].tolist() == [0.5]
    assert dup_target["duplicate_rate"].tolist() == [pytest.approx(1 / 3)]


def test_rankings_collided_group_is_one_guess():
    # Items 0, 2, 3 share one code sequence (group 7); item 1 is alone (group 4); item 4 group 9.
    item_group = torch.tensor([7, 4, 7, 7, 9])
    ranked = torch.tensor([[1, 2, 0, 4]])  # rank 1 = the group {0, 2, 3}; entry 0 repeats the group
    target = torch.tensor([3])
    uniform = evaluate_rankings(ranked, target, ks=(1, 2, 4), item_group=item_group, reduce=False)
    assert uniform["recall@1"].tolist() == [0.0]
    assert uniform["recall@2"].tolist() == [pytest.approx(1 / 3)]
    assert uniform["ndcg@2"].tolist() == [pytest.approx(1 / 3 / math.log2(3))]
    assert uniform["mrr@4"].tolist() == [pytest.approx(1 / 3 / 2)]
    assert uniform["duplicate_rate"].tolist() == [0.25]  # the second entry of group 7
    anywhere = evaluate_rankings(ranked, target, ks=(2,), item_group=item_group, collision_credit="any")
    assert anywhere["recall@2"] == 1.0
    exact = evaluate_rankings(ranked, target, ks=(4,), item_group=item_group, collision_credit="exact")
    assert exact["recall@4"] == 0.0  # item 3 itself never appears; item 0 is a duplicate group guess
    exact_hit = evaluate_rankings(torch.tensor([[1, 3]]), target, ks=(2,), item_group=item_group,
                                  collision_credit="exact")
    assert exact_hit["recall@2"] == 1.0 and exact_hit["mrr@2"] == 0.5
    # Without groups the same list finds nothing (item 3 is absent).
    assert evaluate_rankings(ranked, target, ks=(4,))["recall@4"] == 0.0


def test_rankings_errors():
    with pytest.raises(ValueError, match="`ks` contains 20 but `ranked` has only 10"):
        evaluate_rankings(torch.zeros(1, 10, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"rows must be < num_items \(5\)"):
        evaluate_rankings(torch.tensor([[7]]), torch.tensor([0]), ks=(1,), num_items=5)
    with pytest.raises(ValueError, match="or -1"):
        evaluate_rankings(torch.tensor([[-2]]), torch.tensor([0]), ks=(1,))
    with pytest.raises(ValueError, match="`collision_credit`"):
        evaluate_rankings(torch.tensor([[0]]), torch.tensor([0]), ks=(1,), collision_credit="max")
    with pytest.raises(ValueError, match="integer catalog rows"):
        evaluate_rankings(torch.tensor([[0.0]]), torch.tensor([0]), ks=(1,))


def test_rankings_match_scores_on_top_k():
    # With distinct scores, ranking the top-K of a score matrix must give the same metrics.
    scores = torch.randn(64, 300)
    targets = torch.randint(0, 300, (64,))
    ks = (1, 5, 10, 20)
    top = scores.topk(20, dim=1).indices
    from_scores = evaluate_scores(scores, targets, ks)
    from_rankings = evaluate_rankings(top, targets, ks, num_items=300)
    for key, value in from_scores.items():
        assert from_rankings[key] == pytest.approx(value), key
    assert from_rankings["invalid_rate"] == 0.0 and from_rankings["duplicate_rate"] == 0.0


def test_summarize_and_accumulator():
    scores = torch.randn(10, 30)
    targets = torch.randint(0, 30, (10,))
    full = evaluate_scores(scores, targets, ks=(5, 10))
    accumulator = MetricAccumulator()
    for start in (0, 3, 7):  # uneven batches
        stop = {0: 3, 3: 7, 7: 10}[start]
        accumulator.update(evaluate_scores(scores[start:stop], targets[start:stop], ks=(5, 10), reduce=False))
    flat = accumulator.compute(prefix="test")
    assert set(flat) == {f"test/{k}" for k in full}
    for key, value in full.items():
        assert flat[f"test/{key}"] == pytest.approx(value)
    per_sample = evaluate_scores(scores, targets, ks=(10,), reduce=False)
    assert summarize(per_sample, prefix="valid/")["valid/ndcg@10"] == pytest.approx(full["ndcg@10"])
    assert summarize({"recall@1": 0.25})["recall@1"] == 0.25
    assert metrics_from_ranks(torch.tensor([0.0, math.inf]), ks=(1,))["recall@1"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="before any update"):
        MetricAccumulator().compute()


def _reference_rankings(ranked, target, group, credit, ks):
    """Plain-Python statement of the rules in genrec.evaluation.metrics (one sample)."""
    sizes = {}
    for g in group:
        sizes[g] = sizes.get(g, 0) + 1
    seen, found = set(), None
    invalid = duplicates = 0
    for position, entry in enumerate(ranked):
        if entry < 0:
            invalid += 1
            continue
        if group[entry] in seen:
            duplicates += 1
            continue
        seen.add(group[entry])
        hit = entry == target if credit == "exact" else group[entry] == group[target]
        if hit and found is None:
            found = (position, 1.0 / sizes[group[target]] if credit == "uniform" else 1.0)
    out = {"invalid_rate": invalid / len(ranked), "duplicate_rate": duplicates / len(ranked)}
    for k in ks:
        hit = found is not None and found[0] < k
        out[f"recall@{k}"] = found[1] if hit else 0.0
        out[f"ndcg@{k}"] = found[1] / math.log2(found[0] + 2) if hit else 0.0
        out[f"mrr@{k}"] = found[1] / (found[0] + 1) if hit else 0.0
    return out


@pytest.mark.parametrize("credit", ["uniform", "exact", "any"])
def test_rankings_match_python_reference(credit):
    generator = torch.Generator().manual_seed(1)
    ks = (1, 3, 6)
    for trial in range(30):
        num_items = int(torch.randint(2, 12, (1,), generator=generator))
        num_groups = int(torch.randint(1, num_items + 1, (1,), generator=generator))
        group = torch.randint(0, num_groups, (num_items,), generator=generator)
        ranked = torch.randint(-1, num_items, (5, 6), generator=generator)  # repeats and -1 happen
        targets = torch.randint(0, num_items, (5,), generator=generator)
        got = evaluate_rankings(ranked, targets, ks, item_group=group, collision_credit=credit, reduce=False)
        for row in range(5):
            want = _reference_rankings(ranked[row].tolist(), int(targets[row]), group.tolist(), credit, ks)
            for key, value in want.items():
                assert float(got[key][row]) == pytest.approx(value), (trial, row, key)


def test_scores_match_python_reference():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 4, (40, 9), generator=generator).float()  # many ties on purpose
    targets = torch.randint(0, 9, (40,), generator=generator)
    exclude = torch.rand(40, 9, generator=generator) < 0.2
    ranks = target_ranks(scores, targets, exclude)
    for row in range(40):
        t = int(targets[row])
        if exclude[row, t]:
            assert math.isinf(ranks[row])
            continue
        above = sum(1 for j in range(9) if j != t and not exclude[row, j] and scores[row, j] >= scores[row, t])
        assert ranks[row] == above
