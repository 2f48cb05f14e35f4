"""The one recommender contract (genrec.models.recommender), run against every model on tiny configs.

Each model is built the way genrec builds it from a dataset (``from_dataset``; RecGPT from precomputed item vectors,
text-kNN too, so no sentence encoder runs) over the same 12-item catalog, untrained: the contract is about the
interface (types, k, exclusion, batching, score == recommend ordering, save/load), not about quality.
"""

import inspect
import random
import warnings

import numpy as np
import pytest
import torch

from genrec.data.catalog import ItemCatalog
from genrec.models.recommender import DEFAULT_BATCH_SIZE, DEFAULT_EXCLUDE_HISTORY, DEFAULT_K

NUM_ITEMS = 12
IDS = [f"i{j}" for j in range(NUM_ITEMS)]
TITLES = ["Red Lipstick", "Blue Nail Polish", "Green Face Mask", "Rose Shampoo", "Lavender Soap", "Mint Toothpaste",
          "Shea Body Butter", "Argan Hair Oil", "Tea Tree Toner", "Cocoa Lip Balm", "Aloe Gel", "Clay Mask"]
CATALOG = ItemCatalog(IDS, [{"title": title} for title in TITLES])
_rng = random.Random(0)
TRAIN = {f"u{u}": [_rng.choice(IDS) for _ in range(6)] for u in range(20)}
# a history longer than every model's input window (4-6 items): exclusion must still cover all of it
LONG = ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"]
HISTORIES = [["i1", "i2"], ["i3"], LONG, ["i9", "i9", "i10"], ["i11", "i0", "i4"]]
T5_TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0,
           "max_history_items": 3, "num_beams": 6, "item_tokenizer_method": "random",
           "item_tokenizer_config": {"codebook_size": 4, "num_levels": 3}}
# item-level inputs (one encoder position per history item) with collaborative item vectors: no sentence encoder
T5_ITEM = {"input_granularity": "item", "item_vectors": {"item_text": False, "collaborative_dims": 4}}
MODEL_NAMES = ["sasrec", "popularity", "textknn", "recgpt", "p5", "onerec", "p5-item", "onerec-item", "onerec-head",
               "bigrec"]
# re-bound catalogs: all 12 items in another order; 7 of them in another order (i1, i4, i6, i8, i11 left out)
REORDERED = [IDS[j] for j in (5, 11, 0, 7, 2, 9, 4, 1, 10, 3, 8, 6)]
SUBSET = ["i7", "i2", "i10", "i0", "i5", "i9", "i3"]
# their scores are beam-search log-probabilities normalised over the catalog's valid next tokens (the item head's:
# a log-softmax over the catalog, so they too can only rise on a smaller catalog)
BEAM_SEARCH_MODELS = ("genrec-p5", "genrec-onerec", "genrec-bigrec")
SUBSET_HISTORIES = [["i2", "i7"], ["i0"], ["i9", "i3", "i10"], ["i5", "i5"]]


def _vectors(dim=8):
    return np.random.default_rng(0).normal(size=(NUM_ITEMS, dim)).astype(np.float32)


def _build(name, tmp_path_factory):
    torch.manual_seed(0)
    if name == "sasrec":
        from genrec.models.sasrec import SASRecModel

        return SASRecModel.from_dataset(CATALOG, TRAIN, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        max_position_embeddings=4, hidden_dropout_prob=0.0, attention_dropout=0.0)
    if name == "popularity":
        from genrec.models.popularity import PopularityModel

        return PopularityModel.from_dataset(CATALOG, TRAIN)
    if name == "textknn":
        from genrec.models.textknn import TextKNNModel

        return TextKNNModel.from_dataset(CATALOG, TRAIN, embeddings=_vectors(), last_items=2, decay=0.5)
    if name == "recgpt":
        from genrec.models.recgpt import RecGPTForCausalLM

        return RecGPTForCausalLM.from_catalog(
            CATALOG, embeddings=_vectors(), tokenizer_kwargs={"num_chunks": 2, "levels": [4, 3], "epochs": 2,
                                                             "batch_size": 8},
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=6, hidden_dropout_prob=0.0, attention_dropout=0.0)
    if name in ("p5", "p5-item"):
        from genrec.models.p5 import P5ForConditionalGeneration

        return P5ForConditionalGeneration.from_dataset(CATALOG, TRAIN, **T5_TINY, **(T5_ITEM if name == "p5-item" else {}))
    if name in ("onerec", "onerec-item", "onerec-head"):
        from genrec.models.onerec import OneRecForConditionalGeneration

        extra = {"onerec": {}, "onerec-item": T5_ITEM, "onerec-head": {**T5_ITEM, "loss_type": "items"}}[name]
        return OneRecForConditionalGeneration.from_dataset(CATALOG, TRAIN, **T5_TINY, ffn_type="moe", num_experts=4,
                                                           num_experts_per_tok=2, session_length=2, **extra)
    if name == "bigrec":
        from genrec.models.bigrec import BIGRecForCausalLM
        from tests.llm_helpers import save_tiny_llama

        folder = save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), TITLES)
        return BIGRecForCausalLM.from_dataset(CATALOG, TRAIN, base_model_name_or_path=folder, lora_r=4,
                                              lora_alpha=8, lora_dropout=0.0, max_new_tokens=12, num_beams=6,
                                              max_history_items=3)
    raise AssertionError(name)


@pytest.fixture(scope="module", params=MODEL_NAMES)
def model(request, tmp_path_factory):
    return _build(request.param, tmp_path_factory).eval()


def _items(recommendations):
    return [[item for item, _ in pairs] for pairs in recommendations]


def test_signature_and_defaults_are_the_same_everywhere(model):
    parameters = inspect.signature(model.recommend).parameters
    assert list(parameters)[:4] == ["histories", "k", "exclude_history", "batch_size"]
    assert parameters["k"].default == DEFAULT_K == 10
    assert parameters["exclude_history"].default is DEFAULT_EXCLUDE_HISTORY is True
    assert parameters["batch_size"].default == DEFAULT_BATCH_SIZE == 32
    assert parameters["exclude_history"].kind is inspect.Parameter.KEYWORD_ONLY
    assert model.item_ids == IDS and model.item_index == {item: row for row, item in enumerate(IDS)}
    assert model.num_items == NUM_ITEMS


def test_return_type_order_and_k(model):
    result = model.recommend(HISTORIES, k=4)
    assert isinstance(result, list) and len(result) == len(HISTORIES)
    for pairs in result:
        assert isinstance(pairs, list) and len(pairs) == 4
        for pair in pairs:
            assert isinstance(pair, tuple) and isinstance(pair[0], str) and type(pair[1]) is float
        items, scores = [item for item, _ in pairs], [score for _, score in pairs]
        assert len(set(items)) == 4 and set(items) <= set(IDS)
        assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))
    # k defaults to 10 (fewer only where fewer items are left outside the history)
    assert [len(pairs) for pairs in model.recommend(HISTORIES)] == [min(DEFAULT_K, NUM_ITEMS - len(set(history)))
                                                                   for history in HISTORIES]


def test_k_is_capped_at_the_catalog(model):
    with pytest.raises(ValueError, match=rf"`k` \({NUM_ITEMS + 1}\) must be an integer in \[1, {NUM_ITEMS}\]"):
        model.recommend(HISTORIES, k=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="`k`"):
        model.recommend(HISTORIES, k=0)
    everything = model.recommend(HISTORIES, k=NUM_ITEMS)
    for history, pairs in zip(HISTORIES, everything):  # every item not in the history, none twice, no -inf
        assert sorted(item for item, _ in pairs) == sorted(set(IDS) - set(history))


def test_exclude_history_masks_the_whole_history(model):
    excluded = model.recommend([LONG], k=3)[0]
    assert len(excluded) == 3 and not set(item for item, _ in excluded) & set(LONG)
    included = model.recommend([LONG], k=NUM_ITEMS, exclude_history=False)[0]
    if model.config.model_type != "genrec-textknn":  # text-kNN never returns its query items (its config)
        assert set(item for item, _ in included) & set(LONG)


def test_batch_size_does_not_change_the_result(model):
    one = model.recommend(HISTORIES, k=5, batch_size=1)
    many = model.recommend(HISTORIES, k=5, batch_size=len(HISTORIES))
    assert _items(one) == _items(many)
    for a, b in zip(one, many):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    with pytest.raises(ValueError, match="`batch_size`"):
        model.recommend(HISTORIES, k=5, batch_size=0)


def test_score_ranks_as_recommend(model):
    scores = model.score_histories(HISTORIES)  # (batch, num_items)
    assert scores.shape == (len(HISTORIES), NUM_ITEMS) and scores.dtype == torch.float32
    torch.testing.assert_close(model.score(model.encode_histories(HISTORIES)).float(), scores)
    recommended = model.recommend(HISTORIES, k=5, exclude_history=False)
    for row, pairs in zip(scores, recommended):
        finite = int(torch.isfinite(row).sum())
        values, columns = row.topk(min(5, finite))
        assert [IDS[c] for c in columns.tolist()] == [item for item, _ in pairs]
        assert values.tolist() == pytest.approx([s for _, s in pairs], abs=1e-4)


def test_bad_histories_get_one_clear_error(model):
    with pytest.raises(ValueError, match=r"history 1 holds item ids not in the model's catalog .*'nope', 'zz'"):
        model.recommend([["i1"], ["nope", "i2", "zz"]], k=3)
    with pytest.raises(ValueError, match="history 0 .* non-empty"):
        model.recommend([[]], k=3)
    with pytest.raises(ValueError, match="not str"):
        model.recommend("i1", k=3)
    with pytest.raises(TypeError, match="unknown_option"):
        model.recommend([["i1"]], k=3, unknown_option=1)


def test_recommend_restores_the_training_mode(model):
    model.train()
    try:
        model.recommend([["i1"]], k=2)
        assert model.training
    finally:
        model.eval()


def test_save_and_load_give_the_same_recommendations(model, tmp_path):
    expected = model.recommend(HISTORIES, k=5)
    model.save_pretrained(tmp_path / "saved")
    loaded = type(model).from_pretrained(tmp_path / "saved").eval()
    got = loaded.recommend(HISTORIES, k=5)
    assert _items(got) == _items(expected)
    for a, b in zip(got, expected):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)


def test_generate_is_transformers_or_clearly_named(model):
    """P5/OneRec/BIGRec: ``generate`` is transformers'; RecGPT/BIGRec catalog search is ``generate_items``."""
    name = model.config.model_type
    if name in ("genrec-p5", "genrec-onerec"):
        input_ids, mask = model.build_inputs([[1, 2]])
        out = model.generate(input_ids, attention_mask=mask, num_beams=3, num_return_sequences=2,
                             return_dict_in_generate=True, output_scores=True)
        assert out.sequences.shape[0] == 2 and out.sequences_scores.shape == (2,)
        rows = model.catalog.items_of(out.sequences[:, 1:])
        assert (rows >= 0).all()  # constrained to catalog items
    elif name == "genrec-bigrec":
        input_ids, mask = model.encode_prompts(model.prompts([["i1"]]))
        tokens = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=2, do_sample=False)
        assert isinstance(tokens, torch.Tensor) and tokens.shape[1] <= input_ids.shape[1] + 2
        items, scores = model.generate_items(input_ids, mask, num_beams=3)
        assert items.shape == scores.shape == (1, 3) and (items >= 0).all()
        with pytest.raises(TypeError):
            model.generate_items(input_ids, mask, num_beams=3, temperature=0.5)  # no argument silently dropped
    elif name == "genrec-recgpt":
        input_ids = model.encode_histories([["i1", "i2"]])
        items, scores = model.generate_items(input_ids, num_beams=4, top_k=3)
        assert items.shape == (1, 3)
        with pytest.raises(TypeError):
            model.generate_items(input_ids, num_beams=4, temperature=0.5)
        with pytest.warns(FutureWarning, match="generate_items"):
            legacy = model.generate(input_ids, num_beams=4, top_k=3)
        assert torch.equal(legacy[0], items)
    else:
        assert not hasattr(model, "generate_items")


def _reloaded(model, path):
    """A copy of the module-scoped model (re-binding must not change it for the other tests)."""
    model.save_pretrained(path)
    return type(model).from_pretrained(path).eval()


def _same_scores(after, before):
    """Where both are finite (beam-search models score only the items their beams find), the same scores."""
    both = torch.isfinite(after) & torch.isfinite(before)
    assert int(both.sum()) >= 2 * after.shape[0]
    torch.testing.assert_close(after[both], before[both], atol=1e-4, rtol=1e-4)


def test_set_catalog_reorders_the_catalog(model, tmp_path):
    """``set_catalog(item_ids)`` with no features takes each item's features from the bound catalog by id: in
    another order, every item keeps its score (column ``j`` is now ``item_ids[j]``) and recommend is unchanged."""
    rebound = _reloaded(model, tmp_path / "saved")
    before = rebound.score_histories(HISTORIES)  # column j = IDS[j]
    expected = rebound.recommend(HISTORIES, k=5)
    rebound.set_catalog(REORDERED)
    assert rebound.item_ids == REORDERED and rebound.num_items == NUM_ITEMS
    assert rebound.item_index == {item: row for row, item in enumerate(REORDERED)}
    _same_scores(rebound.score_histories(HISTORIES), before[:, [IDS.index(item) for item in REORDERED]])
    for got, pairs in zip(rebound.recommend(HISTORIES, k=5), expected):  # tied items may trade places
        assert [score for _, score in got] == pytest.approx([score for _, score in pairs], abs=1e-4)


def test_set_catalog_restricts_the_catalog_to_a_subset(model, tmp_path):
    """A subset in another order: the model ranks exactly those items. Full-catalog scorers give each item the
    score it had; beam-search models normalise over the catalog, so an item's score can only rise."""
    rebound = _reloaded(model, tmp_path / "saved")
    before = rebound.score_histories(SUBSET_HISTORIES)[:, [IDS.index(item) for item in SUBSET]]
    rebound.set_catalog(SUBSET)
    assert rebound.item_ids == SUBSET and rebound.num_items == len(SUBSET)
    assert rebound.item_index == {item: row for row, item in enumerate(SUBSET)}
    after = rebound.score_histories(SUBSET_HISTORIES)
    assert after.shape == (len(SUBSET_HISTORIES), len(SUBSET))
    if model.config.model_type in BEAM_SEARCH_MODELS:
        both = torch.isfinite(after) & torch.isfinite(before)
        assert both.any() and bool((after[both] >= before[both] - 1e-4).all())
    else:
        _same_scores(after, before)
    for history, pairs in zip(SUBSET_HISTORIES, rebound.recommend(SUBSET_HISTORIES, k=4)):
        items = [item for item, _ in pairs]
        left = set(SUBSET) - set(history)
        assert set(items) <= left and len(items) == len(set(items)) == min(4, len(left))
    assert {item for pairs in rebound.recommend(SUBSET_HISTORIES, k=len(SUBSET), exclude_history=False)
            for item, _ in pairs} <= set(SUBSET)
    with pytest.raises(ValueError, match="not in the model's catalog .*'i1'"):
        rebound.recommend([["i1", "i2"]], k=2)  # left out of the catalog
    reloaded = _reloaded(rebound, tmp_path / "subset")  # the re-bound catalog is what a checkpoint keeps
    assert reloaded.item_ids == SUBSET
    _same_scores(reloaded.score_histories(SUBSET_HISTORIES), after)


def test_set_catalog_takes_features_by_name_and_names_what_is_wrong(model, tmp_path):
    rebound = _reloaded(model, tmp_path / "saved")
    features = rebound._catalog_defaults(SUBSET, {})  # what the model holds for those items, now passed by name
    assert features and set(features) <= set(rebound.catalog_features)
    rebound.set_catalog(SUBSET, **features)
    assert rebound.item_ids == SUBSET
    by_default = _reloaded(model, tmp_path / "other")
    by_default.set_catalog(SUBSET)
    _same_scores(rebound.score_histories(SUBSET_HISTORIES), by_default.score_histories(SUBSET_HISTORIES))
    with pytest.raises(ValueError, match=r"unknown item feature\(s\) `colour`; it takes: `"):
        rebound.set_catalog(SUBSET, colour=[1] * len(SUBSET))
    with pytest.raises(ValueError, match="'new-item'"):  # no features for an item the model does not know
        rebound.set_catalog([*SUBSET, "new-item"])
    with pytest.raises(ValueError, match=r"duplicate ids \('i2'\)"):
        rebound.set_catalog(["i2", "i7", "i2"])
    with pytest.raises(ValueError, match="not str"):
        rebound.set_catalog("i2")
    assert rebound.item_ids == SUBSET  # a refused binding leaves the catalog as it was


def _legacy_binding(model):
    """The model's pre-``set_catalog`` binding call (a deprecated alias now), re-binding its own catalog."""
    name = model.config.model_type
    if name in ("genrec-sasrec", "genrec-popularity"):
        return lambda: model.set_item_ids(model.item_ids)
    if name == "genrec-textknn":
        return lambda: model.set_item_embeddings(model.item_embeddings.clone())
    if name == "genrec-recgpt":
        return lambda: model.set_catalog(model.item_ids, model.catalog_codes[1:], model.catalog_text[1:].numpy())
    if name == "genrec-bigrec":
        return lambda: model.set_catalog(model.item_ids, model.item_titles)
    return lambda: model.bind_item_tokenizer(model.item_tokenizer, model.tokenizer)  # P5, OneRec


def test_old_binding_names_are_deprecated_aliases(model, tmp_path):
    rebound = _reloaded(model, tmp_path / "saved")
    expected = rebound.recommend(HISTORIES, k=3)
    with pytest.warns(DeprecationWarning, match="deprecated and will be removed in genrec 0.3"):
        _legacy_binding(rebound)()
    assert rebound.item_ids == IDS
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new method itself never warns
        rebound.set_catalog(IDS)
    assert _items(rebound.recommend(HISTORIES, k=3)) == _items(expected)
