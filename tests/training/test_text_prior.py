"""RecGPT's last-item text prior: the score mixture, its weight chosen on validation, and where it is wired in."""

import json

import numpy as np
import pytest
import torch

from genrec.models.recgpt import RecGPTConfig, RecGPTForCausalLM
from genrec.training import RankingSet, build_run_config, full_ranking_metrics, run_training
from genrec.training.trainer import tune_text_prior

TINY = dict(num_chunks=2, codebook_size=12, fsq_levels=[4, 3], text_embedding_dim=8, hidden_size=16,
            num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=6,
            hidden_dropout_prob=0.0, attention_dropout=0.0, input_granularity="item", loss_type="items",
            num_negatives=0, text_logits=True, logit_temperature=0.1)


def _model(num_items=12, **overrides):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    codes = np.stack([np.arange(num_items) % 12, (np.arange(num_items) * 5 + 1) % 12], 1)
    text = rng.normal(size=(num_items, 8)).astype(np.float32)
    return RecGPTForCausalLM(RecGPTConfig(**{**TINY, **overrides}), item_ids=[f"i{i}" for i in range(num_items)],
                             item_codes=codes, item_text_embeddings=text).eval()


def _ranking(model, users=40, seed=1):
    rng = np.random.default_rng(seed)
    histories = [list(rng.integers(1, model.num_items + 1, size=rng.integers(1, 6))) for _ in range(users)]
    return RankingSet(histories=[[int(r) for r in h] for h in histories],
                      targets=torch.tensor(rng.integers(0, model.num_items, size=users)))


def test_score_is_the_model_plus_weighted_last_item_cosine():
    model = _model()
    history = torch.tensor([[0, 3, 7], [2, 5, 1]])  # left-padded rows + 1
    plain = model.score(history)
    model.config.text_prior_weight = 0.5
    mixed = model.score(history)
    vectors = torch.nn.functional.normalize(model.catalog_text[1:], dim=-1)
    cosine = vectors[history[:, -1] - 1] @ vectors.T  # the last item's cosine to every item
    cosine[0, 6] = cosine[1, 0] = 0.0  # ... but none for the last item itself
    torch.testing.assert_close(mixed, plain + 0.5 * 2 * cosine / 0.1)  # C = 2 chunks, tau = 0.1
    # a huge weight ranks as last-item text-kNN: the last item's nearest neighbours first
    model.config.text_prior_weight = 1e6
    assert torch.equal(model.score(history).argsort(-1, descending=True)[:, :3],
                       cosine.argsort(-1, descending=True)[:, :3])


def test_tune_text_prior_matches_separate_evaluations_and_sets_the_best_weight():
    model = _model()
    ranking = _ranking(model)
    weights = [0, 0.3, 3.0]
    chosen, results = tune_text_prior(model, ranking, weights, metric="ndcg@10", ks=(5, 10), batch_size=7)
    for weight in weights:  # one network pass per batch gives exactly what a separate evaluation would
        model.config.text_prior_weight = weight
        separate = full_ranking_metrics(model, ranking, ks=(5, 10), batch_size=16)
        for key in ("recall@5", "ndcg@10"):
            assert results[weight][key] == pytest.approx(separate[key]), (weight, key)
    assert chosen == max(weights, key=lambda w: (results[w]["ndcg@10"], -w))
    assert results[0.3]["ndcg@10"] != results[0]["ndcg@10"] or results[3.0]["ndcg@10"] != results[0]["ndcg@10"]


def test_tune_text_prior_picks_the_prior_when_targets_are_the_last_items_neighbours():
    model = _model(num_items=60)
    vectors = torch.nn.functional.normalize(model.catalog_text[1:], dim=-1)
    neighbour = (vectors @ vectors.T).fill_diagonal_(-2).argmax(-1)  # each item's nearest other item
    rng = np.random.default_rng(3)
    histories = [[int(r) + 1 for r in rng.integers(0, model.num_items, size=3)] for _ in range(30)]
    ranking = RankingSet(histories=histories, targets=torch.stack([neighbour[h[-1] - 1] for h in histories]))
    chosen, results = tune_text_prior(model, ranking, [0, 100.0], ks=(10,))
    assert chosen == 100.0 and model.config.text_prior_weight == 100.0
    assert results[100.0]["ndcg@10"] > results[0]["ndcg@10"]


def test_bad_weights_and_models_are_refused():
    with pytest.raises(ValueError, match="text_prior_weight"):
        RecGPTConfig(**{**TINY, "text_prior_weight": -1})
    with pytest.raises(ValueError, match="input_granularity"):
        RecGPTConfig(**{**TINY, "input_granularity": "token", "text_logits": False, "text_prior_weight": 1.0})
    model = _model()
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        tune_text_prior(model, _ranking(model), [0, -1])
    with pytest.raises(ValueError, match="a text prior needs"):
        from genrec.models.popularity import PopularityConfig, PopularityModel

        tune_text_prior(PopularityModel(PopularityConfig(num_items=2), item_ids=["a", "b"], item_counts=[1.0, 2.0]),
                        _ranking(model), [0, 1])


def _recgpt_run(dataset, **training):
    return {"model": {"type": "recgpt", "input_granularity": "item", "loss_type": "items", "num_negatives": 0,
                      "text_logits": True, "logit_temperature": 0.1, "hidden_size": 16, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 6,
                      "tokenizer": {"num_chunks": 2, "levels": [4, 3], "epochs": 1}},
            "data": {"dataset": dataset},
            "training": {"seed": 0, "learning_rate": 0.01, "per_device_train_batch_size": 16, "num_train_epochs": 1,
                         "eval_ks": [5, 10], "early_stopping_patience": None, "report_to": "none",
                         "disable_tqdm": True, **training}}


def test_training_chooses_the_weight_on_validation_and_saves_it(toy_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog",
                        lambda catalog, *args, **kwargs: np.random.default_rng(0).normal(
                            size=(len(catalog.item_ids), 8)).astype(np.float32))
    metrics = run_training(build_run_config(_recgpt_run(toy_dataset, text_prior_weights=[0, 0.5, 2])), tmp_path / "r")
    by_weight = metrics["tune/valid/ndcg@10_by_text_prior_weight"]
    assert set(by_weight) == {"0.0", "0.5", "2.0"}
    chosen = metrics["tune/text_prior_weight"]
    assert by_weight[str(chosen)] == max(by_weight.values())
    assert metrics["valid/ndcg@10"] == pytest.approx(by_weight[str(chosen)])  # reported with the chosen weight
    saved = json.loads((tmp_path / "r" / "checkpoint" / "config.json").read_text())
    assert saved["text_prior_weight"] == chosen
    # genrec evaluate runs the same sweep on a saved checkpoint
    from genrec.training import evaluate_checkpoint

    again = evaluate_checkpoint(tmp_path / "r", toy_dataset, splits=("valid", "test"), ks=(5, 10),
                                text_prior_weights=[0, 0.5, 2])
    assert again["tune/text_prior_weight"] == chosen
    assert again["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"])


def test_text_prior_weights_need_an_item_layout_recgpt(toy_dataset):
    values = _recgpt_run(toy_dataset, text_prior_weights=[0, 1])
    values["model"] = {"type": "sasrec", "hidden_size": 16}
    with pytest.raises(ValueError, match="text_prior_weights"):
        build_run_config(values)
    with pytest.raises(ValueError, match="text_prior_weights"):
        build_run_config(_recgpt_run(toy_dataset, text_prior_weights=[]))
    with pytest.raises(ValueError, match="text_prior_weights"):
        build_run_config(_recgpt_run(toy_dataset, text_prior_weights=[1, -2]))
