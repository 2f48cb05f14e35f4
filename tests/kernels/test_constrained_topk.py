"""constrained_topk: Triton kernel (TRITON_INTERPRET=1 on CPU) == torch reference == brute force."""

import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrec.decoding import Catalog
from genrec.kernels import constrained_topk, constrained_topk_reference, constrained_topk_triton, triton_available

needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


def _catalog(num_items, levels, codes, seed):
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, codes, (num_items, levels), generator=generator) + 3 + codes * torch.arange(levels)
    return Catalog.from_codes(rows.unique(dim=0))


def _step_inputs(catalog, depth, batch, beams, seed, dtype=torch.float32, dead=True, bans=0, lse=False):
    generator = torch.Generator().manual_seed(seed)
    # beams of a user sit on distinct nodes (as in beam search); beams beyond the level's nodes are dead
    nodes = torch.stack([torch.randperm(max(catalog.num_nodes[depth], beams), generator=generator)[:beams]
                         for _ in range(batch)])
    scores = torch.randn(batch, beams, generator=generator)
    scores = scores.masked_fill(nodes >= catalog.num_nodes[depth], float("-inf"))
    nodes = nodes.clamp(max=catalog.num_nodes[depth] - 1)
    if dead and beams > 1:
        scores[0, -1] = float("-inf")  # a dead beam yields nothing
    width = catalog.token_hi[depth] - catalog.token_lo[depth]
    logits = (3 * torch.randn(batch * beams, width, generator=generator)).to(dtype)
    kwargs = dict(token_lo=catalog.token_lo[depth], max_children=catalog.max_children[depth],
                  num_beams=beams, num_finished=min(beams, 4))
    if lse:
        kwargs["row_lse"] = torch.randn(batch * beams, generator=generator) + 5
    if bans:
        # the decoder's ban format (Catalog.banned_leaves): sorted DISTINCT leaf positions, padded with num_leaves
        pad = catalog.num_leaves
        leaves = torch.stack([
            torch.cat([torch.randperm(pad, generator=generator)[: min(bans, pad)], torch.full((max(0, bans - pad),), pad)])
            for _ in range(batch)
        ])
        drop = torch.rand(batch, bans, generator=generator) < 0.25  # some users have fewer bans (padding)
        leaves = leaves.masked_fill(drop, pad)
        kwargs.update(banned_leaves=leaves.sort(1).values.int(), child_leaf_lo=catalog.leaf_lo[depth + 1],
                      child_leaf_hi=catalog.leaf_hi[depth + 1])
    args = (logits, scores, nodes, catalog.child_ptr[depth], catalog.child_token[depth], catalog.is_leaf[depth + 1])
    return args, kwargs


def _assert_same(expected, got, atol):
    torch.testing.assert_close(got.active_scores, expected.active_scores, atol=atol, rtol=atol)
    torch.testing.assert_close(got.finished_scores, expected.finished_scores, atol=atol, rtol=atol)
    assert torch.equal(got.active_parent, expected.active_parent)
    assert torch.equal(got.active_child, expected.active_child)
    assert torch.equal(got.finished_child, expected.finished_child)


@needs_triton
@pytest.mark.parametrize(
    ("num_items", "levels", "codes", "depth", "batch", "beams", "bans", "lse", "dtype"),
    [
        (40, 3, 5, 0, 1, 1, 0, False, torch.float32),     # one beam, root
        (40, 3, 5, 1, 3, 7, 2, False, torch.float32),     # odd beams, bans
        (40, 3, 5, 2, 2, 7, 0, True, torch.float32),      # leaves, vocab normalisation
        (200, 2, 130, 0, 2, 1, 3, False, torch.float32),  # 130 children: BLOCK_C 256
        (60, 2, 9, 1, 2, 3, 1, True, torch.bfloat16),     # bf16 logits, fp32 accumulation
    ],
)
def test_triton_kernel_matches_reference(num_items, levels, codes, depth, batch, beams, bans, lse, dtype):
    catalog = _catalog(num_items, levels, codes, seed=num_items + depth)
    args, kwargs = _step_inputs(catalog, depth, batch, beams, seed=7, dtype=dtype, bans=bans, lse=lse)
    expected = constrained_topk_reference(*args, **kwargs)
    got = constrained_topk_triton(*args, **kwargs)
    _assert_same(expected, got, atol=1e-5)


@needs_triton
def test_triton_kernel_edge_cases_one_allowed_token_and_k_larger_than_allowed():
    catalog = Catalog.from_codes(torch.tensor([[3, 5], [4, 6]]))  # every depth-1 node has one child
    args, kwargs = _step_inputs(catalog, 1, batch=2, beams=2, seed=0, dead=False)
    kwargs.update(num_beams=3, num_finished=5)
    expected = constrained_topk_reference(*args, **kwargs)
    got = constrained_topk_triton(*args, **kwargs)
    _assert_same(expected, got, atol=1e-6)
    # one allowed child: log-prob 0 under catalog normalisation, so the beam keeps its score
    assert (got.finished_child[:, 2:] == -1).all() and torch.isinf(got.finished_scores[:, 2:]).all()
    torch.testing.assert_close(got.finished_scores[:, :2].sort(1).values, args[1].sort(1).values)


def test_reference_matches_brute_force_enumeration():
    catalog = _catalog(30, 2, 4, seed=3)
    args, kwargs = _step_inputs(catalog, 0, batch=2, beams=1, seed=1, dead=False)
    out = constrained_topk_reference(*args, **{**kwargs, "num_beams": 3, "num_finished": 0})
    logits, scores = args[0], args[1]
    children = catalog.child_token[0].long() - catalog.token_lo[0]
    for b in range(2):
        log_probs = logits[b, children].log_softmax(0) + scores[b, 0]
        best = log_probs.topk(3)
        torch.testing.assert_close(out.active_scores[b], best.values)
        assert out.active_child[b].tolist() == best.indices.tolist()  # root children are nodes 0..n-1


def test_reference_bans_and_leaf_split_match_enumeration():
    catalog = _catalog(50, 2, 5, seed=4)
    args, kwargs = _step_inputs(catalog, 1, batch=1, beams=3, seed=2, dead=False, bans=4)
    out = constrained_topk_reference(*args, **{**kwargs, "num_finished": 20})
    logits, scores, nodes = args[0], args[1], args[2]
    banned = set(kwargs["banned_leaves"][0].tolist())
    candidates = []
    for k in range(3):
        node = int(nodes[0, k])
        lo, hi = int(catalog.child_ptr[1][node]), int(catalog.child_ptr[1][node + 1])
        cols = catalog.child_token[1][lo:hi].long() - catalog.token_lo[1]
        log_probs = logits[k, cols].log_softmax(0) + scores[0, k]
        for j, child in enumerate(range(lo, hi)):
            if int(catalog.leaf_lo[2][child]) not in banned:
                candidates.append((float(log_probs[j]), child))
    candidates.sort(key=lambda c: -c[0])
    got = [(s, c) for s, c in zip(out.finished_scores[0].tolist(), out.finished_child[0].tolist()) if c >= 0]
    assert [c for _, c in got] == [c for _, c in candidates[:20]]
    assert (out.active_child == -1).all()  # depth 2 is the leaf level


def test_dispatcher_uses_reference_on_cpu_and_validates():
    catalog = _catalog(20, 2, 3, seed=5)
    args, kwargs = _step_inputs(catalog, 0, batch=2, beams=1, seed=0)
    _assert_same(constrained_topk_reference(*args, **kwargs), constrained_topk(*args, **kwargs), atol=0)
    with pytest.raises(ValueError, match="logits"):
        constrained_topk_reference(args[0][:1], *args[1:], **kwargs)
    with pytest.raises(ValueError, match="beam_nodes"):
        constrained_topk_reference(args[0], args[1], args[2][:, :0], *args[3:], **kwargs)
    with pytest.raises(ValueError, match="max_children"):
        constrained_topk_reference(*args, **{**kwargs, "max_children": 0})


@pytest.mark.gpu  # skipped without CUDA by tests/conftest.py at set-up time (no CUDA query at collection)
def test_triton_kernel_matches_reference_on_gpu_full_size():
    catalog = _catalog(100_000, 4, 256, seed=0).to("cuda")
    for depth, lse, bans in itertools.product(range(4), [False, True], [0, 20]):
        args, kwargs = _step_inputs(catalog, depth, batch=32, beams=20, seed=depth, bans=bans, lse=lse)
        args = tuple(a.cuda() for a in args)
        kwargs = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        _assert_same(constrained_topk_reference(*args, **kwargs), constrained_topk_triton(*args, **kwargs), 1e-5)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), levels=st.integers(1, 3), codes=st.integers(1, 6), count=st.integers(1, 30),
       batch=st.integers(1, 3), beams=st.integers(1, 5), use_lse=st.booleans(), num_bans=st.integers(0, 3))
def test_reference_equals_enumeration_on_random_catalogs_and_logits(data, levels, codes, count, batch, beams,
                                                                   use_lse, num_bans):
    rows = data.draw(st.lists(st.lists(st.integers(0, codes - 1), min_size=levels, max_size=levels),
                              min_size=count, max_size=count))
    catalog = Catalog.from_codes(torch.tensor(rows) + 3 + codes * torch.arange(levels))
    depth = data.draw(st.integers(0, levels - 1))
    seed = data.draw(st.integers(0, 2**16))
    args, kwargs = _step_inputs(catalog, depth, batch, beams, seed=seed, bans=num_bans, lse=use_lse)
    out = constrained_topk_reference(*args, **kwargs)
    logits, scores, nodes = args[0].view(batch, beams, -1), args[1], args[2]
    for b in range(batch):
        banned = set(kwargs["banned_leaves"][b].tolist()) if num_bans else set()
        active, finished = [], []
        for k in range(beams):
            if scores[b, k] == float("-inf"):
                continue
            node = int(nodes[b, k])
            lo, hi = int(catalog.child_ptr[depth][node]), int(catalog.child_ptr[depth][node + 1])
            cols = catalog.child_token[depth][lo:hi].long() - catalog.token_lo[depth]
            norm = kwargs["row_lse"].view(batch, beams)[b, k] if use_lse else logits[b, k, cols].logsumexp(0)
            for child, col in zip(range(lo, hi), cols.tolist()):
                leaves = range(int(catalog.leaf_lo[depth + 1][child]), int(catalog.leaf_hi[depth + 1][child]))
                if all(leaf in banned for leaf in leaves):
                    continue
                entry = (float(scores[b, k] + logits[b, k, col] - norm), child)
                (finished if bool(catalog.is_leaf[depth + 1][child]) else active).append(entry)
        for found, got_scores, got_child, k in [
            (active, out.active_scores[b], out.active_child[b], kwargs["num_beams"]),
            (finished, out.finished_scores[b], out.finished_child[b], kwargs["num_finished"]),
        ]:
            found.sort(key=lambda e: -e[0])
            n = min(k, len(found))
            torch.testing.assert_close(got_scores[:n], torch.tensor([e[0] for e in found[:n]]), atol=1e-5, rtol=1e-5)
            # each returned child is a real candidate carrying its own score; with the scores equal to the top-n
            # sorted scores above, this pins the chosen children up to exact ties (where any tied child is right)
            by_child = {child: score for score, child in found}
            for score, child in zip(got_scores[:n].tolist(), got_child[:n].tolist()):
                assert child in by_child, f"child {child} is not an allowed candidate"
                assert abs(by_child[child] - score) <= 1e-5 + 1e-5 * abs(score), (child, score, by_child[child])
            assert (got_child[n:] == -1).all() and torch.isinf(got_scores[n:]).all()
            assert len(set(got_child[:n].tolist())) == n  # no candidate twice
