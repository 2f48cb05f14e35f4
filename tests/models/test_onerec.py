"""OneRecForConditionalGeneration: tiny configs on CPU (MoE decoder, sessions, save/load, constrained decoding)."""

import random
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM

import genrec.models.onerec  # noqa: F401  (registers genrec-onerec with the Auto classes)
from genrec.data.datasets import (
    GenerativeRecDataset,
    Seq2SeqRecCollator,
    next_item_windows,
)
from genrec.models.generative import T5SparseMoeLayerFF, build_generative_training_data
from genrec.models.layers import MoeStatistics
from genrec.models.onerec import OneRecConfig, OneRecForConditionalGeneration
from genrec.tokenization import get_tokenizer_class

NUM_ITEMS = 30
TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0, "num_experts": 4,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "max_history_items": 6, "session_length": 3,
        "num_beams": 6}


@pytest.fixture
def model():
    """A fresh tiny model per test: tests train it and switch its mode in place, so a shared one made the
    results depend on which tests ran before."""
    catalog = SimpleNamespace(item_ids=[f"i{n}" for n in range(NUM_ITEMS)])
    item_tokenizer = get_tokenizer_class("random")(codebook_size=5, num_levels=3, seed=0).fit(catalog)
    torch.manual_seed(0)
    return OneRecForConditionalGeneration.from_item_tokenizer(item_tokenizer, **TINY)


def _batch(model, size=8):
    rng = random.Random(0)
    sequences = [[f"i{rng.randrange(NUM_ITEMS)}" for _ in range(6)] for _ in range(size)]
    dataset, collator = build_generative_training_data(model, sequences, model._item_index, seed=0)
    return collator([dataset[i] for i in range(size)])


def test_defaults_follow_onerec():
    config = OneRecConfig()
    assert config.ffn_type == "moe" and config.moe_layers == "decoder" and config.session_length == 5
    assert config.item_tokenizer_method == "rq-kmeans" and config.item_tokenizer_config["balanced"] is True
    with pytest.raises(ValueError, match="session_length"):
        OneRecConfig(session_length=0)


def test_session_examples_and_moe_decoder(model):
    encoder = model.example_encoder()
    example = encoder.training_example([1, 2], [3, 4, 5, 6], random.Random(0))
    # the encoder reads the history's codes (+ </s>); labels are the next session_length (=3) items' codes
    assert example["input_ids"] == model.item_tokens(1) + model.item_tokens(2) + [model.config.eos_token_id]
    assert example["labels"] == model.item_tokens(3) + model.item_tokens(4) + model.item_tokens(5)
    assert all(isinstance(b.layer[-1], T5SparseMoeLayerFF) for b in model.decoder.block)
    assert not any(isinstance(b.layer[-1], T5SparseMoeLayerFF) for b in model.encoder.block)
    positions = model.item_positions(torch.tensor([example["input_ids"]]))[0].tolist()
    assert positions == [1, 1, 1, 2, 2, 2, 0]
    windows = next_item_windows([["i0", "i1", "i2", "i3"]], model._item_index, max_history=6, num_targets=3)
    dataset = GenerativeRecDataset(windows, encoder)
    batch = Seq2SeqRecCollator(model.config.pad_token_id)([dataset[i] for i in range(3)])
    assert batch["labels"].shape == (3, 9) and int((batch["labels"][2] == -100).sum()) == 6  # last window: 1 item


def test_loss_falls_with_aux_loss(model):
    batch = _batch(model)
    model.train()
    out = model(**batch)
    assert out.logits.shape == (*batch["labels"].shape, model.config.vocab_size)
    assert out.expert_load.shape == (2, 4) and float(out.aux_loss.detach()) > 0
    torch.testing.assert_close(out.loss, out.lm_loss + out.aux_loss)
    first = float(out.loss.detach())
    statistics = MoeStatistics.attach(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(15):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.6 * first
    assert statistics.pop()["moe/load_balancing_loss"] >= 1.0 - 1e-4  # >= 1, equality when balanced
    statistics.detach()
    model.eval()


def test_sessions_are_distinct_catalog_items(model):
    model.eval()
    histories = [["i1", "i2", "i3"], ["i4"], ["i7", "i8"]]
    sessions = model.generate_sessions(histories, session_length=4)
    for session in sessions:
        ids = [item for item, _ in session]
        assert len(ids) == 4 and len(set(ids)) == 4 and all(item in model._item_index for item in ids)
    # slot 1 of a session is the top-1 next item
    top1 = model.recommend(histories, k=1, exclude_history=False)
    assert [s[0][0] for s in sessions] == [r[0][0] for r in top1]
    rows, _ = model.generate_session_rows([[0]], session_length=1)
    assert rows.shape == (1, 1)


def test_save_load_and_generate(model, tmp_path):
    model.eval()
    model.save_pretrained(tmp_path / "onerec")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "onerec"), OneRecConfig)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "onerec").eval()
    assert isinstance(loaded, OneRecForConditionalGeneration)
    assert (tmp_path / "onerec" / "README.md").read_text().count("experts") >= 1
    histories = [["i1", "i2"], ["i5"]]
    assert loaded.recommend(histories, k=5) == model.recommend(histories, k=5)
    input_ids, attention_mask = loaded.build_inputs([[1, 2], [5]])
    out = loaded.generate(input_ids, attention_mask=attention_mask, num_beams=5, num_return_sequences=5,
                          do_sample=False)
    assert (loaded.catalog.items_of(out[:, 1:]) >= 0).all()
    sampled = loaded.generate(input_ids, attention_mask=attention_mask, do_sample=True, top_k=1)
    assert (loaded.catalog.items_of(sampled[:, 1:]) >= 0).all()


@pytest.mark.parametrize("model_type", ["onerec", "p5"])
def test_run_training_writes_a_full_run_folder(model_type, toy_dataset, tmp_path):
    """genrec's training pipeline end to end on the toy data (next item = current + 1): item tokenizer fit on
    the training sequences, Trainer, MoE logging, beam-search full ranking, checkpoint with tokenizer + catalog."""
    import json

    from genrec.training import build_run_config, run_training

    model = {"type": model_type, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4,
             "dropout_rate": 0.0, "max_history_items": 5, "num_beams": 10, "ffn_type": "moe", "num_experts": 4,
             "item_tokenizer_method": "random", "item_tokenizer_config": {"codebook_size": 4, "num_levels": 3}}
    training = {"seed": 0, "learning_rate": 0.01, "per_device_train_batch_size": 16, "num_train_epochs": 12,
                "eval_strategy": "no", "logging_strategy": "epoch", "eval_ks": [5, 10],
                "early_stopping_patience": None, "report_to": "none", "disable_tqdm": True}
    run = build_run_config({"model": model, "data": {"dataset": toy_dataset}, "training": training})
    metrics = run_training(run, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint"
    assert {"README.md", "catalog.safetensors", "item_tokenizer", "tokenizer.json", "model.safetensors"} <= {
        p.name for p in checkpoint.iterdir()}
    assert metrics["model/type"] == model_type and metrics["model/code_length"] == 3
    # chance is 10 / 24 = 0.42 for recall@10; the +1 pattern is learnable in a few epochs
    assert metrics["test/recall@10"] > 0.6, metrics
    history = json.loads((tmp_path / "run" / "log_history.json").read_text())
    assert any("moe/aux_loss" in record for record in history)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
    assert len(loaded.recommend([["1", "2", "3"]], k=5)[0]) == 5
    # `genrec evaluate` reloads the checkpoint and reproduces the run's test numbers
    from genrec.training import evaluate_checkpoint

    again = evaluate_checkpoint(tmp_path / "run", toy_dataset, ks=(5, 10))
    assert again["test/recall@10"] == pytest.approx(metrics["test/recall@10"])


def _greedy_sessions_by_brute_force(model, histories, first_items, length):
    """Reference: each slot = the best non-repeated item after the session so far, scoring EVERY catalog item by
    teacher forcing (tests/decoding/helpers.brute_force with a decoder prefix)."""
    from tests.decoding.helpers import brute_force

    sequences = [model.item_tokens(row) for row in range(model.config.num_items)]
    input_ids, attention_mask = model.build_inputs(histories)
    sessions = [[int(first)] for first in first_items]
    scores = [[] for _ in histories]
    for _ in range(1, length):
        prefixes = [[t for row in session for t in model.item_tokens(row)] for session in sessions]
        banned = torch.zeros((len(histories), model.config.num_items), dtype=torch.bool)
        for b, session in enumerate(sessions):
            banned[b, session] = True
        expected = brute_force(model, input_ids, attention_mask, sequences, banned=banned, prefixes=prefixes)
        best = expected.max(1)
        for b in range(len(histories)):
            sessions[b].append(int(best.indices[b]))
            scores[b].append(float(best.values[b]))
    return sessions, scores


def test_session_continuation_equals_exhaustive_search_slot_by_slot(model):
    """With beams >= catalog size the search is exhaustive: every slot must be the brute-force best item given the
    history and the session so far, repeats banned (T5 fast path: the model is in eval mode)."""
    model.eval()
    histories = [[1, 2, 3], [4], [7, 8, 9, 10]]
    items, scores = model.generate_session_rows(histories, session_length=3, num_beams=NUM_ITEMS)
    sessions, expected_scores = _greedy_sessions_by_brute_force(model, histories, items[:, 0], 3)
    assert items.tolist() == sessions
    torch.testing.assert_close(scores[:, 1:], torch.tensor(expected_scores), atol=1e-4, rtol=1e-4)
    # one continuation slot through both decoders of beam_search: the T5 fast path (ragged-free here) and the
    # generic HF forward + cache (the MoE decoder layers run inside both)
    from genrec.decoding import beam_search

    input_ids, attention_mask = model.build_inputs(histories)
    prefix = torch.tensor([model.item_tokens(int(r)) for r in items[:, 0]])
    fast = beam_search(model, model.catalog, input_ids=input_ids, attention_mask=attention_mask, num_beams=8,
                       top_k=4, banned_items=items[:, :1], decoder_prefix=prefix)
    generic = beam_search(model, model.catalog, input_ids=input_ids, attention_mask=attention_mask, num_beams=8,
                          top_k=4, banned_items=items[:, :1], decoder_prefix=prefix, fast_model_path=False)
    assert torch.equal(fast[0], generic[0])
    torch.testing.assert_close(fast[1], generic[1], atol=1e-4, rtol=1e-4)


def test_candidate_sessions_start_with_the_top_n_items_and_batch_like_single_users(model):
    model.eval()
    histories = [["i1", "i2", "i3"], ["i4"], ["i7", "i8"]]
    candidates = model.generate_candidate_sessions(histories, num_sessions=4, session_length=3, num_beams=8)
    top = model.recommend(histories, k=4, num_beams=8, exclude_history=False)
    assert len(candidates) == 3
    for user, sessions in enumerate(candidates):
        assert len(sessions) == 4
        assert [session[0][0] for session in sessions] == [item for item, _ in top[user]]  # n-th best first item
        for session in sessions:
            ids = [item for item, _ in session]
            assert len(ids) == 3 and len(set(ids)) == 3 and all(item in model.item_index for item in ids)
            assert all(score <= 0.0 for _, score in session)
    # the (user, n) batch gives what each user gets alone; session 1 is generate_sessions' session
    alone = model.generate_candidate_sessions(histories[1:2], num_sessions=4, session_length=3, num_beams=8)
    assert [[i for i, _ in s] for s in alone[0]] == [[i for i, _ in s] for s in candidates[1]]
    greedy = model.generate_sessions(histories, session_length=3, num_beams=8)
    assert [[i for i, _ in s[0]] for s in candidates] == [[i for i, _ in s] for s in greedy]
    # exhaustive beams: the continuation of every candidate equals brute force after its forced first item
    rows = [model.item_rows(h) for h in histories]
    exhaustive = model.generate_candidate_sessions(histories[:1], num_sessions=3, session_length=2,
                                                   num_beams=NUM_ITEMS)
    firsts = [model.item_index[s[0][0]] for s in exhaustive[0]]
    expected, _ = _greedy_sessions_by_brute_force(model, rows[:1] * 3, torch.tensor(firsts), 2)
    assert [[model.item_index[i] for i, _ in s] for s in exhaustive[0]] == expected
    with pytest.raises(ValueError, match="num_sessions"):
        model.generate_candidate_sessions(histories, num_sessions=0)
    with pytest.raises(ValueError, match="not in the model's catalog"):
        model.generate_candidate_sessions([["nope"]], num_sessions=2)


def test_candidate_sessions_when_the_catalog_is_smaller_than_n_and_m():
    catalog = SimpleNamespace(item_ids=["a", "b", "c"])
    item_tokenizer = get_tokenizer_class("random")(codebook_size=2, num_levels=2, seed=0).fit(catalog)
    torch.manual_seed(0)
    small = OneRecForConditionalGeneration.from_item_tokenizer(item_tokenizer, **TINY).eval()
    sessions = small.generate_candidate_sessions([["a"]], num_sessions=5, session_length=4)[0]
    assert len(sessions) == 3  # one per distinct first item
    for session in sessions:
        assert sorted(item for item, _ in session) == ["a", "b", "c"]  # every item once, then the catalog is spent
