"""RecGPT: hybrid attention mask, parallel code prediction, MoE switch, save/load, constrained generation."""

import itertools

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from genrec.data.catalog import ItemCatalog
from genrec.models.recgpt import RecGPTConfig, RecGPTForCausalLM, hybrid_attention_mask

TINY = dict(num_chunks=2, codebook_size=12, fsq_levels=[4, 3], text_embedding_dim=8, hidden_size=16,
            num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=6,
            hidden_dropout_prob=0.0, attention_dropout=0.0)
NUM_ITEMS = 10


def _catalog_arrays(n=NUM_ITEMS, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.stack([np.arange(n) % 12, (np.arange(n) * 5 + 1) % 12], 1)
    text = rng.normal(size=(n, 8)).astype(np.float32)
    return [f"i{j}" for j in range(n)], codes, text


def _model(**overrides):
    torch.manual_seed(0)
    ids, codes, text = _catalog_arrays()
    return RecGPTForCausalLM(RecGPTConfig(**{**TINY, **overrides}), item_ids=ids, item_codes=codes,
                             item_text_embeddings=text)


def _dense_reference_mask(item_mask, num_chunks):
    """The hybrid mask written out with loops: (i, c) sees (j, c') iff j <= i and item j is real (or itself)."""
    batch, n = item_mask.shape
    length = n * num_chunks
    mask = torch.zeros(batch, 1, length, length, dtype=torch.bool)
    for b in range(batch):
        for q in range(length):
            for k in range(length):
                same_or_earlier = k // num_chunks <= q // num_chunks
                mask[b, 0, q, k] = (same_or_earlier and bool(item_mask[b, k // num_chunks])) or q == k
    return mask


@pytest.mark.parametrize("num_chunks", [1, 2, 4])
def test_hybrid_mask_matches_dense_reference(num_chunks):
    item_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    torch.testing.assert_close(hybrid_attention_mask(item_mask, num_chunks), _dense_reference_mask(item_mask, num_chunks))


def test_sdpa_with_hybrid_mask_equals_explicit_masked_attention():
    torch.manual_seed(0)
    item_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    num_chunks, length = 3, 9
    query, key, value = torch.randn(3, 2, 2, length, 4).unbind(0)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value,
                                                           attn_mask=hybrid_attention_mask(item_mask, num_chunks))
    dense = _dense_reference_mask(item_mask, num_chunks)
    scores = (query @ key.transpose(-1, -2)) / 2.0
    expected = scores.masked_fill(~dense, float("-inf")).softmax(-1) @ value
    torch.testing.assert_close(out, expected)


def test_attention_is_bidirectional_within_item_and_causal_across_items():
    model = _model().eval()
    codes = torch.tensor([[[1, 2], [3, 4], [5, 6]]])
    text = torch.randn(1, 3, 8)
    base = model(item_codes=codes, item_text_embeddings=text).hidden_states
    later = codes.clone()
    later[0, 2, 1] = 7  # change item 2, chunk 1
    changed = model(item_codes=later, item_text_embeddings=text).hidden_states
    torch.testing.assert_close(changed[:, :2], base[:, :2])  # earlier items cannot see a later item
    assert not torch.allclose(changed[0, 2, 0], base[0, 2, 0])  # chunk 0 sees chunk 1 of its own item


def test_item_granularity_reads_one_causal_position_per_item():
    model = _model(input_granularity="item").eval()
    codes = torch.tensor([[[1, 2], [3, 4], [5, 6]]])
    text = torch.randn(1, 3, 8)
    base = model(item_codes=codes, item_text_embeddings=text)
    later = codes.clone()
    later[0, 2, 1] = 7
    changed = model(item_codes=later, item_text_embeddings=text)
    torch.testing.assert_close(changed.hidden_states[:, :2], base.hidden_states[:, :2])
    assert not torch.allclose(changed.logits, base.logits)
    # its text is read too: the whole embedding, not only the codes
    other_text = text.clone()
    other_text[0, 2] += 1.0
    assert not torch.allclose(model(item_codes=codes, item_text_embeddings=other_text).logits, base.logits)
    # the C code queries of a position are C linear heads over ONE state (identity at initialisation)
    fresh = _model(input_granularity="item")
    assert fresh.chunk_heads.shape == (2, 16, 16)
    torch.testing.assert_close(fresh.chunk_heads[1], torch.eye(16))
    assert _model().chunk_heads is None  # the paper's token layout is unchanged


@pytest.mark.parametrize("code_embedding_type", ["table", "digits", "both"])
def test_summed_code_vectors_equal_the_sum_of_the_lookups(code_embedding_type):
    table = _model(code_embedding_type=code_embedding_type).code_embeddings
    codes = torch.tensor([[[1, 2], [3, 11]], [[0, 0], [7, 5]]])
    torch.testing.assert_close(table.summed(codes), table(codes).sum(-2))


def test_tied_cosine_code_logits_match_hand_computation():
    model = _model(input_granularity="item", tie_code_embeddings=True, logit_temperature=0.1).eval()
    assert model.head is None and model.output_codes is model.code_embeddings
    out = model(input_ids=torch.tensor([[0, 1, 2]]), labels=torch.tensor([[-100, 3, 4]]))
    table = model.code_embeddings.weight()  # (C, K, H): the input code vectors
    expected = []
    for position, row in ((1, 3), (2, 4)):
        query = torch.einsum("h,chg->cg", out.hidden_states[0, position], model.chunk_heads)  # (C, H)
        cosine = torch.nn.functional.cosine_similarity(query[:, None], table, dim=-1)  # (C, K)
        logits = cosine / 0.1 + model.head_bias
        expected.append(torch.nn.functional.cross_entropy(logits, model.catalog_codes[row], reduction="none"))
        if position == 2:
            torch.testing.assert_close(out.logits[0], logits)
    torch.testing.assert_close(out.loss, torch.cat(expected).mean())
    # one table gets the gradient of both sides
    out.loss.backward()
    assert model.code_embeddings.table.weight.grad.abs().sum() > 0


def test_sampled_items_loss_masks_accidental_hits():
    torch.manual_seed(0)
    model = _model(input_granularity="item", loss_type="items", num_negatives=NUM_ITEMS - 1).eval()
    code_logits = torch.randn(2, 2, 12)
    rows = torch.tensor([3, 4])
    torch.manual_seed(1)
    sampled = model._item_softmax_loss(code_logits, rows)
    torch.manual_seed(1)
    negatives = torch.randint(0, NUM_ITEMS, (NUM_ITEMS - 1,))
    item = model.item_logits(code_logits) / 2  # (2, NUM_ITEMS)
    expected = []
    for n, row in enumerate(rows.tolist()):
        others = item[n, negatives].masked_fill(negatives == row, float("-inf"))
        expected.append(torch.logsumexp(torch.cat([item[n, row:row + 1], others]), 0) - item[n, row])
    torch.testing.assert_close(sampled, torch.stack(expected).mean())


def test_items_loss_is_catalog_cross_entropy_of_mean_code_logits():
    model = _model(input_granularity="item", loss_type="items", num_negatives=0).eval()
    out = model(input_ids=torch.tensor([[0, 1, 2]]), labels=torch.tensor([[-100, 3, 4]]))
    head = model.output_code_vectors()
    codes = model.catalog_codes[1:]
    expected = []
    for position, row in ((1, 3), (2, 4)):
        logits = torch.einsum("ch,ckh->ck", model.code_queries(out.hidden_states[0, position]), head) + model.head_bias
        item_logits = (logits[0, codes[:, 0]] + logits[1, codes[:, 1]]) / 2  # (num_items,)
        expected.append(torch.nn.functional.cross_entropy(item_logits[None], torch.tensor([row - 1])))
    torch.testing.assert_close(out.loss, torch.stack(expected).mean())
    # the ranking is still the exact sum of code log-probabilities, whatever the training loss
    scores = model.score(torch.tensor([[0, 1, 2]]))
    log_probs = out.logits.log_softmax(-1)
    torch.testing.assert_close(scores, log_probs[:, 0, codes[:, 0]] + log_probs[:, 1, codes[:, 1]])


def test_text_code_init_sets_output_vectors_to_projected_text_means():
    model = _model(code_init="text")
    codes, text = model.catalog_codes[1:], model.catalog_text[1:].view(NUM_ITEMS, 2, -1)
    table = model.output_codes.table.weight.view(2, 12, -1)
    for c in range(2):
        projected = text[:, c] @ model.text_proj[c]
        for code in codes[:, c].unique().tolist():
            direction = projected[codes[:, c] == code].mean(0)
            cosine = torch.nn.functional.cosine_similarity(table[c, code], direction, dim=0)
            assert float(cosine) > 0.9999
    assert not torch.allclose(_model().output_codes.table.weight, model.output_codes.table.weight)


def test_item_granularity_is_cheaper_per_history():
    """The item layout attends over n positions, the token layout over n * C (the point of the cheap path)."""
    calls = {}
    for granularity in ("token", "item"):
        model = _model(input_granularity=granularity).eval()
        seen = []
        handle = model.layers[0].attention.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].shape[1]))
        model(input_ids=torch.tensor([[1, 2, 3, 4, 5]]))
        handle.remove()
        calls[granularity] = seen[0]
    assert calls == {"token": 10, "item": 5}


def test_left_padding_does_not_change_the_prediction():
    model = _model().eval()
    short = model(input_ids=torch.tensor([[3, 4]])).logits
    padded = model(input_ids=torch.tensor([[0, 0, 3, 4]])).logits
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("input_granularity", ["token", "item"])
@pytest.mark.parametrize("ffn_type", ["dense", "moe"])
@pytest.mark.parametrize("code_embedding_type", ["table", "digits", "both"])
def test_shapes_and_loss_falls(ffn_type, code_embedding_type, input_granularity):
    model = _model(ffn_type=ffn_type, code_embedding_type=code_embedding_type, input_granularity=input_granularity)
    input_ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    labels = torch.tensor([[-100, 3, 4, 5], [5, 6, 7, 8]])
    out = model(input_ids=input_ids, labels=labels)
    assert out.logits.shape == (2, 2, 12)
    assert out.hidden_states.shape == ((2, 4, 2, 16) if input_granularity == "token" else (2, 4, 16))
    if ffn_type == "moe":  # (layers, experts)
        assert out.expert_load.shape == (2, 4) and float(out.aux_loss) > 0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(out.loss.detach())
    for _ in range(15):
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.5 * first


@pytest.mark.parametrize("input_granularity", ["token", "item"])
def test_loss_is_code_cross_entropy_over_valid_positions(input_granularity):
    model = _model(input_granularity=input_granularity).eval()
    input_ids = torch.tensor([[0, 1, 2]])
    labels = torch.tensor([[-100, 3, 4]])
    out = model(input_ids=input_ids, labels=labels)
    head = model.output_codes.weight()
    expected = []
    for position, row in ((1, 3), (2, 4)):
        queries = model.code_queries(out.hidden_states[0, position])  # (C, H)
        logits = torch.einsum("ch,ckh->ck", queries, head) + model.head_bias
        expected.append(torch.nn.functional.cross_entropy(logits, model.catalog_codes[row], reduction="none"))
    torch.testing.assert_close(out.loss, torch.cat(expected).mean())


@pytest.mark.parametrize("input_granularity", ["token", "item"])
def test_score_is_sum_of_code_log_probs_and_generate_matches_it(input_granularity):
    model = _model(input_granularity=input_granularity).eval()
    input_ids = torch.tensor([[0, 1, 2], [3, 4, 5]])
    scores = model.score(input_ids)
    log_probs = model(input_ids=input_ids).logits.log_softmax(-1)
    codes = model.catalog_codes[1:]
    torch.testing.assert_close(scores, log_probs[:, 0, codes[:, 0]] + log_probs[:, 1, codes[:, 1]])
    items, item_scores = model.generate_items(input_ids, num_beams=NUM_ITEMS, top_k=5)
    top_scores, top_items = scores.topk(5, dim=1)
    assert items.tolist() == top_items.tolist()
    torch.testing.assert_close(item_scores, top_scores)
    # narrow beams still only emit catalog rows, distinct per user, and honour bans
    items, _ = model.generate_items(input_ids, num_beams=3, banned_items=torch.tensor([[0, 1], [2, -1]]))
    assert ((items >= 0) & (items < NUM_ITEMS)).all()
    assert all(len(set(row)) == len(row) for row in items.tolist())
    assert not {0, 1} & set(items[0].tolist()) and 2 not in items[1].tolist()


def test_recommend_contract_and_exclusion():
    model = _model()
    recs = model.recommend([["i0", "i1"], ["i5"]], k=4)
    assert [len(r) for r in recs] == [4, 4]
    assert all(item in model.item_ids for r in recs for item, _ in r)
    assert not {"i0", "i1"} & {item for item, _ in recs[0]}
    assert all(a[1] >= b[1] for r in recs for a, b in itertools.pairwise(r))
    with pytest.raises(ValueError, match="k"):
        model.recommend([["i0"]], k=0)
    with pytest.raises(ValueError, match="not in the model's catalog"):
        model.recommend([["nope"]], k=2)


def test_recommend_excludes_the_whole_history_and_never_pads_with_excluded_items():
    model = _model()  # max_position_embeddings 6: the model reads the last 6 items
    history = [f"i{j}" for j in range(8)]
    result = model.recommend([history], k=NUM_ITEMS)[0]
    assert sorted(item for item, _ in result) == ["i8", "i9"]  # the 2 items left, not 10 with -inf scores
    assert all(score > float("-inf") for _, score in result)
    assert len(model.recommend([history], k=NUM_ITEMS, exclude_history=False)[0]) == NUM_ITEMS


def test_collided_items_are_all_reachable_by_recommend():
    ids, codes, text = _catalog_arrays()
    codes[3] = codes[4]  # items i3 and i4 share every code
    model = RecGPTForCausalLM(RecGPTConfig(**TINY), item_ids=ids, item_codes=codes, item_text_embeddings=text)
    recs = model.recommend([["i0"]], k=NUM_ITEMS - 1)
    assert {"i3", "i4"} <= {item for item, _ in recs[0]}


def _fsq_tokenizer(ids, text):
    from genrec.tokenization import get_tokenizer_class

    catalog = ItemCatalog(ids, [{"title": f"item {i}"} for i in ids])
    tokenizer = get_tokenizer_class("fsq")(num_chunks=2, levels=[4, 3], epochs=2, batch_size=8)
    return catalog, tokenizer.fit(catalog, embeddings=text)


@pytest.mark.parametrize("input_granularity", ["token", "item"])
def test_save_load_with_tokenizer_and_catalog_via_auto_class(tmp_path, input_granularity):
    ids, _, text = _catalog_arrays()
    catalog, tokenizer = _fsq_tokenizer(ids, text)
    torch.manual_seed(0)
    model = RecGPTForCausalLM.from_catalog(catalog, embeddings=text, item_tokenizer=tokenizer,
                                           input_granularity=input_granularity,
                                           **{k: v for k, v in TINY.items() if k not in ("num_chunks", "codebook_size",
                                                                                         "fsq_levels", "text_embedding_dim")})
    with torch.no_grad():  # trained-looking heads, so a load that re-initialised them would be caught
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.eval()
    model.save_pretrained(tmp_path / "recgpt")
    assert AutoConfig.from_pretrained(tmp_path / "recgpt").model_type == "genrec-recgpt"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "recgpt").eval()
    assert isinstance(loaded, RecGPTForCausalLM)
    assert loaded.item_ids == ids and loaded.item_tokenizer is not None
    input_ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded.score(input_ids), model.score(input_ids))
    # zero-shot: a NEW catalog tokenized by the saved fsq tokenizer from its embeddings alone
    new_text = np.random.default_rng(5).normal(size=(4, 8)).astype(np.float32)
    loaded.set_catalog(["n0", "n1", "n2", "n3"], item_text_embeddings=new_text)
    assert loaded.catalog_codes[1:].tolist() == tokenizer.encode_embeddings(new_text).tolist()
    recs = loaded.recommend([["n0", "n1"]], k=2)
    assert {item for item, _ in recs[0]} <= {"n2", "n3"}


def test_load_refuses_catalog_files_from_another_checkpoint(tmp_path):
    import shutil

    _model().save_pretrained(tmp_path / "a")
    ids, codes, text = _catalog_arrays(seed=1)
    torch.manual_seed(0)
    RecGPTForCausalLM(RecGPTConfig(**TINY), item_ids=ids, item_codes=(codes + 1) % 12,
                      item_text_embeddings=text).save_pretrained(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "catalog.safetensors", tmp_path / "a" / "catalog.safetensors")
    with pytest.raises(ValueError, match=r"catalog.safetensors .* do not belong to the weights"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "a")


@pytest.mark.parametrize(
    "field, value, match",
    [("num_attention_heads", 3, "divisible"), ("codebook_size", 13, "prod"), ("ffn_type", "sparse", "ffn_type"),
     ("code_embedding_type", "hash", "code_embedding_type"), ("num_experts_per_tok", 9, "num_experts"),
     ("text_embedding_dim", 9, "text_embedding_dim"), ("input_granularity", "chunk", "input_granularity"),
     ("logit_temperature", 0, "logit_temperature"), ("code_init", "zeros", "code_init"),
     ("loss_type", "bpr", "loss_type"), ("num_negatives", -1, "num_negatives")],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        RecGPTConfig(**{**TINY, field: value})


def test_catalog_validation():
    model = _model()
    ids, codes, text = _catalog_arrays()
    with pytest.raises(ValueError, match="item_codes"):
        model.set_catalog(ids, item_codes=codes + 12, item_text_embeddings=text)
    with pytest.raises(ValueError, match="item_text_embeddings"):
        model.set_catalog(ids, item_codes=codes, item_text_embeddings=text[:, :4])
    with pytest.raises(ValueError, match="one of `texts` and `item_text_embeddings`"):
        model.set_catalog(ids, texts=["a"] * len(ids), item_text_embeddings=text)
    with pytest.raises(ValueError, match="needs `item_text_embeddings` or `texts`: the item ids 'new'"):
        model.set_catalog([*ids, "new"], item_codes=np.concatenate([codes, codes[:1]]))
    with pytest.raises(ValueError, match="no `item_tokenizer` to encode the items"):
        model.set_catalog(ids, item_text_embeddings=text)  # new text and no tokenizer to turn it into codes
    with pytest.raises(ValueError, match="`use_codes=False` needs a model trained with `text_logits: true`"):
        model.set_catalog(ids, use_codes=False)
    # features left out come from the bound catalog: new codes for the same items keep their text
    model.set_catalog(ids[::-1], item_codes=codes[::-1] % 12)
    torch.testing.assert_close(model.catalog_text[1:], torch.from_numpy(text[::-1].copy()))
    # the older positional form still works, with a DeprecationWarning
    with pytest.warns(DeprecationWarning, match=r"set_catalog\(item_ids, item_codes=..., item_text_embeddings=...\)"):
        model.set_catalog(ids, codes, text)
    assert model.item_ids == list(ids) and model.catalog_codes[1:].tolist() == codes.tolist()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.ones(1, 7, dtype=torch.long))


def test_run_config_accepts_recgpt_with_tokenizer_section():
    from genrec.training.arguments import build_run_config

    run = build_run_config({"model": {"type": "recgpt", "hidden_size": 16, "num_attention_heads": 2,
                                      "tokenizer": {"num_chunks": 2, "levels": [4, 3]}},
                            "training": {"report_to": "none"}})
    assert run.model_type == "recgpt" and run.model_kwargs["tokenizer"]["levels"] == [4, 3]
    with pytest.raises(ValueError, match="unknown `model` key"):
        build_run_config({"model": {"type": "recgpt", "hidden_sise": 16}})
    with pytest.raises(ValueError, match="ffn_type"):
        build_run_config({"model": {"type": "recgpt", "ffn_type": "sparse"}})


def test_pipeline_builds_recgpt_from_the_catalog(monkeypatch):
    from genrec.training.pipeline import build_model

    ids, _, text = _catalog_arrays()
    catalog = ItemCatalog(ids, [{"title": f"item {i}"} for i in ids])
    calls = []

    def fake_embed_catalog(catalog, model_name=None, cache_dir=None, fields=None, **kwargs):
        calls.append({"model_name": model_name, "fields": fields, **kwargs})
        return text

    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog", fake_embed_catalog)
    model = build_model("recgpt", {**{k: v for k, v in TINY.items() if k not in ("num_chunks", "codebook_size",
                                                                                  "fsq_levels", "text_embedding_dim")},
                                   "tokenizer": {"num_chunks": 2, "levels": [4, 3], "epochs": 1,
                                                 "text_fields": ["title"]}}, ids, catalog=catalog)
    assert calls == [{"model_name": None, "fields": ["title"], "batch_size": 256}]  # the tokenizer's text fields
    assert isinstance(model, RecGPTForCausalLM) and model.item_ids == ids and model.config.codebook_size == 12


def test_pipeline_adds_collaborative_dims_from_the_training_histories(monkeypatch):
    from genrec.tokenization.collaborative import spectral_item_embeddings
    from genrec.training.pipeline import build_model

    ids, _, text = _catalog_arrays()
    catalog = ItemCatalog(ids, [{"title": f"item {i}"} for i in ids])
    monkeypatch.setattr("genrec.tokenization.embeddings.embed_catalog", lambda *args, **kwargs: text)
    train = {"u1": ["i0", "i1", "i2"], "u2": ["i2", "i3", "i4"], "u3": ["i5", "i6", "i7"], "u4": ["i7", "i8", "i9"]}
    kwargs = {**{k: v for k, v in TINY.items() if k not in ("num_chunks", "codebook_size", "fsq_levels",
                                                           "text_embedding_dim")},
              "input_granularity": "item",
              "tokenizer": {"num_chunks": 2, "levels": [4, 3], "epochs": 1, "collaborative_dims": 2,
                            "collaborative_window": 0}}
    model = build_model("recgpt", kwargs, ids, catalog=catalog, train_sequences=train)
    assert model.config.text_embedding_dim == 8 + 2
    expected = spectral_item_embeddings(train.values(), ids, dim=2, window=0)
    torch.testing.assert_close(model.catalog_text[1:], torch.from_numpy(np.concatenate([text, expected], 1)))
    # a new catalog from text alone gets zeros where the collaborative part goes (it has no interactions yet)
    with pytest.warns(DeprecationWarning, match="add_catalog_from_texts"):  # the old name, still working
        model.add_catalog_from_texts(["n0", "n1"], embeddings=text[:2])
    assert not model.catalog_text[1:, 8:].any() and model.num_items == 2
    with pytest.raises(ValueError, match="collaborative_dims"):
        build_model("recgpt", {**kwargs, "tokenizer": {"collaborative_dims": -1}}, ids, catalog=catalog,
                    train_sequences=train)


def test_genrec_evaluate_loads_a_saved_recgpt(tmp_path, toy_dataset):
    """`genrec evaluate` / evaluate_checkpoint maps the dataset's ids through the model's item_index."""
    from genrec.training.pipeline import evaluate_checkpoint

    ids = [str(n) for n in range(1, 25)]  # the toy dataset's catalog
    rng = np.random.default_rng(0)
    codes = np.stack([np.arange(24) % 12, (np.arange(24) * 5 + 1) % 12], 1)
    torch.manual_seed(0)
    model = RecGPTForCausalLM(RecGPTConfig(**TINY), item_ids=ids, item_codes=codes,
                              item_text_embeddings=rng.normal(size=(24, 8)).astype(np.float32))
    assert model.item_index == {item: row for row, item in enumerate(ids)}
    model.save_pretrained(tmp_path / "recgpt")
    metrics = evaluate_checkpoint(tmp_path / "recgpt", toy_dataset, splits=("valid", "test"), ks=(5, 10))
    assert metrics["test/num_users"] == 48 and 0.0 <= metrics["test/ndcg@10"] <= metrics["test/recall@10"] <= 1.0


def test_text_logits_add_the_tied_text_term_to_the_items_loss_and_the_ranking():
    model = _model(input_granularity="item", loss_type="items", num_negatives=0, text_logits=True,
                   logit_temperature=0.5, tie_code_embeddings=True).eval()
    with torch.no_grad():
        model.text_query.add_(0.1 * torch.randn_like(model.text_query))  # not the identity any more
    out = model(input_ids=torch.tensor([[0, 1, 2]]), labels=torch.tensor([[-100, 3, 4]]))
    head, codes = model.output_code_vectors(), model.catalog_codes[1:]
    text = model.catalog_text[1:].view(NUM_ITEMS, 2, -1)
    item_text = torch.nn.functional.normalize(text[:, 0] @ model.text_proj[0] + text[:, 1] @ model.text_proj[1], dim=-1)
    expected, rankings = [], []
    for position, row in ((1, 3), (2, 4)):
        state = out.hidden_states[0, position]
        logits = torch.einsum("ch,ckh->ck", torch.nn.functional.normalize(model.code_queries(state), dim=-1) / 0.5,
                              head) + model.head_bias
        code_part = (logits[0, codes[:, 0]] + logits[1, codes[:, 1]]) / 2
        text_part = item_text @ (torch.nn.functional.normalize(state @ model.text_query, dim=0) / 0.5)
        expected.append(torch.nn.functional.cross_entropy((code_part + text_part)[None], torch.tensor([row - 1])))
        rankings.append(code_part + text_part)
    torch.testing.assert_close(out.loss, torch.stack(expected).mean())
    # score() ranks exactly as the training logit at the last position (they differ by a per-history constant)
    scores = model.score(torch.tensor([[0, 1, 2]]))[0]
    difference = scores - 2 * rankings[-1]
    torch.testing.assert_close(difference, difference[0].expand_as(difference))
    # the sampled softmax puts the same text term on the target and the negatives
    sampled = _model(input_granularity="item", loss_type="items", num_negatives=NUM_ITEMS - 1, text_logits=True,
                     logit_temperature=0.5).eval()
    code_logits, states, rows = torch.randn(2, 2, 12), torch.randn(2, 16), torch.tensor([3, 4])
    torch.manual_seed(1)
    loss = sampled._item_softmax_loss(code_logits, rows, states)
    torch.manual_seed(1)
    negatives = torch.randint(0, NUM_ITEMS, (NUM_ITEMS - 1,))
    item = sampled.item_logits(code_logits) / 2 + sampled.text_item_logits(states)
    reference = [torch.logsumexp(torch.cat([item[n, r:r + 1], item[n, negatives].masked_fill(negatives == r, -torch.inf)]), 0)
                 - item[n, r] for n, r in enumerate(rows.tolist())]
    torch.testing.assert_close(loss, torch.stack(reference).mean())


def test_text_logits_rank_a_never_trained_catalog_by_text():
    """Untrained, with the code part switched off: the history's item text finds its own near-duplicate."""
    torch.manual_seed(0)
    model = _model(input_granularity="item", loss_type="items", text_logits=True, logit_temperature=0.07).eval()
    rng = np.random.default_rng(3)
    text = rng.normal(size=(NUM_ITEMS, 8)).astype(np.float32)
    text[7] = text[2] + 0.01 * rng.normal(size=8).astype(np.float32)  # item 7 reads like item 2
    ids = [f"new{j}" for j in range(NUM_ITEMS)]
    model.set_catalog(ids, item_codes=np.stack([np.arange(NUM_ITEMS) % 12, np.arange(NUM_ITEMS) % 12], 1),
                      item_text_embeddings=text)
    with torch.no_grad():
        model.head_bias.zero_()
        model.code_embeddings.table.weight.zero_()  # no code signal at all
        model.item_position_embeddings.weight.zero_()
    states = model(input_ids=torch.tensor([[3]])).hidden_states[:, -1]
    ranking = model.text_item_logits(states)[0].argsort(descending=True).tolist()
    assert ranking[:2] == [2, 7] or ranking[:2] == [7, 2]


@pytest.mark.parametrize("overrides, key", [
    (dict(text_logits=True), "input_granularity"),
    (dict(text_logits=True, input_granularity="item"), "loss_type"),
    (dict(text_logits="yes", input_granularity="item", loss_type="items"), "text_logits"),
])
def test_text_logits_config_is_checked(overrides, key):
    with pytest.raises(ValueError, match=key):
        RecGPTConfig(**{**TINY, **overrides})


def _twin_domain(seed: int, pairs: int = 20, dim: int = 16):
    """Items in text twins: item 2k and 2k+1 have nearly the same text embedding, pairs far apart."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(pairs, dim))
    text = np.repeat(base, 2, axis=0) + 0.05 * rng.normal(size=(2 * pairs, dim))
    return text.astype(np.float32)


def test_trained_on_one_domain_it_ranks_the_text_twin_first_in_another():
    """Zero-shot: trained where the next item is the last item's text twin, it finds twins among NEW items."""
    from genrec.tokenization import get_tokenizer_class

    # domain A must span the text space (100 twin pairs in 16 dimensions): with 20 pairs a model can fit A's
    # directions alone and finds only 55-75% of B's twins
    text_a, text_b = _twin_domain(0, pairs=100), _twin_domain(1)
    ids_a, ids_b = [f"a{j}" for j in range(200)], [f"b{j}" for j in range(40)]
    catalog = ItemCatalog(ids_a, [{"title": item} for item in ids_a])
    tokenizer = get_tokenizer_class("fsq")(num_chunks=2, levels=[4, 3], epochs=2, batch_size=8).fit(
        catalog, embeddings=text_a)
    torch.manual_seed(0)
    model = RecGPTForCausalLM.from_catalog(
        catalog, embeddings=text_a, item_tokenizer=tokenizer, input_granularity="item", loss_type="items",
        num_negatives=0, text_logits=True, logit_temperature=0.1, tie_code_embeddings=True, hidden_size=16,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=4,
        hidden_dropout_prob=0.0, attention_dropout=0.0, code_dropout=0.3)
    # domain A: histories [x, twin(x), y, twin(y)]: after the first of a pair comes its twin
    rng = np.random.default_rng(2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(60):
        firsts = 2 * rng.integers(0, 100, size=(32, 2))
        rows = np.stack([firsts[:, 0], firsts[:, 0] + 1, firsts[:, 1], firsts[:, 1] + 1], 1) + 1  # catalog rows + 1
        input_ids = torch.as_tensor(rows[:, :3])
        labels = torch.as_tensor(np.stack([rows[:, 1], np.full(32, -100), rows[:, 3]], 1))
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    def twin_hits(recommender, ids):
        pairs = len(ids) // 2
        recs = recommender.recommend([[ids[2 * k]] for k in range(pairs)], k=1)
        return sum(rec[0][0] == ids[2 * k + 1] for k, rec in enumerate(recs)) / pairs

    assert twin_hits(model, ids_a) >= 0.9  # learned in domain A
    model.set_catalog(ids_b, item_text_embeddings=text_b, use_codes=False)
    assert twin_hits(model, ids_b) >= 0.9  # domain B's items were never seen: chance is 1/39
    # without the text logits the codes learned for domain A's items carry nothing about B's twins
    model.use_codes = True
    with torch.no_grad():
        model.text_query.zero_()
    assert twin_hits(model, ids_b) < 0.5


def test_text_skip_starts_as_last_item_text_knn_and_is_trained():
    model = _model(input_granularity="item", loss_type="items", num_negatives=0, text_logits=True, text_skip=True,
                   logit_temperature=0.05).eval()
    with torch.no_grad():  # leave only the raw-space term: no codes, no projected-text term
        model.head_bias.zero_()
        model.text_query.zero_()
        model.code_embeddings.table.weight.zero_()
    history = torch.tensor([[0, 4, 2]])  # last item: catalog row 1
    states = model(input_ids=history).hidden_states[:, -1]
    raw = model.text_item_logits(states, model.catalog_text[history[:, -1]])[0]
    text = torch.nn.functional.normalize(model.catalog_text[1:], dim=-1)
    torch.testing.assert_close(raw, text @ text[1] / 0.05)  # the untrained raw term IS cosine text-kNN
    # the gate and the map get gradients from the items loss
    model.train()
    model(input_ids=history, labels=torch.tensor([[-100, 2, 5]])).loss.backward()
    assert model.text_skip_gate.grad is not None and model.text_skip_proj.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="text_logits"):
        RecGPTConfig(**{**TINY, "text_skip": True})
