"""Every model with sparse MoE blocks logs the same MoE keys; the console prints one short line per record."""

import json
import re

import numpy as np
import pytest

from genrec.models.layers import MOE_LOG_KEYS
from genrec.training import build_run_config, run_training
from genrec.training.callbacks import format_log_line, most_and_least_loaded

TRAINING = {"seed": 0, "learning_rate": 0.01, "per_device_train_batch_size": 16, "num_train_epochs": 2,
            "eval_strategy": "epoch", "logging_steps": 2, "eval_ks": [5, 10], "early_stopping_patience": None,
            "report_to": "none", "disable_tqdm": True}
T5 = {"d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2, "dropout_rate": 0.0,
      "max_history_items": 5, "num_beams": 10, "ffn_type": "moe", "num_experts": 4, "num_experts_per_tok": 2,
      "item_tokenizer_method": "random", "item_tokenizer_config": {"codebook_size": 4, "num_levels": 3}}
MODELS = {
    "p5": {"type": "p5", **T5, "moe_layers": "all"},  # encoder and decoder: 2 sparse layers
    "onerec": {"type": "onerec", **T5},  # decoder only: 1 sparse layer
    "recgpt": {"type": "recgpt", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 32, "max_position_embeddings": 6, "ffn_type": "moe", "num_experts": 4,
               "num_experts_per_tok": 2, "tokenizer": {"num_chunks": 2, "levels": [4, 3], "epochs": 1}},
    "sasrec": {"type": "sasrec", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
               "max_position_embeddings": 6},
}
SPARSE_LAYERS = {"p5": 2, "onerec": 1, "recgpt": 2, "sasrec": 0}


def _moe_keys(record):
    return {key for key in record if key.startswith("moe/")}


def test_every_moe_model_logs_the_same_schema(toy_dataset, tmp_path, monkeypatch, capsys):
    # RecGPT reads item-text embeddings; the toy catalog has no text: random vectors instead of MiniLM
    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog",
                        lambda catalog, *args, **kwargs: np.random.default_rng(0).normal(
                            size=(len(catalog.item_ids), 8)).astype(np.float32))
    schemas = {}
    for name, model in MODELS.items():
        run = build_run_config({"model": model, "data": {"dataset": toy_dataset}, "training": TRAINING})
        run_training(run, tmp_path / name)
        history = json.loads((tmp_path / name / "log_history.json").read_text())
        training_records = [record for record in history if "loss" in record]
        assert len(training_records) >= 2, name
        load_keys = {f"moe/load/layer{i}/expert{j}" for i in range(SPARSE_LAYERS[name]) for j in range(4)}
        expected = set(MOE_LOG_KEYS) | load_keys if SPARSE_LAYERS[name] else set()
        for record in training_records:
            assert _moe_keys(record) == expected, (name, sorted(_moe_keys(record) ^ expected))
            for layer in range(SPARSE_LAYERS[name]):  # each layer's loads are shares of its assignments
                assert sum(record[f"moe/load/layer{layer}/expert{j}"] for j in range(4)) == pytest.approx(1.0)
        evaluations = [record for record in history if "eval_ndcg@10" in record]
        assert evaluations and all(not _moe_keys(record) for record in evaluations)  # eval forwards do not count
        assert all(0.0 <= record["eval_invalid_rate"] <= 1.0 for record in evaluations)
        log_file = (tmp_path / name / "train.log").read_text()
        if SPARSE_LAYERS[name]:  # the full record goes to the log file
            assert '"moe/load/layer0/expert3"' in log_file and '"moe/dropped_fraction"' in log_file
            schemas[name] = {re.sub(r"layer\d+", "layer{i}", key) for key in training_records[-1] if "moe/" in key}
        # the console: one short line per record, no dictionary dump
        printed = capsys.readouterr().out.splitlines()
        steps = [line for line in printed if line.startswith("step ")]
        assert len(steps) >= len(training_records) + len(evaluations), printed
        assert not any(line.lstrip().startswith("{") for line in printed), printed
        assert all(len(line) < 140 for line in steps), steps
        train_lines = [line for line in steps if "| loss " in line]
        assert train_lines and all((" moe aux " in line) == bool(SPARSE_LAYERS[name]) for line in train_lines)
        assert any("| valid R@5 " in line and " N@10 " in line and " invalid " in line for line in steps)
    assert schemas["p5"] == schemas["onerec"] == schemas["recgpt"]


def test_format_log_line_names_the_most_and_least_loaded_expert():
    record = {"loss": 2.5, "learning_rate": 0.001, "grad_norm": 0.5, "moe/aux_loss": 0.02,
              "moe/load/layer0/expert0": 0.25, "moe/load/layer0/expert1": 0.25,
              "moe/load/layer1/expert0": 0.1, "moe/load/layer1/expert1": 0.9, "moe/dropped_fraction": 0.0}
    assert most_and_least_loaded(record) == ((1, 1, pytest.approx(1.8)), (1, 0, pytest.approx(0.2)))
    line = format_log_line(record, step=4, max_steps=10, epoch=0.5)
    assert line == ("step 4/10 ep 0.50 | loss 2.5000 lr 1.00e-03 gnorm 0.500 | moe aux 0.0200 max 1.80 (L1 E1) "
                    "min 0.20 (L1 E0)")
    assert most_and_least_loaded({"loss": 1.0}) is None
    evaluation = {"eval_recall@10": 0.5, "eval_ndcg@10": 0.25, "eval_recall@5": 0.4, "eval_invalid_rate": 0.0,
                  "eval_runtime": 1.25, "epoch": 1.0}
    assert format_log_line(evaluation, step=8, max_steps=10, epoch=1.0) == (
        "step 8/10 ep 1.00 | valid R@5 0.4000 R@10 0.5000 N@10 0.2500 invalid 0.0000 (1.2s)")


def test_wandb_offline_run_carries_loss_validation_expert_load_and_invalid_rate(toy_dataset, tmp_path, monkeypatch):
    """report_to wandb (offline, as genrec defaults): the run's record file holds the keys the dashboards chart."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    training = {**TRAINING, "num_train_epochs": 1, "report_to": ["wandb"]}
    run = build_run_config({"model": MODELS["onerec"], "data": {"dataset": toy_dataset}, "training": training})
    run_training(run, tmp_path / "run")
    records = list((tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(records) == 1, list((tmp_path / "run").rglob("*"))[:20]
    content = records[0].read_bytes()
    for key in (b"train/loss", b"eval/ndcg@10", b"eval/invalid_rate", b"train/moe/aux_loss",
                b"train/moe/load/layer0/expert3", b"train/moe/dropped_fraction"):
        assert key in content, key
