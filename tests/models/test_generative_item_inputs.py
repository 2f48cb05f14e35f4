"""Item-level encoder inputs (``input_granularity="item"``) of P5 / OneRec and the ``random_cut`` training targets.

Tiny configs on CPU: one encoder position per history item, the pooled-code embedding against a hand computation,
falling loss, save -> load -> the same scores, the one-window-per-user sampler, and a full ``genrec train`` run.
"""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import genrec.models.onerec  # noqa: F401  (registers the Auto classes)
import genrec.models.p5  # noqa: F401
from genrec.data.datasets import OneWindowPerUserSampler, next_item_windows
from genrec.models.generative import GenerativeT5Config, build_generative_training_data
from genrec.models.onerec import OneRecForConditionalGeneration
from genrec.models.p5 import P5ForConditionalGeneration
from tests.models.item_layout_helpers import MODELS, NUM_ITEMS, VECTOR_DIM, toy_run_values

TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0,
        "max_history_items": 6, "num_beams": 6, "input_granularity": "item"}



def _vectors():
    return np.random.default_rng(0).normal(size=(NUM_ITEMS, VECTOR_DIM)).astype(np.float32)


def _model(name, item_tokenizer, vectors=True, **overrides):
    model_class, extra = MODELS[name]
    torch.manual_seed(0)
    return model_class.from_item_tokenizer(item_tokenizer, item_vector_table=_vectors() if vectors else None,
                                           **{**TINY, **extra, **overrides})


def _batch(model, size=8):
    rng = random.Random(0)
    sequences = [[f"i{rng.randrange(NUM_ITEMS)}" for _ in range(6)] for _ in range(size)]
    dataset, collator = build_generative_training_data(model, sequences, model.item_index, seed=0)
    return collator([dataset[i] for i in range(size)])


@pytest.mark.parametrize("name", list(MODELS))
def test_one_encoder_position_per_history_item(name, item_tokenizer):
    model = _model(name, item_tokenizer)
    token_model = _model(name, item_tokenizer, vectors=False, input_granularity="token")
    vocab = model.config.vocab_size
    ids = model.encode_history([3, 7, 11])
    assert [t - vocab for t in ids if t >= vocab] == [3, 7, 11]  # the items, oldest first, one id each
    items_in_token_layout = sum(len(model.item_tokens(r)) for r in (3, 7, 11))
    # every code token (and P5's 2 separators) becomes one position per item
    assert len(token_model.encode_history([3, 7, 11])) - len(ids) == items_in_token_layout - 3 + (2 if name == "p5" else 0)
    positions = model.item_positions(torch.tensor([ids]))[0].tolist()
    assert [p for t, p in zip(ids, positions) if t >= vocab] == [1, 2, 3]
    assert all(p == 0 for t, p in zip(ids, positions) if t < vocab)
    # labels stay code tokens
    example = model.example_encoder().training_example([3, 7], [11, 12], random.Random(0))
    assert example["labels"][: len(model.item_tokens(11))] == model.item_tokens(11)
    # display: item positions expand back to their code tokens
    expanded = [token for t in ids for token in (model.item_tokens(t - vocab) if t >= vocab else [t])]
    assert model.expand_item_inputs(ids) == expanded
    if name == "onerec":  # same vocabulary: the token layout itself
        assert expanded == token_model.encode_history([3, 7, 11])


def test_item_embedding_is_pooled_shared_codes_plus_projected_vector(item_tokenizer):
    model = _model("onerec", item_tokenizer).eval()
    vocab = model.config.vocab_size
    input_ids = torch.tensor([[vocab + 4, vocab + 9, model.config.eos_token_id]])
    embeds = model.embed_item_inputs(input_ids)  # (1, 3, d)
    for position, row in ((0, 4), (1, 9)):
        codes = torch.tensor(model.item_tokens(row))
        expected = model.item_code_norm(model.shared(codes).mean(0)) + model.item_vector_norm(
            model.item_vector_proj(torch.from_numpy(_vectors()[row])))
        torch.testing.assert_close(embeds[0, position], expected)
    torch.testing.assert_close(embeds[0, 2], model.shared.weight[model.config.eos_token_id])


@pytest.mark.parametrize("name", list(MODELS))
def test_item_level_loss_falls_and_save_load_gives_the_same_scores(name, item_tokenizer, tmp_path):
    model = _model(name, item_tokenizer)
    batch = _batch(model)
    assert batch["input_ids"].max() >= model.config.vocab_size  # item positions reach the model as such
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(12):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses
    assert model.item_vector_proj.weight.grad is not None  # the text projection is trained
    model.eval()
    histories = [["i1", "i2", "i3"], ["i5"], ["i9", "i10"]]
    scores = model.score_histories(histories)
    model.save_pretrained(tmp_path / name)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / name).eval()
    assert isinstance(loaded, type(model)) and loaded.config.input_granularity == "item"
    assert loaded.config.item_vector_dim == VECTOR_DIM
    torch.testing.assert_close(loaded.item_vector_table, model.item_vector_table)
    torch.testing.assert_close(loaded.score_histories(histories), scores)
    assert loaded.recommend(histories, k=4) == model.recommend(histories, k=4)


def test_config_checks_name_the_field(item_tokenizer):
    with pytest.raises(ValueError, match="`input_granularity`"):
        GenerativeT5Config(input_granularity="chunk")
    with pytest.raises(ValueError, match="`item_vectors`.*input_granularity"):
        GenerativeT5Config(item_vectors={"item_text": True})
    with pytest.raises(ValueError, match=r"`item_vectors` has unknown key\(s\) \['text'\]"):
        GenerativeT5Config(input_granularity="item", item_vectors={"text": True})
    with pytest.raises(ValueError, match="input_granularity"):
        _model("p5", item_tokenizer, input_granularity="token")  # vectors for a token-level model
    model = _model("p5", item_tokenizer)
    with pytest.raises(ValueError, match=r"shape \(3, 8\)"):
        model.set_item_vectors(np.zeros((3, VECTOR_DIM)))
    catalog = SimpleNamespace(item_ids=[f"i{n}" for n in range(NUM_ITEMS)], has_text=False)
    with pytest.raises(ValueError, match="no item text"):
        P5ForConditionalGeneration.from_dataset(catalog, {"u": ["i1", "i2"]}, item_tokenizer=item_tokenizer,
                                                **{**TINY, "item_vectors": {}})


def test_one_window_per_user_sampler():
    sequences = [["a", "b", "c", "d"], ["b", "c"], ["a", "c", "d"]]
    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    windows, users = next_item_windows(sequences, index, max_history=5, with_users=True)
    assert users.tolist() == [0, 0, 0, 1, 2, 2] and len(windows) == 6
    sampler = OneWindowPerUserSampler(users, seed=3)
    seen = set()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        picks = list(sampler)
        assert len(picks) == len(sampler) == 3 and sorted(users[picks].tolist()) == [0, 1, 2]  # one per user
        assert picks == list(sampler)  # a function of (seed, epoch): resumable, the same on every process
        seen.update(picks)
    assert seen == set(range(6))  # over epochs every window is drawn
    lengths = [len(history) for history, _ in windows]
    grouped = OneWindowPerUserSampler(users, seed=3, lengths=lengths, group_size=2)
    picks = list(grouped)
    assert [lengths[i] for i in picks] == sorted((lengths[i] for i in picks), reverse=True)
    with pytest.raises(ValueError, match="lengths"):
        OneWindowPerUserSampler(users, group_size=2)


def test_random_cut_is_refused_for_models_without_windows():
    from genrec.training import build_run_config

    with pytest.raises(ValueError, match="`training.train_targets`"):
        build_run_config({"model": {"type": "sasrec"}, "training": {"train_targets": "random_cut"}})
    with pytest.raises(ValueError, match="`training.train_targets`.*must be one of"):
        build_run_config({"model": {"type": "p5"}, "training": {"train_targets": "every"}})


@pytest.mark.parametrize("model_type", ["onerec", "p5"])
def test_item_level_random_cut_run_learns_the_toy_pattern(model_type, toy_dataset, tmp_path):
    """``genrec train`` end to end: item-level inputs with collaborative item vectors (the toy data has no text),
    one random cut per user per epoch, beam-search evaluation, checkpoint reload."""
    from genrec.training import build_run_config, run_training

    run = build_run_config(toy_run_values(model_type, toy_dataset))
    metrics = run_training(run, tmp_path / "run")
    assert metrics["train/num_examples"] == 48  # one window per user (48 toy users), not every window
    # chance is 10 / 24 = 0.42 for recall@10; the +1 pattern is learnable
    assert metrics["test/recall@10"] > 0.6, metrics
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "run" / "checkpoint")
    assert loaded.config.item_vector_dim == 4 and len(loaded.recommend([["1", "2", "3"]], k=5)[0]) == 5


def test_random_cut_resumed_mid_epoch_ends_with_the_same_weights(item_tokenizer, tmp_path):
    """Trainer checkpoint in the middle of an epoch, then ``resume_from_checkpoint``: the resumed run redraws that
    epoch's windows (the Trainer sets the sampler's epoch) and ends with the weights of the run never stopped."""
    from genrec.training import GenRecTrainingArguments
    from genrec.training.trainer import RecommendationTrainer

    rng = random.Random(1)
    sequences = [[f"i{rng.randrange(NUM_ITEMS)}" for _ in range(rng.randrange(3, 8))] for _ in range(40)]

    def train(output, resume_from=None):
        model = _model("onerec", item_tokenizer)
        dataset, collator = build_generative_training_data(model, sequences, model.item_index, seed=0)
        args = GenRecTrainingArguments(
            output_dir=str(output), seed=0, learning_rate=1e-2, per_device_train_batch_size=4, num_train_epochs=3,
            train_targets="random_cut", train_sampling_strategy="group_by_length", eval_strategy="no",
            save_strategy="steps", save_steps=15, logging_strategy="no", report_to="none", disable_tqdm=True)
        trainer = RecommendationTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        trainer.train(resume_from_checkpoint=resume_from)
        assert trainer.state.global_step == 30  # 40 users / batch 4 = 10 steps per epoch, not 1 per window
        return {key: value.detach().clone() for key, value in model.state_dict().items()}

    straight = train(tmp_path / "straight")
    resumed = train(tmp_path / "resumed", resume_from=str(tmp_path / "straight" / "checkpoint-15"))  # epoch 1.5
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, msg=key)


@pytest.mark.parametrize("collaborative_dims", [0, 2])
def test_from_dataset_builds_text_and_collaborative_item_vectors(item_tokenizer, monkeypatch, collaborative_dims):
    """``item_vectors`` as RecGPT's tokenizer section: the catalog text embedding (with the item tokenizer's encoder
    settings), plus spectral dimensions of the training histories."""
    from genrec.data.catalog import ItemCatalog
    from genrec.tokenization.collaborative import spectral_item_embeddings

    ids = [f"i{n}" for n in range(NUM_ITEMS)]
    catalog = ItemCatalog(ids, [{"title": f"item {n}"} for n in range(NUM_ITEMS)])
    text = np.random.default_rng(1).normal(size=(NUM_ITEMS, 6)).astype(np.float32)
    encoders = []
    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog",
                        lambda catalog, model_name=None, *args, **kwargs: encoders.append(model_name) or text)
    train = {"u1": ["i0", "i1", "i2"], "u2": ["i2", "i3", "i4"], "u3": ["i5", "i6", "i7"]}
    model = OneRecForConditionalGeneration.from_dataset(
        catalog, train, item_tokenizer=item_tokenizer, **{**TINY, **MODELS["onerec"][1]},
        item_tokenizer_config={"embedding_model": "my-encoder"},
        item_vectors={"collaborative_dims": collaborative_dims, "collaborative_window": 0})
    expected = text
    if collaborative_dims:
        expected = np.concatenate([text, spectral_item_embeddings(train.values(), ids, dim=2, window=0)], 1)
    assert encoders == ["my-encoder"] and model.config.item_vector_dim == expected.shape[1]
    torch.testing.assert_close(model.item_vector_table, torch.from_numpy(expected))
