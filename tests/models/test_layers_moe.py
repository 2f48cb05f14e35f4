"""Tests for genrec.models.layers: the sparse MoE block against a naive loop-over-experts reference.

The reference below re-implements routing (per token, in Python), capacity dropping (per assignment, in Python)
and the expert computation (one matmul per expert over a boolean-selected token subset) independently of the
block's sorted / grouped_mm dispatch. Outputs, aux losses and gradients (input and every parameter) must match.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from genrec.models.layers import (
    MOE_LOG_KEYS,
    FeedForwardBlock,
    MoeBlockOutput,
    MoeStatistics,
    SparseMoeBlock,
    _grouped_mm_ok,
    count_active_parameters,
    load_balancing_loss,
    router_entropy,
    router_z_loss,
)

HIDDEN, INTERMEDIATE = 16, 8  # multiples of 4 so the float32 grouped_mm path runs


# ------------------------------------------------------------------------------------------------------------
# Naive reference
# ------------------------------------------------------------------------------------------------------------


def naive_route(probs_row, block):
    """Experts (best first) for one token, from its (E,) float32 probabilities, decided in plain Python."""
    values = probs_row.tolist()
    ranked = sorted(range(len(values)), key=lambda e: (-values[e], e))
    if block.top_p is None:
        return ranked[: block.num_experts_per_tok]
    chosen, mass = [], 0.0
    for expert in ranked[: block.max_experts_per_tok]:
        if chosen and mass >= block.top_p:
            break
        chosen.append(expert)
        mass += values[expert]
    return chosen


def naive_moe(block, hidden_states, attention_mask=None):
    """Loop-over-experts reference of SparseMoeBlock.forward; returns (output, aux dict)."""
    tokens = hidden_states.reshape(-1, block.hidden_size)
    num_tokens = tokens.shape[0]
    valid = [True] * num_tokens if attention_mask is None else [bool(v) for v in attention_mask.reshape(-1).tolist()]
    logits = tokens @ block.router.weight.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # routing in fp32 or fp64
    probs = logits.softmax(dim=-1)

    # (rank, token, expert, weight) for every real token
    per_token = {}
    for n in range(num_tokens):
        if not valid[n]:
            continue
        chosen = naive_route(probs[n].detach(), block)
        weights = probs[n, chosen]
        if block.norm_topk_prob:
            weights = weights / weights.sum()
        per_token[n] = list(zip(chosen, weights))
    assignments = []
    for rank in range(block.num_experts):  # rank-major priority
        for n in range(num_tokens):
            if n in per_token and rank < len(per_token[n]):
                expert, weight = per_token[n][rank]
                assignments.append((n, expert, weight))
    counts = [0] * block.num_experts
    for _, expert, _ in assignments:
        counts[expert] += 1
    if block.capacity_factor is None:
        kept = assignments
    else:
        capacity = max(1, math.ceil(block.capacity_factor * len(assignments) / block.num_experts))
        used, kept = [0] * block.num_experts, []
        for item in assignments:
            if used[item[1]] < capacity:
                used[item[1]] += 1
                kept.append(item)
    dropped = len(assignments) - len(kept)

    output = torch.zeros_like(tokens)
    for expert in range(block.num_experts):
        mine = [(n, w) for n, e, w in kept if e == expert]
        if not mine:
            continue
        index = torch.tensor([n for n, _ in mine])
        weight = torch.stack([w for _, w in mine]).to(tokens.dtype)
        projected = tokens[index] @ block.gate_up_proj[expert]
        if block.gated:
            gate, up = projected.split(block.intermediate_size, dim=-1)
            activated = block.act_fn(gate) * up
        else:
            activated = block.act_fn(projected)
        expert_out = (activated @ block.down_proj[expert]) * weight[:, None]
        for row, n in enumerate(index.tolist()):
            output = output.index_add(0, torch.tensor([n]), expert_out[row : row + 1])
    if block.shared_experts is not None:
        mlp = block.shared_experts
        projected = tokens @ mlp.up_proj.weight.t()
        if mlp.gated:
            gate, up = projected.chunk(2, dim=-1)
            projected = mlp.act_fn(gate) * up
        else:
            projected = mlp.act_fn(projected)
        shared = projected @ mlp.down_proj.weight.t()
        if block.shared_expert_gate is not None:
            shared = torch.sigmoid(tokens @ block.shared_expert_gate.weight.t()) * shared
        output = output + shared

    real = torch.tensor(valid)
    total = max(sum(counts), 1)
    fraction = torch.tensor([c / total for c in counts])
    balance = block.num_experts * (fraction * probs[real].mean(0)).sum()
    z_loss = torch.logsumexp(logits[real], dim=-1).pow(2).mean()
    log_p = logits[real].log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    aux = (
        block.router_aux_loss_coef * balance
        + block.router_z_loss_coef * z_loss
        + block.router_entropy_loss_coef * entropy
    )
    stats = {
        "aux_loss": aux,
        "load_balancing_loss": balance,
        "z_loss": z_loss,
        "router_entropy": entropy,
        "expert_counts": torch.tensor(counts),
        "tokens_dropped": dropped,
        "experts_per_token": sum(counts) / max(sum(valid), 1),
    }
    return output.reshape(hidden_states.shape), stats


def make_block(dtype=torch.float32, **kwargs):
    config = dict(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_experts=4, num_experts_per_tok=2)
    config.update(kwargs)
    block = SparseMoeBlock(**config).to(dtype)
    if block.router_z_loss_coef == 0.001:  # make every loss term visible in the gradient check
        block.router_z_loss_coef = 0.01
    return block


def check_against_reference(block, hidden_states, attention_mask=None, atol=2e-5, rtol=1e-4):
    """Compare forward values and gradients (input + all params) of block vs naive_moe."""
    torch.manual_seed(1)
    projection = torch.randn_like(hidden_states)
    results = []
    for fn in (lambda x: block(x, attention_mask), lambda x: naive_moe(block, x, attention_mask)):
        block.zero_grad(set_to_none=True)
        x = hidden_states.clone().requires_grad_(True)
        out = fn(x)
        if isinstance(out, MoeBlockOutput):
            hidden, stats = out.hidden_states, {k: out[k] for k in ("aux_loss", "load_balancing_loss", "z_loss")}
            stats.update(
                expert_counts=out.expert_counts,
                tokens_dropped=int(out.tokens_dropped),
                experts_per_token=float(out.experts_per_token),
                router_entropy=out.router_entropy,
            )
        else:
            hidden, stats = out
        loss = (hidden * projection).sum() + stats["aux_loss"] * 10.0
        loss.backward()
        grads = {"input": x.grad.clone()}
        for name, parameter in block.named_parameters():
            grads[name] = parameter.grad.clone() if parameter.grad is not None else torch.zeros_like(parameter)
        results.append((hidden.detach(), stats, grads))
    (got, got_stats, got_grads), (want, want_stats, want_grads) = results
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    for key in ("aux_loss", "load_balancing_loss", "z_loss", "router_entropy"):
        torch.testing.assert_close(got_stats[key].double(), want_stats[key].detach().double(), atol=atol, rtol=rtol)
    assert torch.equal(got_stats["expert_counts"].cpu(), want_stats["expert_counts"])
    assert got_stats["tokens_dropped"] == want_stats["tokens_dropped"]
    assert got_stats["experts_per_token"] == pytest.approx(want_stats["experts_per_token"], rel=1e-6)
    for name in want_grads:
        torch.testing.assert_close(
            got_grads[name], want_grads[name], atol=atol, rtol=rtol, msg=lambda m, name=name: f"{name}: {m}"
        )
    return got_stats


# ------------------------------------------------------------------------------------------------------------
# Parity with the reference
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tokens", [1, 7, 130])
@pytest.mark.parametrize("top_k", [1, 2])
def test_topk_matches_reference(num_tokens, top_k):
    block = make_block(num_experts_per_tok=top_k)
    check_against_reference(block, torch.randn(1, num_tokens, HIDDEN))


def test_grouped_mm_path_is_the_one_tested():
    block = make_block()
    x = torch.randn(7, HIDDEN)
    assert _grouped_mm_ok(x, block.gate_up_proj) and _grouped_mm_ok(x, block.down_proj)
    forced = make_block(expert_implementation="grouped_mm")
    forced.load_state_dict(block.state_dict())
    torch.testing.assert_close(forced(x[None]).hidden_states, block(x[None]).hidden_states, atol=0, rtol=0)


@pytest.mark.parametrize("top_p", [0.3, 0.6, 0.9, 1.0])
def test_top_p_matches_reference(top_p):
    block = make_block(num_experts=8, top_p=top_p)
    stats = check_against_reference(block, torch.randn(2, 65, HIDDEN))
    assert 1.0 <= stats["experts_per_token"] <= 8.0
    if top_p == 1.0:  # full mass: top-p keeps adding experts until the cumulative sum reaches 1 (or all are in)
        assert stats["experts_per_token"] > 6.0


def test_top_p_cap_and_monotone():
    x = torch.randn(3, 40, HIDDEN)
    capped = make_block(num_experts=8, top_p=0.95, max_experts_per_tok=3)
    check_against_reference(capped, x)
    counts = []
    for p in (0.2, 0.5, 0.8):
        block = make_block(num_experts=8, top_p=p)
        block.load_state_dict(capped.state_dict())
        counts.append(float(block(x).experts_per_token))
    assert counts[0] <= counts[1] <= counts[2] and counts[0] < counts[2]
    assert float(capped(x).experts_per_token) <= 3.0


def test_top_p_with_unnormalised_probs_and_entropy_loss():
    block = make_block(num_experts=8, top_p=0.5, norm_topk_prob=False, router_entropy_loss_coef=0.1)
    check_against_reference(block, torch.randn(2, 9, HIDDEN))


@pytest.mark.parametrize("gate", [False, True])
def test_shared_experts_match_reference(gate):
    block = make_block(num_shared_experts=2, shared_expert_intermediate_size=4, shared_expert_gate=gate)
    assert block.shared_experts.down_proj.in_features == 8
    check_against_reference(block, torch.randn(2, 7, HIDDEN))


@pytest.mark.parametrize("capacity_factor", [0.25, 0.5, 1.0, 1.5])
def test_capacity_factor_matches_reference(capacity_factor):
    block = make_block(capacity_factor=capacity_factor)
    stats = check_against_reference(block, torch.randn(2, 33, HIDDEN))
    if capacity_factor < 1.0:
        assert stats["tokens_dropped"] > 0


def test_capacity_with_top_p_and_mask():
    block = make_block(num_experts=8, top_p=0.7, capacity_factor=0.8)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, :9] = 0
    check_against_reference(block, torch.randn(3, 11, HIDDEN), mask)


def test_capacity_drops_later_tokens_deterministically():
    # Every token prefers expert 0 (k=1); capacity = ceil(1.0 * 4 / 2) = 2, so tokens 0 and 1 keep it and
    # tokens 2 and 3 (later in token order) are dropped: their routed output is exactly zero.
    block = make_block(num_experts=2, num_experts_per_tok=1, capacity_factor=1.0)
    with torch.no_grad():
        block.router.weight.zero_()
        block.router.weight[0] = 1.0
    x = torch.rand(1, 4, HIDDEN) + 0.1
    out = block(x)
    assert int(out.tokens_dropped) == 2
    assert out.expert_counts.tolist() == [4, 0]
    assert out.hidden_states[0, :2].abs().sum() > 0
    assert torch.equal(out.hidden_states[0, 2:], torch.zeros(2, HIDDEN))


def test_first_choices_have_priority_over_second_choices():
    # k=2, 2 experts, 4 tokens: tokens 0-1 prefer expert 0, tokens 2-3 prefer expert 1, so each expert receives
    # 2 first choices and 2 second choices; capacity = ceil(0.5 * 8 / 2) = 2 keeps exactly the first choices.
    block = make_block(num_experts=2, num_experts_per_tok=2, capacity_factor=0.5, norm_topk_prob=False)
    with torch.no_grad():
        block.router.weight.zero_()
        block.router.weight[0, 0] = 1.0
        block.router.weight[1, 1] = 1.0
    x = torch.zeros(1, 4, HIDDEN)
    x[0, :2, 0] = 2.0
    x[0, 2:, 1] = 2.0
    out = block(x)
    assert int(out.tokens_dropped) == 4
    expected, _ = naive_moe(block, x)
    torch.testing.assert_close(out.hidden_states, expected)
    # each surviving contribution is the token's first-choice expert, weighted by its (larger) probability
    probs = out.router_logits.softmax(-1)
    assert probs[0, 0] > 0.5 and probs[2, 1] > 0.5


def test_empty_experts_get_zero_gradients():
    block = make_block(num_experts=6, num_experts_per_tok=2)
    with torch.no_grad():
        block.router.weight[4:] = -5.0  # with positive inputs experts 4 and 5 are never chosen
    x = torch.rand(2, 13, HIDDEN) + 0.05
    out = block(x)
    assert out.expert_counts[4:].tolist() == [0, 0]
    check_against_reference(block, x)
    block.zero_grad()
    block(x).hidden_states.sum().backward()
    assert torch.equal(block.gate_up_proj.grad[4:], torch.zeros_like(block.gate_up_proj.grad[4:]))
    assert torch.equal(block.down_proj.grad[4:], torch.zeros_like(block.down_proj.grad[4:]))


def test_attention_mask_excludes_padding():
    block = make_block()
    x = torch.randn(2, 9, HIDDEN)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 6:] = 0
    stats = check_against_reference(block, x, mask)
    assert int(stats["expert_counts"].sum()) == (9 + 6) * 2
    out = block(x, mask)
    assert torch.equal(out.hidden_states[0, 6:], torch.zeros(3, HIDDEN))
    # changing padded inputs changes nothing that is counted
    x2 = x.clone()
    x2[0, 6:] = 100.0 * torch.randn(3, HIDDEN)
    out2 = block(x2, mask)
    torch.testing.assert_close(out2.hidden_states, out.hidden_states)
    for key in ("aux_loss", "load_balancing_loss", "z_loss", "expert_load"):
        torch.testing.assert_close(out2[key], out[key])


def test_all_padding_gives_finite_zero_losses():
    block = make_block()
    x = torch.randn(2, 3, HIDDEN, requires_grad=True)
    out = block(x, torch.zeros(2, 3, dtype=torch.long))
    assert torch.equal(out.hidden_states, torch.zeros(2, 3, HIDDEN))
    assert out.aux_loss.item() == 0.0 and int(out.expert_counts.sum()) == 0
    assert torch.equal(out.expert_load, torch.zeros(4))
    (out.hidden_states.sum() + out.aux_loss).backward()
    assert torch.isfinite(x.grad).all()


def test_non_gated_gelu_experts():
    block = make_block(gated=False, hidden_act="gelu", num_shared_experts=1)
    assert block.gate_up_proj.shape == (4, HIDDEN, INTERMEDIATE)
    check_against_reference(block, torch.randn(1, 7, HIDDEN))


def test_float64_uses_exact_loop_and_matches_tightly():
    block = make_block(dtype=torch.float64, top_p=0.7, capacity_factor=1.2, num_shared_experts=1)
    check_against_reference(block, torch.randn(2, 17, HIDDEN, dtype=torch.float64), atol=1e-12, rtol=1e-10)


def test_odd_sizes_fall_back_to_loop():
    # hidden 6 rows are 24 bytes: grouped_mm cannot run, "auto" uses the per-expert loop
    block = SparseMoeBlock(hidden_size=6, intermediate_size=5, num_experts=3, num_experts_per_tok=2)
    check_against_reference(block, torch.randn(1, 7, 6))
    forced = SparseMoeBlock(hidden_size=6, intermediate_size=5, num_experts=3, expert_implementation="grouped_mm")
    with pytest.raises(ValueError, match="expert_implementation"):
        forced(torch.randn(1, 2, 6))


def test_grouped_and_loop_implementations_agree_bf16():
    grouped = make_block(dtype=torch.bfloat16, num_experts=8, hidden_size=32, intermediate_size=16)
    loop = make_block(
        dtype=torch.bfloat16, num_experts=8, hidden_size=32, intermediate_size=16, expert_implementation="loop"
    )
    loop.load_state_dict(grouped.state_dict())
    x = torch.randn(3, 21, 32, dtype=torch.bfloat16)
    projection = torch.randn_like(x)
    results = []
    for block in (grouped, loop):
        inputs = x.clone().requires_grad_(True)
        out = block(inputs)
        ((out.hidden_states * projection).sum() + out.aux_loss).backward()
        results.append((out, inputs.grad, {n: p.grad for n, p in block.named_parameters()}))
    (a, grad_a, params_a), (b, grad_b, params_b) = results
    assert a.hidden_states.dtype == torch.bfloat16
    torch.testing.assert_close(a.hidden_states, b.hidden_states, atol=2e-2, rtol=2e-2)
    assert torch.equal(a.expert_counts, b.expert_counts)
    torch.testing.assert_close(grad_a, grad_b, atol=3e-2, rtol=3e-2)
    for name in params_a:
        torch.testing.assert_close(params_a[name], params_b[name], atol=3e-2, rtol=3e-2)


def test_deterministic_and_jitter_only_in_training():
    block = make_block(router_jitter=0.2)
    x = torch.randn(2, 30, HIDDEN)
    block.eval()
    first, second = block(x), block(x)
    assert torch.equal(first.hidden_states, second.hidden_states)
    assert torch.equal(first.aux_loss, second.aux_loss)
    plain = make_block()
    plain.load_state_dict(block.state_dict())
    assert torch.equal(plain(x).hidden_states, first.hidden_states)
    block.train()
    torch.manual_seed(3)
    noisy = block(x)
    assert not torch.equal(noisy.router_logits, first.router_logits)
    torch.manual_seed(3)
    assert torch.equal(block(x).hidden_states, noisy.hidden_states)


def test_gradients_flow_through_router():
    block = make_block(router_aux_loss_coef=0.0, router_z_loss_coef=0.0)
    block(torch.randn(1, 7, HIDDEN)).hidden_states.sum().backward()
    assert block.router.weight.grad is not None and block.router.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------------------
# Losses by hand
# ------------------------------------------------------------------------------------------------------------


def test_losses_by_hand():
    # probs row 0 = (1/4, 3/4), row 1 = (1/2, 1/2)
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    # both tokens pick expert 1: f = (0, 1), P = (3/8, 5/8) -> 2 * 5/8 = 1.25
    assert float(load_balancing_loss(logits, torch.tensor([[1], [1]]))) == pytest.approx(1.25)
    # one each: f = (1/2, 1/2) -> 2 * (3/16 + 5/16) = 1.0
    assert float(load_balancing_loss(logits, torch.tensor([[1], [0]]))) == pytest.approx(1.0)
    # negative ids are unused slots; masked tokens count nowhere: only token 0 (probs 1/4, 3/4) with expert 1
    value = load_balancing_loss(logits, torch.tensor([[1, -1], [0, 1]]), attention_mask=torch.tensor([1, 0]))
    assert float(value) == pytest.approx(2 * 0.75)
    # z-loss: logsumexp = ln 4 and ln 2 -> mean(4 ln^2 2, ln^2 2) = 2.5 ln^2 2
    assert float(router_z_loss(logits)) == pytest.approx(2.5 * math.log(2.0) ** 2)
    assert float(router_z_loss(logits, attention_mask=torch.tensor([0, 1]))) == pytest.approx(math.log(2.0) ** 2)
    # entropy of (1/2, 1/2) is ln 2
    assert float(router_entropy(logits[1:])) == pytest.approx(math.log(2.0))


def test_block_losses_by_hand():
    # Router logits are x @ W^T with W = [[0..], [1, 0..]]: token 0 gets (0, ln 3), token 1 gets (0, 0.5).
    block = make_block(num_experts=2, num_experts_per_tok=1, router_aux_loss_coef=0.5, router_z_loss_coef=0.25)
    with torch.no_grad():
        block.router.weight.zero_()
        block.router.weight[1, 0] = 1.0
    x = torch.zeros(1, 2, HIDDEN)
    x[0, 0, 0] = math.log(3.0)
    x[0, 1, 0] = 0.5  # probs (sigma(-0.5), sigma(0.5)): token 1 also picks expert 1
    out = block(x)
    p1 = torch.sigmoid(torch.tensor(0.5)).item()  # prob of expert 1 for token 1
    # f = (0, 1): both assignments go to expert 1; P_1 = (3/4 + p1) / 2
    balance = 2 * (0.0 * (0.25 + (1 - p1)) / 2 + 1.0 * (0.75 + p1) / 2)
    z = (math.log(4.0) ** 2 + math.log(1 + math.exp(0.5)) ** 2) / 2
    assert out.load_balancing_loss.item() == pytest.approx(balance, rel=1e-6)
    assert out.z_loss.item() == pytest.approx(z, rel=1e-6)
    assert out.aux_loss.item() == pytest.approx(0.5 * balance + 0.25 * z, rel=1e-6)
    assert out.expert_load.tolist() == [0.0, 1.0]


# ------------------------------------------------------------------------------------------------------------
# Dense block, aggregation, validation
# ------------------------------------------------------------------------------------------------------------


def test_feed_forward_block_and_interface_parity():
    dense = FeedForwardBlock(hidden_size=HIDDEN, intermediate_size=12)
    x = torch.randn(2, 5, HIDDEN)
    out = dense(x, torch.ones(2, 5))
    gate, up = dense.mlp.up_proj(x).chunk(2, dim=-1)
    torch.testing.assert_close(out.hidden_states, dense.mlp.down_proj(F.silu(gate) * up))
    assert float(out.aux_loss) == 0.0 and out.router_logits is None and out.expert_load is None
    # a one-expert top-1 MoE with the same weights is the same function
    moe = SparseMoeBlock(hidden_size=HIDDEN, intermediate_size=12, num_experts=1, num_experts_per_tok=1)
    with torch.no_grad():
        moe.gate_up_proj[0] = dense.mlp.up_proj.weight.t()
        moe.down_proj[0] = dense.mlp.down_proj.weight.t()
    torch.testing.assert_close(moe(x).hidden_states, out.hidden_states, atol=1e-6, rtol=1e-5)


def test_moe_statistics_schema_from_hooked_blocks():
    """Two sparse layers (the second drops tokens) and a dense one between them, recorded over two forwards."""
    model = torch.nn.ModuleList([make_block(), FeedForwardBlock(hidden_size=HIDDEN, intermediate_size=8),
                                 make_block(capacity_factor=0.5)])
    statistics = MoeStatistics.attach(model)
    assert statistics.num_layers == 2
    inputs = [torch.randn(2, 10, HIDDEN), torch.randn(2, 10, HIDDEN)]
    outputs = [[layer(x) for layer in model] for x in inputs]
    metrics = statistics.pop()
    assert set(metrics) == set(MOE_LOG_KEYS) | {f"moe/load/layer{i}/expert{j}" for i in range(2) for j in range(4)}
    assert all(isinstance(value, float) for value in metrics.values())
    # aux loss: summed over the sparse layers, averaged over the two forwards
    expected_aux = sum(float((out[0].aux_loss + out[2].aux_loss).detach()) for out in outputs) / 2
    assert metrics["moe/aux_loss"] == pytest.approx(expected_aux, rel=1e-5)
    expected_balance = sum(float(out[0].load_balancing_loss + out[2].load_balancing_loss) for out in outputs) / 4
    assert metrics["moe/load_balancing_loss"] == pytest.approx(expected_balance, rel=1e-5)
    # loads: assignment counts pooled over both forwards, per layer
    for layer, index in ((0, 0), (1, 2)):
        counts = sum(out[index].expert_counts.double() for out in outputs)
        for expert in range(4):
            assert metrics[f"moe/load/layer{layer}/expert{expert}"] == pytest.approx(float(counts[expert] / counts.sum()))
    dropped = sum(int(out[2].tokens_dropped) for out in outputs)
    assert dropped > 0 and metrics["moe/dropped_fraction"] == pytest.approx(dropped / (2 * 2 * 2 * 20))
    scaled = [metrics[f"moe/load/layer{i}/expert{j}"] * 4 for i in range(2) for j in range(4)]
    assert metrics["moe/load_max"] == pytest.approx(max(scaled)) and metrics["moe/load_min"] == pytest.approx(min(scaled))
    assert metrics["moe/load_max"] > 1.0 > metrics["moe/load_min"]
    assert statistics.pop() == {}  # reset
    model.eval()
    model[0](inputs[0])
    assert statistics.pop() == {}  # evaluation forwards are not training statistics
    model.train()
    statistics.detach()
    model[0](inputs[0])
    assert statistics.pop() == {} and statistics.num_layers == 0
    assert MoeStatistics.attach(FeedForwardBlock(hidden_size=HIDDEN, intermediate_size=8)).num_layers == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_experts=2, num_experts_per_tok=4), r"`num_experts_per_tok` \(4\) must be <= `num_experts` \(2\)"),
        (dict(num_experts=0), r"`num_experts` \(0\) must be an integer >= 1"),
        (dict(top_p=0.0), r"`top_p` \(0.0\) must be None or a float in \(0, 1\]"),
        (dict(top_p=1.5), r"`top_p` \(1.5\)"),
        (dict(max_experts_per_tok=2), r"`max_experts_per_tok` \(2\) only applies to top-p"),
        (dict(top_p=0.5, max_experts_per_tok=9), r"`max_experts_per_tok` \(9\) must be <= `num_experts` \(4\)"),
        (dict(capacity_factor=0.0), r"`capacity_factor` \(0.0\)"),
        (dict(hidden_act="swiglu"), r"`hidden_act` \('swiglu'\) is not supported"),
        (dict(router_aux_loss_coef=-1.0), r"`router_aux_loss_coef` \(-1.0\)"),
        (dict(router_jitter=1.0), r"`router_jitter` \(1.0\)"),
        (dict(shared_expert_intermediate_size=8), r"`shared_expert_intermediate_size` \(8\) needs"),
        (dict(shared_expert_gate=True), r"`shared_expert_gate` \(True\) needs"),
        (dict(num_shared_experts=-1), r"`num_shared_experts` \(-1\)"),
        (dict(expert_implementation="triton"), r"`expert_implementation` \('triton'\)"),
    ],
)
def test_constructor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_block(**kwargs)


def test_forward_validation():
    block = make_block()
    with pytest.raises(ValueError, match=r"`hidden_states` has shape \(2, 3, 5\)"):
        block(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(2, 4\); expected \(2, 3\)"):
        block(torch.randn(2, 3, HIDDEN), torch.ones(2, 4))


def test_count_active_parameters_excludes_the_experts_a_token_skips():
    block = make_block()  # 4 experts, top-2
    total = sum(p.numel() for p in block.parameters())
    routed = block.gate_up_proj.numel() + block.down_proj.numel()
    assert count_active_parameters(block) == total - routed // 2
    top_p = make_block(top_p=0.5, max_experts_per_tok=3)  # an upper bound: 3 of 4 experts
    assert count_active_parameters(top_p) == total - routed // 4
    dense = FeedForwardBlock(hidden_size=HIDDEN, intermediate_size=8)
    assert count_active_parameters(dense) == sum(p.numel() for p in dense.parameters())
