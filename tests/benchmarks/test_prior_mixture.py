"""benchmarks/prior_mixture.py: z-score mixing of a model with last-item text-kNN, weight chosen on validation."""

import json

import numpy as np
import pytest
import torch

from genrec.training import build_run_config, run_training
from tests.benchmark_helpers import load_benchmark


def test_zscore_standardises_finite_entries_and_keeps_minus_inf():
    zscore = load_benchmark("prior_mixture").zscore
    scores = torch.tensor([[1.0, 2.0, 3.0, float("-inf")], [5.0, 5.0, 5.0, 5.0]])
    out = zscore(scores)
    torch.testing.assert_close(out[0, :3], torch.tensor([-1.2247, 0.0, 1.2247]), atol=1e-4, rtol=0)
    assert out[0, 3] == float("-inf") and torch.equal(out[1], torch.zeros(4))


def test_sasrec_checkpoint_with_and_without_the_prior(toy_dataset, tmp_path, monkeypatch):
    vectors = np.random.default_rng(0).normal(size=(24, 8)).astype(np.float32)
    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog", lambda catalog, *a, **k: vectors)
    run = {"model": {"type": "sasrec", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
                     "max_position_embeddings": 8},
           "data": {"dataset": toy_dataset},
           "training": {"seed": 0, "learning_rate": 0.02, "per_device_train_batch_size": 16, "num_train_epochs": 2,
                        "eval_ks": [5, 10], "early_stopping_patience": None, "disable_tqdm": True,
                        "report_to": "none"}}
    metrics = run_training(build_run_config(run), tmp_path / "sasrec")
    result = tmp_path / "mix.json"
    module = load_benchmark("prior_mixture")
    assert module.main(["--checkpoints", str(tmp_path / "sasrec"), "--dataset", toy_dataset, "--weights", "0", "1",
                        "1000", "--result", str(result)]) == 0
    saved = json.loads(result.read_text())
    (row,) = saved["rows"].values()
    assert row["alone"]["ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-4)  # w = 0 IS the model
    by_weight = row["valid_ndcg@10_by_weight"]
    assert by_weight[str(float(row["chosen_weight"]))] == max(by_weight.values())
    # a huge weight ranks as text-kNN (the model only breaks its ties)
    assert set(by_weight) == {"0.0", "1.0", "1000.0"}
    with pytest.raises(SystemExit):
        module.main(["--checkpoints", str(tmp_path / "sasrec"), "--weights", "1", "2"])  # no 0: no "model alone"
