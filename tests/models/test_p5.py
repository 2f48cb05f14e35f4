"""P5ForConditionalGeneration: tiny configs on CPU (shapes, training, save/load, cache, constrained decoding)."""

import random
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    T5Config,
    T5ForConditionalGeneration,
)

import genrec.models.p5  # noqa: F401  (registers genrec-p5 with the Auto classes)
from genrec.data.datasets import (
    GenerativeRecDataset,
    Seq2SeqRecCollator,
    next_item_windows,
)
from genrec.decoding import beam_search
from genrec.models.generative import T5SparseMoeLayerFF
from genrec.models.layers import MoeStatistics
from genrec.models.p5 import P5Config, P5ForConditionalGeneration
from genrec.models.p5.prompts import SEQUENTIAL_TEMPLATES
from genrec.tokenization import get_tokenizer_class

NUM_ITEMS = 40
TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0,
        "max_history_items": 6, "num_beams": 8, "num_candidates": 5}


@pytest.fixture(scope="module")
def item_tokenizer():
    catalog = SimpleNamespace(item_ids=[f"i{n}" for n in range(NUM_ITEMS)])
    return get_tokenizer_class("random")(codebook_size=6, num_levels=3, seed=0).fit(catalog)


def _model(item_tokenizer, **overrides):
    torch.manual_seed(0)
    return P5ForConditionalGeneration.from_item_tokenizer(item_tokenizer, **{**TINY, **overrides})


def _batch(model, size=8, seed=0):
    rng = random.Random(seed)
    sequences = [[f"i{rng.randrange(NUM_ITEMS)}" for _ in range(5)] for _ in range(size)]
    index = {f"i{n}": n for n in range(NUM_ITEMS)}
    windows = next_item_windows(sequences, index, max_history=model.config.max_history_items)
    dataset = GenerativeRecDataset(windows, model.example_encoder(), seed=seed)
    return Seq2SeqRecCollator(model.config.pad_token_id)([dataset[i] for i in range(size)])


def test_prompt_tokens_and_whole_word_positions(item_tokenizer):
    model = _model(item_tokenizer)
    ids = model.encode_history([3, 7, 11])
    text = model.tokenizer.decode(torch.tensor(ids))
    assert text.startswith("given the following purchase history of a user")
    assert ids[-1] == model.config.eos_token_id
    positions = model.item_positions(torch.tensor([ids]))[0].tolist()
    codes = [model.item_tokens(row) for row in (3, 7, 11)]
    # every token of the n-th item carries n; text and separators carry 0
    item_positions = [p for t, p in zip(ids, positions) if model.config.item_token_range[0] <= t]
    assert item_positions == [1] * len(codes[0]) + [2] * len(codes[1]) + [3] * len(codes[2])
    assert sum(1 for p in positions if p == 0) == len(ids) - sum(len(c) for c in codes)
    # the item tokens appear verbatim, in history order
    flat = [t for t in ids if t >= model.config.item_token_range[0]]
    assert flat == codes[0] + codes[1] + codes[2]
    assert len(SEQUENTIAL_TEMPLATES) >= 5


def test_shapes_and_loss_falls(item_tokenizer):
    model = _model(item_tokenizer)
    batch = _batch(model)
    out = model(**batch)
    assert out.logits.shape == (*batch["labels"].shape, model.config.vocab_size)
    assert out.expert_load is None and float(out.aux_loss) == 0.0
    torch.testing.assert_close(out.loss, out.lm_loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = float(out.loss.detach())
    for _ in range(15):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first
    # the whole-word embedding is trained (it starts at zero)
    assert model.item_position_embedding.weight.abs().sum() > 0


def test_moe_switch_adds_aux_loss_and_expert_load(item_tokenizer):
    model = _model(item_tokenizer, ffn_type="moe", moe_layers="all", num_experts=4, num_experts_per_tok=2)
    assert all(isinstance(b.layer[-1], T5SparseMoeLayerFF) for b in model.encoder.block + model.decoder.block)
    decoder_only = _model(item_tokenizer, ffn_type="moe", num_experts=4)
    assert not any(isinstance(b.layer[-1], T5SparseMoeLayerFF) for b in decoder_only.encoder.block)
    model.train()
    statistics = MoeStatistics.attach(model)
    out = model(**_batch(model))
    assert out.expert_load.shape == (4, 4)
    torch.testing.assert_close(out.expert_load.sum(-1), torch.ones(4))
    assert float(out.aux_loss.detach()) > 0
    torch.testing.assert_close(out.loss, out.lm_loss + out.aux_loss)
    stats = statistics.pop()  # the one MoE log schema, from the model's own sparse blocks
    assert statistics.num_layers == 4 and "moe/load/layer3/expert3" in stats
    assert stats["moe/aux_loss"] == pytest.approx(float(out.aux_loss.detach()), rel=1e-5)
    assert statistics.pop() == {}
    statistics.detach()


def test_config_validation():
    with pytest.raises(ValueError, match="ffn_type"):
        P5Config(ffn_type="sparse")
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        P5Config(num_experts=2, num_experts_per_tok=3)
    with pytest.raises(ValueError, match="direct_task_ratio"):
        P5Config(direct_task_ratio=1.5)
    with pytest.raises(ValueError, match="moe_layers"):
        P5Config(moe_layers="middle")


def test_cached_equals_uncached(item_tokenizer):
    model = _model(item_tokenizer, ffn_type="moe", num_experts=4).eval()
    input_ids, attention_mask = model.build_inputs([[1, 2, 3], [4]])
    decoder_input_ids = torch.tensor([[0] + model.item_tokens(5), [0] + model.item_tokens(9)])
    full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    cache, steps = None, []
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    for t in range(decoder_input_ids.shape[1]):
        out = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask,
                    decoder_input_ids=decoder_input_ids[:, t: t + 1], cache=cache, use_cache=True)
        cache = out.cache
        steps.append(out.logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_generate_and_beam_search_return_only_catalog_items(item_tokenizer):
    model = _model(item_tokenizer).eval()
    input_ids, attention_mask = model.build_inputs([[1, 2, 3], [4], [5, 6]])
    out = model.generate(input_ids, attention_mask=attention_mask, num_beams=6, num_return_sequences=6)
    rows = model.catalog.items_of(out[:, 1:])
    assert (rows >= 0).all() and out.shape[1] == 1 + item_tokenizer.code_length
    # the fast (T5) and generic beam-search paths agree (both see the whole-word embeddings)
    fast = beam_search(model, model.catalog, input_ids=input_ids, attention_mask=attention_mask, num_beams=6)
    slow = beam_search(model, model.catalog, input_ids=input_ids, attention_mask=attention_mask, num_beams=6,
                       fast_model_path=False)
    assert torch.equal(fast[0], slow[0])
    torch.testing.assert_close(fast[1], slow[1], atol=1e-4, rtol=1e-4)
    # HF beam search over the same catalog finds the same best item
    assert rows.view(3, 6)[:, 0].tolist() == fast[0][:, 0].tolist()


def test_recommend_contract_and_score(item_tokenizer):
    model = _model(item_tokenizer)
    result = model.recommend([["i1", "i2"], ["i3"]], k=5, exclude_history=False)
    assert len(result) == 2
    for pairs in result:
        assert len(pairs) == 5
        ids = [item for item, _ in pairs]
        scores = [score for _, score in pairs]
        assert len(set(ids)) == 5 and all(item in model._item_index for item in ids)
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    scores = model.score(torch.tensor([[0, 2, 3], [0, 0, 4]]))  # rows + 1, left-padded (SASRec layout)
    assert scores.shape == (2, NUM_ITEMS)
    top = scores[0].topk(5).indices.tolist()
    assert [model.item_tokenizer.item_ids[r] for r in top] == [item for item, _ in result[0]]
    assert int(torch.isfinite(scores).sum(1)[0]) == model.config.num_beams
    with pytest.raises(ValueError, match="history 0 .* non-empty"):  # genrec.models.histories' shared message
        model.recommend([[]], k=3)
    with pytest.raises(ValueError, match="'nope'"):
        model.recommend([["nope"]], k=3)


def test_recommend_caps_k_at_the_catalog_and_bounds_the_beam_rows(item_tokenizer, monkeypatch):
    import genrec.models.generative.modeling_generative as generative

    model = _model(item_tokenizer)
    with pytest.raises(ValueError, match=r"`k` \(1000000\) must be an integer in \[1, 40\]"):
        model.recommend([["i1"]], k=1_000_000)  # used to ask beam search for a million beams
    histories = [["i1", "i2"], ["i3"], ["i4", "i5", "i6"]]
    everything = model.recommend(histories, k=NUM_ITEMS, exclude_history=False)
    assert [len(pairs) for pairs in everything] == [NUM_ITEMS] * 3
    assert model.recommend(histories, k=5, num_beams=1_000_000) == model.recommend(histories, k=5, num_beams=NUM_ITEMS)
    calls = []
    original = beam_search

    def counting_beam_search(*args, **kwargs):
        calls.append((kwargs["input_ids"].shape[0], kwargs["num_beams"]))
        return original(*args, **kwargs)

    monkeypatch.setattr("genrec.decoding.beam_search", counting_beam_search)
    monkeypatch.setattr(generative, "MAX_BEAM_ROWS", 2 * NUM_ITEMS)  # two users per beam-search call
    items, scores = model.recommend_rows([[1]], 3 * NUM_ITEMS)  # rows API: columns past the catalog are "no item"
    assert calls[-1] == (1, NUM_ITEMS) and items.shape == (1, 3 * NUM_ITEMS)
    assert sorted(items[0, :NUM_ITEMS].tolist()) == list(range(NUM_ITEMS)) and (items[0, NUM_ITEMS:] == -1).all()
    assert torch.isinf(scores[0, NUM_ITEMS:]).all()
    calls.clear()
    grouped = model.recommend(histories, k=NUM_ITEMS, exclude_history=False)
    assert calls == [(2, NUM_ITEMS), (1, NUM_ITEMS)]
    for got, want in zip(grouped, everything):  # same items; scores up to float noise of other batch shapes
        assert [item for item, _ in got] == [item for item, _ in want]
        assert [score for _, score in got] == pytest.approx([score for _, score in want], abs=1e-5)


def test_recommend_can_exclude_the_history(item_tokenizer):
    model = _model(item_tokenizer)
    history = [f"i{n}" for n in range(NUM_ITEMS - 2)]
    result = model.recommend([history], k=5, exclude_history=True)[0]
    assert sorted(item for item, _ in result) == [f"i{NUM_ITEMS - 2}", f"i{NUM_ITEMS - 1}"]
    assert len(model.recommend([history], k=5, exclude_history=False)[0]) == 5


def test_direct_recommendation_ranks_only_candidates(item_tokenizer):
    model = _model(item_tokenizer, direct_task_ratio=1.0)
    example = model.example_encoder().training_example([1, 2], [7], random.Random(0))
    positions = model.item_positions(torch.tensor([example["input_ids"]]))[0]
    assert int(positions.max()) == 2 + model.config.num_candidates  # history items, then the candidates
    assert example["labels"] == model.item_tokens(7)
    result = model.recommend([["i1", "i2"]], k=3, candidates=[["i5", "i9", "i30", "i31"]])
    assert {item for item, _ in result[0]} <= {"i5", "i9", "i30", "i31"} and len(result[0]) == 3


def test_save_load_auto_classes(item_tokenizer, tmp_path):
    model = _model(item_tokenizer, ffn_type="moe", num_experts=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = _batch(model)
    for _ in range(3):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(tmp_path / "p5")
    files = {p.name for p in (tmp_path / "p5").iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "catalog.safetensors", "item_tokenizer",
            "tokenizer.json"} <= files
    assert "genrec-p5" in (tmp_path / "p5" / "README.md").read_text()
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "p5"), P5Config)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "p5").eval()
    assert isinstance(loaded, P5ForConditionalGeneration)
    assert loaded.item_ids == model.item_ids
    torch.testing.assert_close(loaded.item_position_embedding.weight, model.item_position_embedding.weight)
    input_ids, _ = model.build_inputs([[1, 2, 3]])
    torch.testing.assert_close(loaded.build_inputs([[1, 2, 3]])[0], input_ids)
    start = torch.zeros((1, 1), dtype=torch.long)
    torch.testing.assert_close(loaded(input_ids=input_ids, decoder_input_ids=start).logits,
                               model(input_ids=input_ids, decoder_input_ids=start).logits)
    assert loaded.recommend([["i1", "i2"]], k=4) == model.recommend([["i1", "i2"]], k=4)


def test_load_refuses_item_tokenizer_and_catalog_from_another_checkpoint(item_tokenizer, tmp_path):
    import copy
    import shutil

    other_tokenizer = copy.deepcopy(item_tokenizer)  # same vocabulary, items i0 and i1 trade codes
    codes = other_tokenizer.codes.copy()
    codes[[0, 1]] = codes[[1, 0]]
    other_tokenizer._set_codes(codes, other_tokenizer.codebook_sizes)
    model = _model(item_tokenizer)
    model.save_pretrained(tmp_path / "a")
    # "another checkpoint": same text tokenizer
    model.set_catalog(other_tokenizer.item_ids, item_tokenizer=other_tokenizer, tokenizer=model.tokenizer)
    model.save_pretrained(tmp_path / "b")
    # b's item tokenizer and catalog agree with each other and with the text tokenizer, not with a's weights
    shutil.rmtree(tmp_path / "a" / "item_tokenizer")
    shutil.copytree(tmp_path / "b" / "item_tokenizer", tmp_path / "a" / "item_tokenizer")
    shutil.copy(tmp_path / "b" / "catalog.safetensors", tmp_path / "a" / "catalog.safetensors")
    with pytest.raises(ValueError,
                       match=r"item_tokenizer/, catalog.safetensors, item_ids.json and the tokenizer files do not belong"):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "a")
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "b").item_tokenizer.codes.tolist() == codes.tolist()


def test_backbone_from_t5_folder(item_tokenizer, tmp_path):
    """``backbone`` loads T5 weights + tokenizer (the code path a Hub id such as t5-small takes)."""
    donor = _model(item_tokenizer)
    torch.manual_seed(1)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=300, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                             num_heads=4, decoder_start_token_id=0))
    t5.save_pretrained(tmp_path / "t5")
    donor.tokenizer.save_pretrained(tmp_path / "t5")  # any tokenizer; the item tokens are re-added (no-ops)
    model = P5ForConditionalGeneration.from_item_tokenizer(item_tokenizer, backbone=str(tmp_path / "t5"))
    assert model.config.d_model == 32 and model.config.vocab_size == 300
    torch.testing.assert_close(model.encoder.block[1].layer[0].SelfAttention.q.weight,
                               t5.encoder.block[1].layer[0].SelfAttention.q.weight)
    torch.testing.assert_close(model.shared.weight, t5.shared.weight)
    assert len(model.recommend([["i1"]], k=3)[0]) == 3


def test_datasets_windows_and_collator():
    index = {"a": 0, "b": 1, "c": 2}
    assert next_item_windows([["a", "b", "c"]], index, max_history=5, num_targets=2) == [([0], [1, 2]), ([0, 1], [2])]
    assert next_item_windows([["a", "b", "c"]], index, max_history=1) == [([0], [1]), ([1], [2])]
    with pytest.raises(ValueError, match="'z'"):
        next_item_windows([["a", "z"]], index, max_history=2)
    batch = Seq2SeqRecCollator(pad_token_id=0)([{"input_ids": [5, 6, 1], "labels": [7, 8]},
                                                {"input_ids": [9, 1], "labels": [7, 8, 7, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 1], [9, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 8, -100, -100], [7, 8, 7, 9]]


def test_prompt_vocabulary_is_the_same_in_every_process(item_tokenizer):
    # tokenizers' WordPiece trainer broke merge ties in hash-map order: 211-214 text tokens from run to run
    import json
    import os
    import subprocess
    import sys

    from genrec.models.p5.modeling_p5 import build_prompt_tokenizer

    script = ("import json, sys; from types import SimpleNamespace; from genrec.tokenization import "
              "get_tokenizer_class; from genrec.models.p5.modeling_p5 import build_prompt_tokenizer; "
              f"c = SimpleNamespace(item_ids=[f'i{{n}}' for n in range({NUM_ITEMS})]); "
              "t = get_tokenizer_class('random')(codebook_size=6, num_levels=3, seed=0).fit(c); "
              "json.dump(build_prompt_tokenizer(t).get_vocab(), sys.stdout)")
    here = build_prompt_tokenizer(item_tokenizer).get_vocab()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == here
    model = _model(item_tokenizer)
    for template in SEQUENTIAL_TEMPLATES:  # every template word is one whole token: no <unk>, no split words
        text = template.replace("{history}", " ").replace("{candidates}", " ")
        assert model.tokenizer.unk_token not in model.tokenizer.tokenize(text)
        assert not any(token.startswith("##") for token in model.tokenizer.tokenize(text))
    with pytest.raises(ValueError, match="text_vocab_size"):
        build_prompt_tokenizer(item_tokenizer, text_vocab_size=50)


def test_prompt_templates_first_and_none(item_tokenizer):
    rng = random.Random(0)
    every = _model(item_tokenizer)
    first = _model(item_tokenizer, prompt_templates="first")
    bare = _model(item_tokenizer, prompt_templates="none")
    history = [3, 7, 11]
    # evaluation prompts: "first" is P5's template 0 (as "all" evaluates); "none" is the items' codes, then </s>
    assert first.encode_history(history) == every.encode_history(history)
    codes = [bare.item_tokens(row) for row in history]
    separator = bare.tokenizer(",", add_special_tokens=False).input_ids
    assert bare.encode_history(history) == codes[0] + separator + codes[1] + separator + codes[2] + [
        bare.config.eos_token_id]
    # training: "all" samples several templates, "first" only template 0, "none" never a word
    prompts = {name: {tuple(m.example_encoder().training_example(history, [5], rng)["input_ids"]) for _ in range(40)}
               for name, m in (("all", every), ("first", first), ("none", bare))}
    assert len(prompts["all"]) > 1
    assert prompts["first"] == {tuple(first.encode_history(history))}
    assert prompts["none"] == {tuple(bare.encode_history(history))}
    # the item layout without words: one encoder position per item, then </s>
    item_level = _model(item_tokenizer, prompt_templates="none", input_granularity="item")
    offset = item_level.item_input_offset
    assert item_level.encode_history(history) == [offset + 3, offset + 7, offset + 11, item_level.config.eos_token_id]
    with pytest.raises(ValueError, match="prompt_templates"):
        P5Config(prompt_templates="some")
    with pytest.raises(ValueError, match="direct_task_ratio"):
        P5Config(prompt_templates="none", direct_task_ratio=0.5)
