"""genrec.alignment.dpo: DPO on P5 / OneRec / RecGPT (GenRecDPOTrainer, a transformers.Trainer owning the loss) and
BIGRec (TRL's own DPOTrainer).

Every loss is checked against a value computed by hand from the models' logits:
``-logsigmoid(beta * ((pc - rc) - (pr - rr)))`` with ``p*``/``r*`` the policy/reference log-probabilities of the
chosen (c) and rejected (r) sessions (sum of their tokens' log-probabilities).
"""

import copy
import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import Trainer
from trl import DPOConfig, DPOTrainer

from genrec.alignment.dpo import (
    BIGRecDPOTrainer,
    GenRecDPOTrainer,
    GenRecPreferenceCollator,
    build_dpo_trainer,
)
from genrec.models.onerec import OneRecForConditionalGeneration
from genrec.models.p5 import P5ForConditionalGeneration
from genrec.models.recgpt import RecGPTConfig, RecGPTForCausalLM
from genrec.tokenization import get_tokenizer_class

NUM_ITEMS = 12
IDS = [f"i{n}" for n in range(NUM_ITEMS)]
T5_TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0,
           "max_history_items": 6, "num_beams": 6}
RECGPT_TINY = {"num_chunks": 2, "codebook_size": 12, "fsq_levels": [4, 3], "text_embedding_dim": 8, "hidden_size": 16,
               "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
               "max_position_embeddings": 6, "hidden_dropout_prob": 0.0, "attention_dropout": 0.0}


def _item_tokenizer():
    catalog = SimpleNamespace(item_ids=IDS)
    return get_tokenizer_class("random")(codebook_size=4, num_levels=3, seed=0).fit(catalog)


def _model(kind: str):
    torch.manual_seed(0)
    if kind == "p5":
        return P5ForConditionalGeneration.from_item_tokenizer(_item_tokenizer(), **T5_TINY, num_candidates=5)
    if kind in ("onerec", "onerec-item"):  # "-item": one encoder position per history item
        return OneRecForConditionalGeneration.from_item_tokenizer(
            _item_tokenizer(), **T5_TINY, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
            session_length=2, input_granularity="item" if kind == "onerec-item" else "token")
    rng = np.random.default_rng(0)
    codes = np.stack([np.arange(NUM_ITEMS) % 12, (np.arange(NUM_ITEMS) * 5 + 1) % 12], 1)
    text = rng.normal(size=(NUM_ITEMS, 8)).astype(np.float32)
    extra = {"ffn_type": "moe", "num_experts": 4, "num_experts_per_tok": 2} if kind == "recgpt-moe" else {}
    return RecGPTForCausalLM(RecGPTConfig(**RECGPT_TINY, **extra), item_ids=IDS, item_codes=codes,
                             item_text_embeddings=text)


def _preferences(session_length: int = 1, *, with_ntp_only_row: bool = False) -> Dataset:
    """8 users; user u prefers item u (then u+1) over item u+6 (then u+7); the NTP target is item u."""
    rows = []
    for u in range(8):
        chosen = [IDS[(u + k) % NUM_ITEMS] for k in range(session_length)]
        rejected = [IDS[(u + 6 + k) % NUM_ITEMS] for k in range(max(1, session_length - 1))]  # other length
        if session_length == 1:
            rejected = [IDS[(u + 6) % NUM_ITEMS]]
        rows.append({"user_id": f"u{u}", "history": [IDS[(u + 3) % NUM_ITEMS], IDS[(u + 4) % NUM_ITEMS]],
                     "chosen_items": chosen, "rejected_items": rejected, "target_items": [IDS[u]]})
    if with_ntp_only_row:
        rows.append({"user_id": "u8", "history": ["i1"], "chosen_items": [], "rejected_items": [],
                     "target_items": ["i2"]})
    return Dataset.from_list(rows)


def _args(tmp_path, **overrides) -> DPOConfig:
    values = {"output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4, "max_steps": 8,
              "learning_rate": 5e-3, "use_cpu": True, "bf16": False, "report_to": "none", "logging_steps": 1,
              "save_strategy": "no", "beta": 0.3, "dataloader_num_workers": 0, "seed": 0}
    values.update(overrides)
    return DPOConfig(**values)


def _perturb(model, scale=0.05, seed=1):
    """Move the policy away from its reference so the DPO terms are not all zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


# ---------------------------------------------------------------- hand-computed log-probabilities
def _t5_token_scores(model, history, items):
    """Per code token of the session: (log p(token | history, earlier tokens), log sum_v p(v)^2), no padding."""
    rows = model.item_rows(history)
    encoder = torch.tensor([model.encode_history(rows)])
    tokens = [t for item in items for t in model.item_tokens(model.item_index[item])]
    decoder = torch.tensor([[model.config.decoder_start_token_id, *tokens[:-1]]])
    logits = model(input_ids=encoder, decoder_input_ids=decoder).logits[0].float()
    return [(float(logits[j].log_softmax(-1)[t]), float(torch.logsumexp(2 * logits[j].log_softmax(-1), -1)))
            for j, t in enumerate(tokens)]


def _recgpt_token_scores(model, history, items):
    """Per code c of the one item: (log_softmax(logits[:, c])[code_c], log sum_v p(v)^2)."""
    (item,) = items
    input_ids = torch.tensor([[model.item_index[h] + 1 for h in history]])
    logits = model(input_ids=input_ids).logits[0].float()  # (C, K)
    codes = model.catalog_codes[model.item_index[item] + 1]
    return [(float(logits[c].log_softmax(-1)[codes[c]]), float(torch.logsumexp(2 * logits[c].log_softmax(-1), -1)))
            for c in range(logits.shape[0])]


def _token_scores(model, history, items):
    with torch.no_grad():
        if isinstance(model, RecGPTForCausalLM):
            return _recgpt_token_scores(model, history, items)
        return _t5_token_scores(model, history, items)


def _token_logps(model, history, items):
    return [log_p for log_p, _ in _token_scores(model, history, items)]


def _logp(model, history, items):
    """log p(session | history) = sum of its tokens' log-probabilities."""
    return sum(_token_logps(model, history, items))


def _hand_dpo(policy, reference, rows, beta):
    losses = []
    for row in rows:
        if not row["chosen_items"]:
            continue
        pc, pr = _logp(policy, row["history"], row["chosen_items"]), _logp(policy, row["history"], row["rejected_items"])
        rc = _logp(reference, row["history"], row["chosen_items"])
        rr = _logp(reference, row["history"], row["rejected_items"])
        losses.append(-F.logsigmoid(torch.tensor(beta * ((pc - rc) - (pr - rr)))).item())
    return sum(losses) / len(losses)


def _hand_ntp(model, rows):
    """Mean token cross-entropy of the target items (T5: their code tokens; RecGPT: their C codes)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            if isinstance(model, RecGPTForCausalLM):
                logits = model(input_ids=torch.tensor([[model.item_index[h] + 1 for h in row["history"]]])).logits[0]
                codes = model.catalog_codes[model.item_index[row["target_items"][0]] + 1]
                terms = [-logits[c].float().log_softmax(-1)[codes[c]] for c in range(logits.shape[0])]
            else:
                encoder = torch.tensor([model.encode_history(model.item_rows(row["history"]))])
                tokens = [t for item in row["target_items"] for t in model.item_tokens(model.item_index[item])]
                decoder = torch.tensor([[model.config.decoder_start_token_id, *tokens[:-1]]])
                logits = model(input_ids=encoder, decoder_input_ids=decoder).logits[0].float()
                terms = [-logits[j].log_softmax(-1)[t] for j, t in enumerate(tokens)]
            total, count = total + float(sum(terms)), count + len(terms)
    return total / count


def _batch(trainer, count):
    dataset = trainer.train_dataset
    return trainer.data_collator([dataset[i] for i in range(count)])


# ---------------------------------------------------------------------------------------------- tests
def test_collator_layout_for_both_kinds():
    rows = [{"context_ids": [5, 6, 1], "chosen_ids": [7, 8], "rejected_ids": [9], "target_ids": [7, 8]},
            {"context_ids": [4, 1], "chosen_ids": [], "rejected_ids": [], "target_ids": [10]}]
    batch = GenRecPreferenceCollator("seq2seq", pad_token_id=0, decoder_start_token_id=0)(rows)
    assert batch["row_has_pair"].tolist() == [True, False]
    assert batch["input_ids"].tolist() == [[0, 7, 8], [0, 9, 0]]  # [chosen; rejected], right-padded
    assert batch["completion_mask"].tolist() == [[0, 1, 1], [0, 1, 0]]
    assert batch["context_input_ids"].tolist() == [[5, 6, 1]]  # one history per pair (shared)
    assert batch["target_labels"].tolist() == [[7, 8], [10, -100]]
    assert batch["target_context_attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    recgpt = [{"context_ids": [3, 4], "chosen_ids": [1, 2], "rejected_ids": [5, 6], "target_ids": [3],
               "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0},
              {"context_ids": [2], "chosen_ids": [], "rejected_ids": [], "target_ids": [4],
               "ref_chosen_logps": 0.0, "ref_rejected_logps": 0.0}]
    batch = GenRecPreferenceCollator("parallel-codes")(recgpt)
    assert batch["context_input_ids"].tolist() == [[3, 4]]
    assert batch["target_context_input_ids"].tolist() == [[3, 4], [0, 2]]  # left-padded catalog rows + 1
    assert batch["target_labels"].tolist() == [[0, 3], [0, 4]]  # the next item after the last position
    assert batch["ref_chosen_logps"].tolist() == [-1.0] and batch["ref_rejected_logps"].tolist() == [-2.0]
    with pytest.raises(ValueError, match="kind"):
        GenRecPreferenceCollator("causal")


@pytest.mark.parametrize("kind,session_length", [("p5", 1), ("onerec", 2), ("recgpt", 1), ("recgpt-moe", 1)])
def test_dpo_loss_matches_hand_computation(tmp_path, kind, session_length):
    model = _model(kind)
    data = _preferences(session_length)
    trainer = build_dpo_trainer(model, data, _args(tmp_path))
    assert isinstance(trainer, GenRecDPOTrainer) and isinstance(trainer, Trainer)
    assert not isinstance(trainer, DPOTrainer)
    reference = trainer.ref_model
    assert reference is not model and not any(p.requires_grad for p in reference.parameters())
    _perturb(model)
    batch = _batch(trainer, 4)
    loss = trainer.compute_loss(model, batch)
    expected = _hand_dpo(model, reference, [data[i] for i in range(4)], beta=0.3)
    has_moe = kind in ("onerec", "recgpt-moe")
    aux = trainer.preference_metrics["eval" if not model.training else "train"].get("aux_loss", [])
    assert bool(aux) == has_moe
    if has_moe:  # the router losses of the policy forward stay in the objective
        assert aux[-1] > 0
        expected += aux[-1]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    loss.backward()  # differentiable through the adapter
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert "forward" not in model.__dict__ and "forward" not in reference.__dict__  # no patch left behind


# ------------------------------------------------------- every loss type against a hand computation
def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _hand_loss(loss_type, pairs, beta, eps, tau=0.05):
    """Mean over pairs of one loss type, written per pair with math (the papers' formulas; see genrec.alignment.losses).

    ``pairs``: dicts with policy/reference sequence log-probs pc, pr, rc, rr, token counts lc, lr, and the chosen
    session's token log-probs ``chosen_tokens``.
    """
    if loss_type == "sft":  # mean token NLL over every chosen token of the batch
        tokens = [t for p in pairs for t in p["chosen_tokens"]]
        return -sum(tokens) / len(tokens)
    if loss_type in ("aot", "aot_unpaired"):  # sorted across the batch
        if loss_type == "aot":
            left, right = sorted(p["pc"] - p["pr"] for p in pairs), sorted(p["rc"] - p["rr"] for p in pairs)
        else:
            left, right = sorted(p["pc"] - p["rc"] for p in pairs), sorted(p["pr"] - p["rr"] for p in pairs)
        return sum(-_log_sigmoid(beta * (a - b)) * (1 - eps) - _log_sigmoid(-beta * (a - b)) * eps
                   for a, b in zip(left, right)) / len(pairs)
    total = 0.0
    for p in pairs:
        c, r = p["pc"] - p["rc"], p["pr"] - p["rr"]
        d = c - r
        per_token = c / p["lc"] - r / p["lr"]
        value = {
            "sigmoid": lambda: -_log_sigmoid(beta * d),
            "hinge": lambda: max(0.0, 1 - beta * d),
            "ipo": lambda: (per_token - 1 / (2 * beta)) ** 2,
            "exo_pair": lambda: (_sigmoid(beta * d) * (_log_sigmoid(beta * d) - math.log(1 - eps))
                                 + _sigmoid(-beta * d) * (_log_sigmoid(-beta * d) - math.log(eps))),
            "nca_pair": lambda: -_log_sigmoid(beta * c) - 0.5 * _log_sigmoid(-beta * c) - 0.5 * _log_sigmoid(-beta * r),
            "robust": lambda: ((1 - eps) * -_log_sigmoid(beta * d) + eps * _log_sigmoid(-beta * d)) / (1 - 2 * eps),
            "bco_pair": lambda: -_log_sigmoid(beta * c) - _log_sigmoid(-beta * r),
            "sppo_hard": lambda: (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2,
            "apo_zero": lambda: 1 - _sigmoid(beta * c) + _sigmoid(beta * r),
            "apo_down": lambda: _sigmoid(beta * c) + 1 - _sigmoid(beta * (c - r)),
            "discopop": lambda: (-_log_sigmoid(beta * d) * (1 - _sigmoid(beta * d / tau))
                                 + math.exp(-beta * d) * _sigmoid(beta * d / tau)),
            "sigmoid_norm": lambda: -_log_sigmoid(beta * per_token),
        }[loss_type]()
        total += value
    return total / len(pairs)


def _hand_pairs(policy, reference, rows):
    pairs = []
    for row in rows:
        h, c, r = row["history"], row["chosen_items"], row["rejected_items"]
        chosen_tokens, rejected_tokens = _token_logps(policy, h, c), _token_logps(policy, h, r)
        pairs.append({"pc": sum(chosen_tokens), "pr": sum(rejected_tokens), "rc": _logp(reference, h, c),
                      "rr": _logp(reference, h, r), "lc": len(chosen_tokens), "lr": len(rejected_tokens),
                      "chosen_tokens": chosen_tokens})
    return pairs


ALL_LOSS_TYPES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


def test_the_loss_table_is_every_loss_type_dpoconfig_documents():
    from genrec.alignment.losses import PREFERENCE_LOSS_TYPES

    assert sorted(PREFERENCE_LOSS_TYPES) == sorted(ALL_LOSS_TYPES)
    documented = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    assert sorted(re.findall(r"`'(\w+)'`", documented)) == sorted(ALL_LOSS_TYPES)  # a new TRL loss fails here


@pytest.mark.parametrize("kind,session_length,loss_type",
                         [("p5", 2, name) for name in ALL_LOSS_TYPES]
                         + [("recgpt", 1, name) for name in ("sigmoid", "ipo", "aot", "sft", "robust")])
def test_every_loss_type_matches_its_hand_computation(tmp_path, kind, session_length, loss_type):
    """P5 sessions of 2 items against rejected sessions of 1 (unequal lengths: the per-token losses differ)."""
    model = _model(kind)
    data = _preferences(session_length)
    beta, eps = 0.7, 0.1
    trainer = build_dpo_trainer(model, data, _args(tmp_path, beta=beta, loss_type=[loss_type], label_smoothing=eps))
    _perturb(model, scale=0.1)
    rows = [data[i] for i in range(4)]
    loss = float(trainer.compute_loss(model, _batch(trainer, 4)).detach())
    expected = _hand_loss(loss_type, _hand_pairs(model, trainer.ref_model, rows), beta, eps)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
    logged = trainer.preference_metrics["train" if model.training else "eval"]
    pairs = _hand_pairs(model, trainer.ref_model, rows)
    assert logged["rewards/margins"][-1] == pytest.approx(
        np.mean([beta * ((p["pc"] - p["rc"]) - (p["pr"] - p["rr"])) for p in pairs]), rel=1e-4, abs=1e-6)


def test_weighted_losses_f_divergences_ld_alpha_and_wpo_match_hand_computation(tmp_path):
    model = _model("p5")
    data = _preferences(2)
    rows = [data[i] for i in range(4)]
    beta = 0.5

    def loss_of(**overrides):
        trainer = build_dpo_trainer(model, data, _args(tmp_path, beta=beta, **overrides), ref_model=reference)
        assert trainer.ref_model is reference  # an explicit reference is used as given
        return float(trainer.compute_loss(model, _batch(trainer, 4)).detach())

    reference = copy.deepcopy(model).eval()
    _perturb(model, scale=0.1)
    pairs = _hand_pairs(model, reference, rows)
    # two loss types mixed by loss_weights (MPO-style)
    loss = loss_of(loss_type=["sigmoid", "sft"], loss_weights=[0.8, 0.3])
    assert loss == pytest.approx(0.8 * _hand_loss("sigmoid", pairs, beta, 0.0) + 0.3 * _hand_loss("sft", pairs, beta, 0.0),
                                 rel=1e-4)
    # f-divergences: DPO on f'(ratio) instead of the log-ratio
    scores = {"forward_kl": lambda x: 1 - math.exp(-x), "js_divergence": lambda x: math.log(2) + _log_sigmoid(x),
              "alpha_divergence": lambda x: (math.exp(-0.5 * x) - 1) / -0.5}
    for name, score in scores.items():
        loss = loss_of(f_divergence_type=name)
        expected = np.mean([-_log_sigmoid(beta * (score(p["pc"] - p["rc"]) - score(p["pr"] - p["rr"]))) for p in pairs])
        assert loss == pytest.approx(expected, rel=1e-4), name
    # LD-DPO: tokens past the shorter session of the pair count ld_alpha times
    alpha = 0.25
    ld_pairs = []
    for row in rows:
        h, c, r = row["history"], row["chosen_items"], row["rejected_items"]
        sides = [_token_logps(m, h, s) for m in (model, reference) for s in (c, r)]
        shared = min(len(sides[0]), len(sides[1]))
        pc, pr, rc, rr = (sum(t[:shared]) + alpha * sum(t[shared:]) for t in sides)
        ld_pairs.append({"pc": pc, "pr": pr, "rc": rc, "rr": rr, "lc": len(sides[0]), "lr": len(sides[1])})
    loss = loss_of(ld_alpha=alpha)
    assert loss == pytest.approx(_hand_loss("sigmoid", ld_pairs, beta, 0.0), rel=1e-4)
    # WPO: each pair's loss weighted by exp(mean_t (log p_t - log sum_v p_v^2)) of chosen times rejected (policy)
    weighted = []
    for row, pair in zip(rows, pairs):
        weight = 1.0
        for side in (row["chosen_items"], row["rejected_items"]):
            tokens = _token_scores(model, row["history"], side)
            weight *= math.exp(sum(lp - sq for lp, sq in tokens) / len(tokens))
        weighted.append(weight * -_log_sigmoid(beta * ((pair["pc"] - pair["rc"]) - (pair["pr"] - pair["rr"]))))
    loss = loss_of(use_weighting=True)
    assert loss == pytest.approx(float(np.mean(weighted)), rel=1e-4)


def test_disable_dropout_follows_the_dpoconfig(tmp_path):
    """TRL's default: dropout off in the policy, so its log-probs compare with the eval-mode reference's."""
    def dropout_rates(model):
        return {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}

    def model_with_dropout():
        return P5ForConditionalGeneration.from_item_tokenizer(_item_tokenizer(), **{**T5_TINY, "dropout_rate": 0.1})

    model = model_with_dropout()
    assert dropout_rates(model) == {0.1}
    build_dpo_trainer(model, _preferences(1), _args(tmp_path))
    assert dropout_rates(model) == {0.0}
    kept = model_with_dropout()
    build_dpo_trainer(kept, _preferences(1), _args(tmp_path, disable_dropout=False))
    assert dropout_rates(kept) == {0.1}


def test_bad_loss_settings_raise_naming_the_field(tmp_path):
    model, data = _model("p5"), _preferences(1)
    for overrides, field in (({"loss_type": ["nope"]}, "loss_type"), ({"loss_type": ["bco_pair"],
                             "f_divergence_type": "js_divergence"}, "f_divergence_type"),
                             ({"loss_type": ["exo_pair"]}, "label_smoothing"),
                             ({"loss_type": ["robust"], "label_smoothing": 0.5}, "label_smoothing"),
                             ({"ld_alpha": 1.5}, "ld_alpha")):
        with pytest.raises(ValueError, match=f"`{field}`"):
            build_dpo_trainer(model, data, _args(tmp_path, **overrides))


@pytest.mark.parametrize("kind", ["p5", "recgpt"])
def test_sft_weight_adds_the_hand_computed_next_token_loss(tmp_path, kind):
    model = _model(kind)
    data = _preferences(1, with_ntp_only_row=True)
    trainer = build_dpo_trainer(model, data, _args(tmp_path), sft_weight=0.7)
    _perturb(model)
    rows = [data[i] for i in range(len(data))]
    # a batch with pairs and an NTP-only row: DPO over the pairs + 0.7 x NTP over every row with a target
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 1, 8)])
    loss = float(trainer.compute_loss(model, batch).detach())
    expected = _hand_dpo(model, trainer.ref_model, [rows[0], rows[1]], 0.3) + 0.7 * _hand_ntp(model, [rows[0], rows[1],
                                                                                                   rows[8]])
    assert loss == pytest.approx(expected, rel=1e-4)
    # a batch without any pair: NTP only
    only = trainer.data_collator([trainer.train_dataset[8]])
    assert float(trainer.compute_loss(model, only).detach()) == pytest.approx(0.7 * _hand_ntp(model, [rows[8]]), rel=1e-4)
    assert trainer.preference_metrics["train" if model.training else "eval"]["ntp_loss"]


def _margin(policy, reference, rows):
    total = 0.0
    for row in rows:
        h, c, r = row["history"], row["chosen_items"], row["rejected_items"]
        total += (_logp(policy, h, c) - _logp(reference, h, c)) - (_logp(policy, h, r) - _logp(reference, h, r))
    return total / len(rows)


@pytest.mark.parametrize("kind,session_length", [("onerec", 2), ("onerec-item", 2), ("recgpt-moe", 1)])
def test_training_grows_the_margin_and_logs_trl_metrics_and_aux_loss(tmp_path, kind, session_length):
    model = _model(kind)
    data = _preferences(session_length, with_ntp_only_row=True)
    trainer = build_dpo_trainer(model, data, _args(tmp_path, max_steps=12, learning_rate=1e-2), sft_weight=0.5,
                                eval_dataset=data.select(range(4)))
    reference = copy.deepcopy(trainer.ref_model)
    rows = [data[i] for i in range(8)]
    assert _margin(model, reference, rows) == pytest.approx(0.0, abs=1e-5)
    trainer.train()
    assert _margin(model, reference, rows) > 1.0
    logs = [record for record in trainer.state.log_history if "loss" in record]
    assert len(logs) == 12
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "aux_loss", "ntp_loss"):
        assert key in logs[-1], key
    assert all(record["aux_loss"] > 0 for record in logs)
    assert logs[-1]["rewards/margins"] > logs[0]["rewards/margins"]
    assert np.mean([r["loss"] for r in logs[-3:]]) < np.mean([r["loss"] for r in logs[:3]])
    if kind.startswith("onerec"):
        assert "moe/load_balancing_loss" in logs[-1]  # OneRec's own MoE logging rides along
    metrics = trainer.evaluate()
    assert metrics["eval_rewards/margins"] > 0 and metrics["eval_aux_loss"] > 0 and "eval_ntp_loss" in metrics


def test_sync_ref_model_updates_the_frozen_copy(tmp_path):
    model = _model("p5")
    args = _args(tmp_path, max_steps=2, sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=1.0)
    trainer = build_dpo_trainer(model, _preferences(1), args)
    trainer.train()
    for policy, reference in zip(model.parameters(), trainer.ref_model.parameters(), strict=True):
        torch.testing.assert_close(policy.detach(), reference)
    assert _margin(model, trainer.ref_model, [_preferences(1)[0]]) == pytest.approx(0.0, abs=1e-5)


def test_precomputed_reference_log_probs_match_the_live_reference(tmp_path):
    model = _model("p5")
    data = _preferences(1, with_ntp_only_row=True)
    live = build_dpo_trainer(model, data, _args(tmp_path), sft_weight=0.1)
    frozen = live.ref_model
    trainer = build_dpo_trainer(model, data, _args(tmp_path, precompute_ref_log_probs=True), sft_weight=0.1)
    assert trainer.ref_model is None  # nothing kept in memory
    prepared = trainer.train_dataset
    for i in range(8):
        row = data[i]
        assert prepared[i]["ref_chosen_logps"] == pytest.approx(_logp(frozen, row["history"], row["chosen_items"]),
                                                                rel=1e-5)
        assert prepared[i]["ref_rejected_logps"] == pytest.approx(
            _logp(frozen, row["history"], row["rejected_items"]), rel=1e-5)
    _perturb(model)
    batch = _batch(trainer, 4)
    assert float(trainer.compute_loss(model, batch).detach()) == pytest.approx(
        _hand_dpo(model, frozen, [data[i] for i in range(4)], 0.3) + 0.1 * _hand_ntp(model, [data[i] for i in range(4)]),
        rel=1e-4)


@pytest.mark.parametrize("kind", ["onerec", "recgpt"])
def test_save_model_writes_a_complete_folder_that_from_pretrained_restores(tmp_path, kind):
    model = _model(kind)
    trainer = build_dpo_trainer(model, _preferences(1), _args(tmp_path, max_steps=2))
    trainer.train()
    folder = tmp_path / "aligned"
    trainer.save_model(str(folder))
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "catalog.safetensors", "dpo_config.json"} <= files
    assert "training_args.bin" not in files
    restored = type(model).from_pretrained(str(folder))
    history = ["i3", "i4"]
    assert _logp(restored, history, ["i0"]) == pytest.approx(_logp(model, history, ["i0"]), abs=1e-5)
    assert _logp(restored, history, ["i0"]) != pytest.approx(_logp(trainer.ref_model, history, ["i0"]), abs=1e-5)
    # same items in the same order; scores equal up to float summation order (a reload may reorder the MoE sums)
    restored_recs, model_recs = restored.recommend([history], k=3)[0], model.recommend([history], k=3)[0]
    assert [item for item, _ in restored_recs] == [item for item, _ in model_recs]
    assert [score for _, score in restored_recs] == pytest.approx([score for _, score in model_recs], abs=1e-5)
    if kind == "onerec":
        assert "item_tokenizer" in files and restored.item_ids == model.item_ids
    # the trained model object carries no patched forward: a deep copy runs its own weights
    clone = copy.deepcopy(model)
    _perturb(clone, scale=0.2)
    assert _logp(clone, history, ["i0"]) != pytest.approx(_logp(model, history, ["i0"]), abs=1e-6)


def test_bad_inputs_raise_clear_errors(tmp_path):
    p5, recgpt = _model("p5"), _model("recgpt")
    args = _args(tmp_path)
    with pytest.raises(ValueError, match="chosen_items"):
        build_dpo_trainer(p5, _preferences(1).remove_columns("chosen_items"), args)
    with pytest.raises(ValueError, match="target_items"):
        build_dpo_trainer(p5, _preferences(1).remove_columns("target_items"), args, sft_weight=1.0)
    unknown = Dataset.from_list([{"history": ["i1"], "chosen_items": ["nope"], "rejected_items": ["i2"]}])
    with pytest.raises(ValueError, match="row 0: `chosen_items` holds item id 'nope'"):
        build_dpo_trainer(p5, unknown, args)
    unpaired = Dataset.from_list([{"history": ["i1"], "chosen_items": ["i3"], "rejected_items": []}])
    with pytest.raises(ValueError, match="both be non-empty"):
        build_dpo_trainer(p5, unpaired, args)
    with pytest.raises(ValueError, match="exactly 1 item"):
        build_dpo_trainer(recgpt, _preferences(2), args)
    with pytest.raises(ValueError, match="no usable row"):
        build_dpo_trainer(p5, Dataset.from_list([{"history": ["i1"], "chosen_items": [], "rejected_items": []}]), args)
    with pytest.raises(ValueError, match="sft_weight"):
        build_dpo_trainer(p5, _preferences(1), args, sft_weight=-1.0)
    with pytest.raises(ValueError, match="router_aux_loss_coef"):
        build_dpo_trainer(p5, _preferences(1), _args(tmp_path, router_aux_loss_coef=0.1))
    with pytest.raises(ValueError, match="peft_config"):
        build_dpo_trainer(p5, _preferences(1), args, peft_config=object())
    with pytest.raises(TypeError, match="supports P5"):
        build_dpo_trainer(torch.nn.Linear(2, 2), _preferences(1), args)


# ------------------------------------------------------------------------------------------------- BIGRec
TITLES = ["Red Lipstick", "Blue Nail Polish", "Green Face Mask", "Rose Shampoo", "Lavender Soap", "Mint Toothpaste"]
BIGREC_IDS = [f"b{j}" for j in range(len(TITLES))]


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    """A tiny random Llama + a byte-level BPE tokenizer trained on the prompt text and titles, saved offline."""
    from tests.llm_helpers import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), TITLES)


def _bigrec(llama_folder, **overrides):
    from tests.llm_helpers import tiny_bigrec

    return tiny_bigrec(llama_folder, BIGREC_IDS, TITLES, **overrides)


def _bigrec_preferences(model) -> Dataset:
    """History [b0, b1] -> prefer b2 over b5; [b3] -> prefer b4 over b0 (TRL's string columns)."""
    from genrec.models.bigrec.prompts import format_response

    rows = []
    for history, chosen, rejected in ((["b0", "b1"], 2, 5), (["b3"], 4, 0)):
        rows.append({"history": history, "chosen_items": [BIGREC_IDS[chosen]], "rejected_items": [BIGREC_IDS[rejected]],
                     "prompt": model.prompts([history])[0], "chosen": format_response(TITLES[chosen]),
                     "rejected": format_response(TITLES[rejected])})
    rows.append({"history": ["b1"], "chosen_items": [], "rejected_items": [], "prompt": model.prompts([["b1"]])[0],
                 "chosen": "", "rejected": ""})  # no pair: skipped (BIGRec has no next-token term)
    return Dataset.from_list(rows * 2)


def _completion_logp(lm, tokenizer, prompt, completion):
    """Sum of the completion tokens' log-probabilities (completion + eos), as TRL tokenizes them."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(prompt_ids, full)) if a != b), len(prompt_ids))
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([full])).logits[0].float()
    return float(sum(logits[j - 1].log_softmax(-1)[full[j]] for j in range(start, len(full))))


def test_bigrec_dpo_through_trl_matches_hand_computation_trains_and_saves(tmp_path, llama_folder):
    from genrec.models.bigrec import BIGRecForCausalLM

    model = _bigrec(llama_folder)
    data = _bigrec_preferences(model)
    args = _args(tmp_path, per_device_train_batch_size=2, max_steps=10, learning_rate=2e-2, beta=0.5)
    trainer = build_dpo_trainer(model, data, args)
    assert isinstance(trainer, BIGRecDPOTrainer) and len(trainer.train_dataset) == 4  # the 2 pair-less rows skipped
    lm = model.llm
    assert "ref" in lm.peft_config  # TRL's frozen copy of the existing adapter is the reference
    # move the trained adapter away from the reference; the reference (= the fresh adapter, B = 0) is the base LM
    with torch.no_grad():
        for name, parameter in lm.named_parameters():
            if "lora_B.default" in name:
                parameter.normal_(0.0, 0.05)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    loss = float(trainer.compute_loss(lm, batch).detach())
    expected = []
    for row in (data[0], data[1]):
        pc = _completion_logp(lm, model.tokenizer, row["prompt"], row["chosen"])
        pr = _completion_logp(lm, model.tokenizer, row["prompt"], row["rejected"])
        with lm.disable_adapter():
            rc = _completion_logp(lm, model.tokenizer, row["prompt"], row["chosen"])
            rr = _completion_logp(lm, model.tokenizer, row["prompt"], row["rejected"])
        expected.append(-F.logsigmoid(torch.tensor(0.5 * ((pc - rc) - (pr - rr)))).item())
    assert loss == pytest.approx(sum(expected) / 2, rel=1e-4)
    trainer.train()
    logs = [record for record in trainer.state.log_history if "loss" in record]
    first_margin, last_margin = logs[0]["rewards/margins"], logs[-1]["rewards/margins"]
    assert last_margin > first_margin and logs[-1]["rewards/accuracies"] == 1.0
    assert model.llm is lm  # the BIGRec wrapper holds the trained LM
    folder = tmp_path / "bigrec-dpo"
    trainer.save_model(str(folder))
    assert (folder / "adapter").is_dir() and not (folder / "adapter" / "ref").exists()
    restored = BIGRecForCausalLM.from_pretrained(str(folder))
    prompt = data[0]["prompt"]
    assert _completion_logp(restored.llm, restored.tokenizer, prompt, data[0]["chosen"]) == pytest.approx(
        _completion_logp(lm, model.tokenizer, prompt, data[0]["chosen"]), abs=1e-4)
    merged = model.merge_and_unload()
    assert _completion_logp(merged, model.tokenizer, prompt, data[0]["chosen"]) == pytest.approx(
        _completion_logp(restored.llm, restored.tokenizer, prompt, data[0]["chosen"]), abs=1e-4)


def test_bigrec_new_lora_adapter_from_peft_config(tmp_path, llama_folder):
    from peft import LoraConfig, PeftModel

    model = _bigrec(llama_folder, use_lora=False)
    base = model.llm
    config = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    data = _bigrec_preferences(model)
    trainer = build_dpo_trainer(model, data, _args(tmp_path, per_device_train_batch_size=2, max_steps=3,
                                                   learning_rate=2e-2), peft_config=config)
    assert isinstance(model.llm, PeftModel) and model.config.use_lora and model.lm is base
    assert trainer.ref_model is None  # reference = adapters disabled
    before = _completion_logp(model.lm, model.tokenizer, data[0]["prompt"], data[0]["chosen"])
    trainer.train()
    after = _completion_logp(model.lm, model.tokenizer, data[0]["prompt"], data[0]["chosen"])
    assert after > before  # the chosen title became likelier
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        build_dpo_trainer(model, data, _args(tmp_path), peft_config=config)
    with pytest.raises(ValueError, match="sft_weight"):
        build_dpo_trainer(model, data, _args(tmp_path), sft_weight=1.0)
    assert math.isfinite(after)


def test_bigrec_full_fine_tuning_reference_is_a_real_copy_of_the_trained_lm(tmp_path, llama_folder):
    """Full fine-tuning: the reference is built from the LM's config + weights. TRL leaves its fused LM head on the
    trained LM instance; a second round's reference must still run its own (trained) weights, not the original's."""
    model = _bigrec(llama_folder, use_lora=False)
    data = _bigrec_preferences(model)
    args = _args(tmp_path, per_device_train_batch_size=2, max_steps=2, learning_rate=2e-2)
    first = build_dpo_trainer(model, data, args)
    assert first.ref_model is not model.llm and not any(p.requires_grad for p in first.ref_model.parameters())
    prompt, chosen = data[0]["prompt"], data[0]["chosen"]
    before = _completion_logp(model.llm, model.tokenizer, prompt, chosen)
    assert _completion_logp(first.ref_model, model.tokenizer, prompt, chosen) == pytest.approx(before, abs=1e-5)
    first.train()
    trained = _completion_logp(model.llm, model.tokenizer, prompt, chosen)
    assert trained != pytest.approx(before, abs=1e-4)
    second = build_dpo_trainer(model, data, args)  # the next IPA round: reference = the trained LM, frozen
    reference = second.ref_model
    assert _completion_logp(reference, model.tokenizer, prompt, chosen) == pytest.approx(trained, abs=1e-5)
    with torch.no_grad():  # the policy moves on; the reference's plain forward must not follow it
        for parameter in model.llm.parameters():
            parameter.add_(0.05)
    assert _completion_logp(reference, model.tokenizer, prompt, chosen) == pytest.approx(trained, abs=1e-5)
