"""The item head of P5 / OneRec (``loss_type="items"``): an exact softmax over the catalog beside the token loss.

Tiny configs on CPU: the head's logit against a hand computation, label -> row mapping (and a bad label refused),
falling loss, exact ranking (``recommend`` = top-k of ``score``, history items banned), save -> load -> the same
scores, ``generate()`` still decoding catalog items, config checks, and a full ``genrec train`` run that learns.
"""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSeq2SeqLM

import genrec.models.onerec  # noqa: F401  (registers the Auto classes)
import genrec.models.p5  # noqa: F401
from genrec.models.generative import GenerativeT5Config, build_generative_training_data
from genrec.models.onerec import OneRecForConditionalGeneration
from tests.models.item_layout_helpers import MODELS, NUM_ITEMS, VECTOR_DIM, toy_run_values

TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0,
        "max_history_items": 6, "num_beams": 6, "input_granularity": "item", "loss_type": "items"}



def _model(name, item_tokenizer, vectors=True, **overrides):
    model_class, extra = MODELS[name]
    torch.manual_seed(0)
    table = np.random.default_rng(0).normal(size=(NUM_ITEMS, VECTOR_DIM)).astype(np.float32) if vectors else None
    return model_class.from_item_tokenizer(item_tokenizer, item_vector_table=table, **{**TINY, **extra, **overrides})


def _batch(model, size=8):
    rng = random.Random(0)
    sequences = [[f"i{rng.randrange(NUM_ITEMS)}" for _ in range(6)] for _ in range(size)]
    dataset, collator = build_generative_training_data(model, sequences, model.item_index, seed=0)
    return collator([dataset[i] for i in range(size)])


@pytest.mark.parametrize("vectors", [True, False])
def test_item_logit_is_mean_level_cosine_plus_text_cosine(item_tokenizer, vectors):
    model = _model("onerec", item_tokenizer, vectors=vectors)
    assert model.config.item_code_length == model.item_token_table.shape[1] == 3
    with torch.no_grad():  # move the queries off their identity start so each level differs
        model.item_code_queries.add_(0.3 * torch.randn_like(model.item_code_queries))
    states = torch.randn(2, 32)
    logits = model.item_head_logits(states)
    assert logits.shape == (2, NUM_ITEMS)
    row, user = 7, 1
    codes = model.item_token_table[row].tolist()
    expected = sum(F.cosine_similarity(states[user] @ model.item_code_queries[level], model.shared.weight[code], 0)
                   for level, code in enumerate(codes)) / len(codes)
    if vectors:
        item = model.item_vector_norm(model.item_vector_proj(model.item_vector_table[row]))
        expected = expected + F.cosine_similarity(states[user] @ model.item_text_query, item, 0)
    else:
        assert model.item_text_query is None
    torch.testing.assert_close(logits[user, row], expected / 0.07)


def test_labels_map_to_their_items_and_bad_labels_are_refused(item_tokenizer):
    model = _model("onerec", item_tokenizer)
    labels = torch.tensor([model.item_tokens(4) + model.item_tokens(9) + [1],
                           model.item_tokens(12) + [1, -100, -100, -100]])
    batch_index, positions, rows = model.label_items(labels)
    assert (batch_index.tolist(), positions.tolist(), rows.tolist()) == ([0, 0, 1], [0, 3, 0], [4, 9, 12])
    bad = torch.tensor([[model.item_tokens(4)[0], 1, -100]])
    with pytest.raises(ValueError, match="labels row 0 holds the codes"):
        model.label_items(bad)


@pytest.mark.parametrize("name", list(MODELS))
def test_item_head_trains_ranks_exactly_and_survives_save_load(name, item_tokenizer, tmp_path):
    model = _model(name, item_tokenizer)
    batch = _batch(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(12):
        output = model(**batch)
        assert output.item_loss is not None and output.lm_loss is not None
        torch.testing.assert_close(output.loss, output.lm_loss + output.item_loss + output.aux_loss)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(float(output.item_loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses
    assert model.item_code_queries.grad is not None and model.item_text_query.grad is not None
    model.eval()
    histories = [["i1", "i2", "i3"], ["i5"], ["i9", "i10"]]
    scores = model.score_histories(histories)
    assert torch.isfinite(scores).all()  # every item is ranked, not only a beam's
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(3))  # a log-softmax over the catalog
    recommended = model.recommend(histories, k=4, exclude_history=False)
    for user, row in enumerate(recommended):
        top = scores[user].topk(4).indices.tolist()
        assert [item for item, _ in row] == [model.item_ids[r] for r in top]
    excluded = model.recommend(histories, k=NUM_ITEMS)
    for history, row in zip(histories, excluded):
        assert not set(history) & {item for item, _ in row} and len(row) == NUM_ITEMS - len(set(history))
    model.save_pretrained(tmp_path / name)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / name).eval()
    assert loaded.has_item_head and loaded.config.loss_type == "items"
    torch.testing.assert_close(loaded.score_histories(histories), scores)
    # generate() still decodes code tokens of catalog items with the LM head the token loss trains
    input_ids, attention_mask = loaded.build_inputs([[1, 2, 3]])
    sequences = loaded.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=4,
                                num_return_sequences=4)
    assert (loaded.catalog.items_of(sequences[:, 1:]) >= 0).all()


def test_config_checks_name_the_field(item_tokenizer):
    with pytest.raises(ValueError, match="`loss_type`"):
        GenerativeT5Config(loss_type="item")
    with pytest.raises(ValueError, match='`loss_type: "items"` needs `input_granularity: "item"`'):
        GenerativeT5Config(loss_type="items")
    with pytest.raises(ValueError, match="`item_logit_temperature`"):
        GenerativeT5Config(input_granularity="item", loss_type="items", item_logit_temperature=0)
    tokenizer = item_tokenizer.build_hf_tokenizer()
    for levels in (0, 2):  # built by hand (not from_item_tokenizer) with too few queries: refused at binding
        config = OneRecForConditionalGeneration.config_class(**TINY, item_code_length=levels, vocab_size=len(tokenizer))
        with pytest.raises(ValueError, match=f"item head has queries for {levels} code levels"):
            OneRecForConditionalGeneration(config).set_catalog(list(item_tokenizer.item_ids),
                                                               item_tokenizer=item_tokenizer, tokenizer=tokenizer)


@pytest.mark.parametrize("model_type", ["onerec", "p5"])
def test_item_head_run_learns_the_toy_pattern(model_type, toy_dataset, tmp_path):
    """``genrec train`` end to end with ``loss_type: items``: the evaluator ranks the whole catalog by the head."""
    from genrec.training import build_run_config, run_training

    run = build_run_config(toy_run_values(model_type, toy_dataset, loss_type="items"))
    metrics = run_training(run, tmp_path / "run")
    # chance is 10 / 24 = 0.42 for recall@10; the +1 pattern is learnable
    assert metrics["test/recall@10"] > 0.6, metrics
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "run" / "checkpoint")
    assert loaded.has_item_head and len(loaded.recommend([["1", "2", "3"]], k=5)[0]) == 5


def test_text_prior_mixes_last_item_cosine_into_score_recommend_and_the_sweep(item_tokenizer):
    from genrec.training import RankingSet
    from genrec.training.trainer import tune_text_prior

    model = _model("onerec", item_tokenizer).eval()
    assert model.supports_text_prior and not _model("onerec", item_tokenizer, vectors=False).supports_text_prior
    history = torch.tensor([[0, 3, 7], [2, 5, 1]])  # left-padded rows + 1
    plain = model.score(history)
    model.config.text_prior_weight = 0.5
    mixed = model.score(history)
    vectors = F.normalize(model.item_vector_table, dim=-1)
    cosine = vectors[history[:, -1] - 1] @ vectors.T
    cosine[0, 6] = cosine[1, 0] = 0.0  # no prior for the last item itself
    torch.testing.assert_close(mixed, plain + 0.5 * cosine / 0.07)
    top = model.recommend([["i2", "i6"], ["i1", "i4", "i0"]], k=5, exclude_history=False)
    assert [[item for item, _ in row] for row in top] == [[model.item_ids[r] for r in row.topk(5).indices.tolist()]
                                                           for row in mixed]
    rng = np.random.default_rng(1)
    histories = [[int(r) for r in rng.integers(1, NUM_ITEMS + 1, size=rng.integers(1, 5))] for _ in range(30)]
    ranking = RankingSet(histories=histories, targets=torch.tensor(rng.integers(0, NUM_ITEMS, size=30)))
    weight, by_weight = tune_text_prior(model, ranking, [0, 1, 4], ks=(5, 10))
    assert weight == max(by_weight, key=lambda w: (by_weight[w]["ndcg@10"], -w)) == model.config.text_prior_weight
    with pytest.raises(ValueError, match="text_prior_weight"):
        GenerativeT5Config(text_prior_weight=1.0)  # beam search ranks only its beams: no prior


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("granularity", ["item", "token"])
def test_item_positions_can_count_from_the_most_recent_item(name, granularity, item_tokenizer):
    overrides = {"input_granularity": granularity, "loss_type": "codes"}
    first = _model(name, item_tokenizer, vectors=False, **overrides)
    last = _model(name, item_tokenizer, vectors=False, item_position_origin="last", **overrides)
    ids = torch.tensor([first.encode_history([3, 7, 11])])
    assert first.encode_history([3, 7, 11]) == last.encode_history([3, 7, 11])
    from_first, from_last = first.item_positions(ids)[0], last.item_positions(ids)[0]
    assert torch.equal(from_first == 0, from_last == 0)  # the same item tokens, text / separators stay 0
    numbered = from_first > 0
    assert torch.equal(from_last[numbered], 4 - from_first[numbered])  # 3 items: 1, 2, 3 -> 3, 2, 1
    with pytest.raises(ValueError, match="`item_position_origin`"):
        GenerativeT5Config(item_position_origin="middle")


@pytest.mark.parametrize("targets", ["first", "session"])
def test_item_loss_reads_the_next_item_or_every_session_item(targets, item_tokenizer):
    model = _model("onerec", item_tokenizer, item_loss_targets=targets).eval()  # session_length 2
    batch = _batch(model)
    output = model(**batch)
    batch_index, positions, rows = model.label_items(batch["labels"])
    assert (positions > 0).any()  # the windows have 2-item sessions
    if targets == "first":
        keep = positions == 0
        batch_index, positions, rows = batch_index[keep], positions[keep], rows[keep]
    states = output.decoder_hidden_states[-1][batch_index, positions]
    torch.testing.assert_close(output.item_loss, F.cross_entropy(model.item_head_logits(states), rows))
    with pytest.raises(ValueError, match="`item_loss_targets`"):
        GenerativeT5Config(item_loss_targets="all")
