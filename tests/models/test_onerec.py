"""OneRecForConditionalGeneration: tiny configs on CPU (MoE decoder, sessions, save/load, constrained decoding)."""

import random
from types import SimpleNamespace

import pytest
import torch
from genrec.tokenization import get_tokenizer_class
from transformers import AutoConfig, AutoModelForSeq2SeqLM

import genrec.models.onerec  # noqa: F401  (registers genrec-onerec with the Auto classes)
from genrec.data.datasets import (
    GenerativeRecDataset,
    Seq2SeqRecCollator,
    next_item_windows,
)
from genrec.models.generative import T5SparseMoeLayerFF, build_generative_training_data
from genrec.models.onerec import OneRecConfig, OneRecForConditionalGeneration

NUM_ITEMS = 30
TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0, "num_experts": 4,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "max_history_items": 6, "session_length": 3,
        "num_beams": 6}


@pytest.fixture(scope="module")
def model():
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(15):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.6 * first
    assert model.pop_moe_stats()["moe/load_balancing_loss"] >= 1.0 - 1e-4  # >= 1, equality when balanced
    model.eval()


def test_sessions_are_distinct_catalog_items(model):
    model.eval()
    histories = [["i1", "i2", "i3"], ["i4"], ["i7", "i8"]]
    sessions = model.generate_sessions(histories, session_length=4)
    for session in sessions:
        ids = [item for item, _ in session]
        assert len(ids) == 4 and len(set(ids)) == 4 and all(item in model._item_index for item in ids)
    # slot 1 of a session is the top-1 next item
    top1 = model.recommend(histories, k=1)
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
