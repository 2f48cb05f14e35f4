"""genrec.decoding.beam_search: validity, no duplicates, exhaustive-search equality, HF parity, edge cases."""

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from genrec.decoding import Catalog, CatalogLogitsProcessor, beam_search, beam_search_unconstrained
from tests.decoding.helpers import VOCAB, brute_force, tiny_llama, tiny_t5

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


@st.composite
def catalogs(draw, variable=False):
    """Random catalogs: sizes, depths, branching, and vocabulary layouts (per-level ranges or shared)."""
    if variable:
        count = draw(st.integers(1, 10))
        seqs = draw(st.lists(st.lists(st.integers(3, 9), min_size=1, max_size=4), min_size=count, max_size=count))
        return seqs
    length = draw(st.integers(1, 3))
    codes = draw(st.integers(1, 4))
    shared = draw(st.booleans())
    count = draw(st.integers(1, 14))
    rows = draw(st.lists(st.lists(st.integers(0, codes - 1), min_size=length, max_size=length),
                         min_size=count, max_size=count))
    offset = [3 + (0 if shared else level * codes) for level in range(length)]
    return [[c + offset[level] for level, c in enumerate(row)] for row in rows]


def _inputs(batch, length=5, left_pad=False):
    generator = torch.Generator().manual_seed(batch * 31 + length)
    ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    if batch > 1:
        if left_pad:
            ids[1, :2], mask[1, :2] = 0, 0
        else:
            ids[1, -2:], mask[1, -2:] = 0, 0
    return ids, mask


def _check_against_brute_force(model, seqs, catalog, ids, mask, normalize, banned=None, effective_banned=None,
                               prefixes=None, **search_kwargs):
    num = len(seqs)
    items, scores = beam_search(model, catalog, input_ids=ids, attention_mask=mask, num_beams=num, top_k=num,
                                normalize=normalize, banned_items=banned, **search_kwargs)
    expected = brute_force(model, ids, mask, seqs, normalize=normalize,
                           banned=banned if effective_banned is None else effective_banned, prefixes=prefixes)
    top = expected.sort(1, descending=True)
    for b in range(ids.shape[0]):
        got = [i for i in items[b].tolist() if i >= 0]
        # every returned sequence is an item, no item twice, best first
        assert len(set(got)) == len(got)
        assert all(0 <= i < num for i in got)
        finite = int(torch.isfinite(expected[b]).sum())
        assert len(got) == finite  # K >= catalog: exhaustive, so every allowed item comes back
        torch.testing.assert_close(scores[b, :finite], top.values[b, :finite], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(scores[b, :finite], expected[b, items[b, :finite]], atol=1e-4, rtol=1e-4)
        assert (items[b, finite:] == -1).all() and torch.isinf(scores[b, finite:]).all()


@SETTINGS
@given(seqs=catalogs(), normalize=st.sampled_from(["catalog", "vocab"]), batch=st.integers(1, 3))
def test_encoder_decoder_equals_exhaustive_search(seqs, normalize, batch):
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(batch)
    _check_against_brute_force(tiny_t5(), seqs, catalog, ids, mask, normalize)


@SETTINGS
@given(seqs=catalogs(), batch=st.integers(1, 2))
def test_decoder_only_left_padded_equals_exhaustive_search(seqs, batch):
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(batch, left_pad=True)
    _check_against_brute_force(tiny_llama(), seqs, catalog, ids, mask, "vocab")


@SETTINGS
@given(seqs=catalogs(variable=True), normalize=st.sampled_from(["catalog", "vocab"]))
def test_variable_length_titles_equal_exhaustive_search(seqs, normalize):
    catalog = Catalog.from_sequences(seqs, eos_token_id=1)
    ids, mask = _inputs(2)
    _check_against_brute_force(tiny_t5(), [s + [1] for s in seqs], catalog, ids, mask, normalize)


@SETTINGS
@given(seqs=catalogs(), data=st.data())
def test_banned_items_never_returned_and_search_stays_exhaustive(seqs, data):
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(2)
    banned = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=len(seqs), max_size=len(seqs)),
                                             min_size=2, max_size=2)))
    # banning one duplicate bans the shared sequence (the decoder cannot tell duplicates apart)
    leaf_banned = torch.zeros((2, catalog.num_leaves), dtype=torch.bool)
    for b in range(2):
        leaf_banned[b, catalog.item_leaf[banned[b]].long()] = True
    effective = leaf_banned[:, catalog.item_leaf.long()]
    _check_against_brute_force(tiny_t5(), seqs, catalog, ids, mask, "catalog", banned=banned,
                               effective_banned=effective)
    items, _ = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=3, top_k=2,
                           banned_items=banned)
    for b in range(2):
        assert not any(effective[b, i] for i in items[b].tolist() if i >= 0)


def _effective_bans(catalog, banned):
    """Banning one duplicate bans the shared sequence (the decoder cannot tell duplicates apart)."""
    leaf_banned = torch.zeros((banned.shape[0], catalog.num_leaves), dtype=torch.bool)
    for b in range(banned.shape[0]):
        leaf_banned[b, catalog.item_leaf[banned[b]].long()] = True
    return leaf_banned[:, catalog.item_leaf.long()]


def _ragged_prefix(prefixes):
    """(batch, P) LongTensor with -1 padding: even rows right-padded, odd rows left-padded (both are dropped)."""
    width = max([len(p) for p in prefixes] + [1])
    prefix = torch.full((len(prefixes), width), -1, dtype=torch.long)
    for b, tokens in enumerate(prefixes):
        if tokens:
            if b % 2:
                prefix[b, width - len(tokens):] = torch.tensor(tokens)
            else:
                prefix[b, : len(tokens)] = torch.tensor(tokens)
    return prefix


@SETTINGS
@given(seqs=catalogs(), data=st.data(), family=st.sampled_from(["t5", "t5-generic", "llama"]),
       normalize=st.sampled_from(["catalog", "vocab"]))
def test_decoder_prefix_continues_the_decoder_and_equals_exhaustive_search(seqs, data, family, normalize):
    """Continuing after already-emitted tokens (ragged rows, with bans) == scoring every item after the prefix."""
    catalog = Catalog.from_codes(torch.tensor(seqs))
    model = tiny_llama() if family == "llama" else tiny_t5()
    ids, mask = _inputs(3, left_pad=family == "llama")
    prefixes = data.draw(st.lists(st.lists(st.integers(3, VOCAB - 1), max_size=6), min_size=3, max_size=3))
    banned = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=len(seqs), max_size=len(seqs)),
                                             min_size=3, max_size=3)))
    _check_against_brute_force(model, seqs, catalog, ids, mask, normalize, banned=banned,
                               effective_banned=_effective_bans(catalog, banned), prefixes=prefixes,
                               decoder_prefix=_ragged_prefix(prefixes), fast_model_path=family != "t5-generic")


@pytest.mark.parametrize("family", ["t5", "t5-generic", "llama"])
def test_decoder_prefix_matches_hf_generate_continuing_the_same_prefix(family):
    """The old session path: HF generate from ``decoder_input_ids = [start, prefix]`` + our LogitsProcessor.

    No bans here: the LogitsProcessor renormalises over the children that are not banned, beam_search over all
    catalog children (banned items keep their mass, as in brute_force); bans are covered by the test above."""
    torch.manual_seed(2)
    seqs = torch.stack([torch.randint(0, 4, (40,)) + 3 + level * 4 for level in range(3)], 1).unique(dim=0)
    catalog = Catalog.from_codes(seqs)
    model = tiny_llama() if family == "llama" else tiny_t5()
    ids, mask = _inputs(3, length=6, left_pad=family == "llama")
    prefix = seqs[[0, 5, 9]][:, :, None].expand(-1, -1, 2).reshape(3, -1)[:, :5]  # 5 tokens per user
    items, scores = beam_search(model, catalog, input_ids=ids, attention_mask=mask, num_beams=4, top_k=3,
                                decoder_prefix=prefix, fast_model_path=family != "t5-generic")
    if family == "llama":
        hf_inputs = {"input_ids": torch.cat([ids, prefix], 1),
                     "attention_mask": torch.cat([mask, torch.ones_like(prefix)], 1)}
        start = hf_inputs["input_ids"].shape[1]
    else:
        decoder_input_ids = torch.cat([torch.zeros((3, 1), dtype=torch.long), prefix], 1)
        hf_inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_input_ids}
        start = decoder_input_ids.shape[1]
    processor = CatalogLogitsProcessor(catalog, prompt_length=start)
    out = model.generate(**hf_inputs, num_beams=4, num_return_sequences=3, max_new_tokens=catalog.max_length,
                         logits_processor=[processor], do_sample=False, length_penalty=0.0, output_scores=True,
                         return_dict_in_generate=True)
    hf_items = catalog.items_of(out.sequences[:, start:]).view(3, 3)
    assert torch.equal(items, hf_items)
    torch.testing.assert_close(scores, out.sequences_scores.view(3, 3).float(), atol=1e-4, rtol=1e-4)


def test_decoder_prefix_of_padding_only_is_an_ordinary_search_and_bad_prefixes_raise():
    seqs = [[3, 7], [3, 8], [4, 7], [5, 9]]
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(2)
    plain = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=3)
    padded = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=3,
                         decoder_prefix=torch.full((2, 3), -1))
    assert torch.equal(plain[0], padded[0]) and torch.equal(plain[1], padded[1])
    for bad, message in ((torch.zeros((3, 2), dtype=torch.long), "batch=2"), (torch.zeros(2, dtype=torch.long), "P"),
                         (torch.full((2, 2), -2), "padding"), (torch.zeros((2, 2)), "integer")):
        with pytest.raises(ValueError, match=message):
            beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=3, decoder_prefix=bad)


@SETTINGS
@given(seqs=catalogs(), beams=st.integers(1, 5))
def test_narrow_beams_return_valid_distinct_items_scored_consistently(seqs, beams):
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(2)
    items, scores = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=beams)
    expected = brute_force(tiny_t5(), ids, mask, seqs)
    assert items.shape == (2, beams) == scores.shape
    for b in range(2):
        got = [i for i in items[b].tolist() if i >= 0]
        assert len(set(got)) == len(got)
        torch.testing.assert_close(scores[b, : len(got)], expected[b, got], atol=1e-4, rtol=1e-4)
        assert (scores[b, : len(got)].diff() <= 1e-6).all()  # best first
        # -1 only where the catalog has fewer distinct items than top_k
        assert len(got) == min(beams, catalog.num_leaves)


def test_kernel_path_matches_reference_path_under_interpreter():
    seqs = [[3, 7, 11], [3, 8, 12], [4, 7, 13], [5, 9, 11], [5, 9, 12], [6, 10, 13]]
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(2)
    banned = torch.tensor([[1, -1], [4, 0]])
    ref = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=3, top_k=2,
                      banned_items=banned, use_kernel=False)
    tri = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=3, top_k=2,
                      banned_items=banned, use_kernel=True)
    assert torch.equal(ref[0], tri[0])
    torch.testing.assert_close(ref[1], tri[1])


@pytest.mark.parametrize("normalize", ["catalog", "vocab"])
@pytest.mark.parametrize("family", ["t5", "t5-generic", "llama"])
def test_parity_with_hf_generate_and_logits_processor(family, normalize):
    """t5: the T5 fast decoder; t5-generic: HF forward + EncoderDecoderCache; llama: decoder-only."""
    torch.manual_seed(1)
    seqs = torch.stack([torch.randint(0, 5, (30,)) + 3 + level * 5 for level in range(3)], 1).unique(dim=0)
    catalog = Catalog.from_codes(seqs)
    model = tiny_llama() if family == "llama" else tiny_t5()
    ids, mask = _inputs(3, length=6, left_pad=family == "llama")
    items, scores = beam_search(model, catalog, input_ids=ids, attention_mask=mask, num_beams=5, top_k=4,
                                normalize=normalize, fast_model_path=family != "t5-generic")
    processor = CatalogLogitsProcessor(catalog, normalize=normalize == "catalog")
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=5, num_return_sequences=4,
                         max_new_tokens=catalog.max_length, logits_processor=[processor], do_sample=False,
                         length_penalty=0.0, output_scores=True, return_dict_in_generate=True)
    start = ids.shape[1] if family == "llama" else 1
    hf_items = catalog.items_of(out.sequences[:, start:]).view(3, 4)
    assert torch.equal(items, hf_items)
    torch.testing.assert_close(scores, out.sequences_scores.view(3, 4).float(), atol=1e-4, rtol=1e-4)


def test_edge_one_item_catalog_and_top_k_larger_than_catalog():
    catalog = Catalog.from_codes(torch.tensor([[5, 9]]))
    ids, mask = _inputs(2)
    items, scores = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=6, top_k=4)
    assert items.tolist() == [[0, -1, -1, -1]] * 2
    assert torch.isfinite(scores[:, 0]).all() and torch.isinf(scores[:, 1:]).all()
    torch.testing.assert_close(scores[:, 0], torch.zeros(2))  # one path: probability 1 under the catalog


def test_edge_beams_larger_than_branching_and_all_items_banned():
    seqs = [[3, 5], [3, 6], [4, 5]]  # branching 2
    catalog = Catalog.from_codes(torch.tensor(seqs))
    ids, mask = _inputs(1)
    items, _ = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=10, top_k=10)
    assert sorted(items[0, :3].tolist()) == [0, 1, 2] and (items[0, 3:] == -1).all()
    items, scores = beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, num_beams=2,
                                banned_items=torch.ones((1, 3), dtype=torch.bool))
    assert (items == -1).all() and torch.isinf(scores).all()


def test_unconstrained_twin_matches_hf_generate():
    ids, mask = _inputs(2)
    seqs, scores = beam_search_unconstrained(tiny_t5(), input_ids=ids, attention_mask=mask, num_beams=4, top_k=3,
                                             max_new_tokens=3)
    out = tiny_t5().generate(input_ids=ids, attention_mask=mask, num_beams=4, num_return_sequences=3,
                             max_new_tokens=3, min_new_tokens=3, length_penalty=0.0, do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
    assert torch.equal(seqs.view(6, 3), out.sequences[:, 1:])
    torch.testing.assert_close(scores.view(-1), out.sequences_scores.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_beams": 0}, "num_beams"),
        ({"num_beams": 2, "top_k": 3}, "top_k"),
        ({"normalize": "softmax"}, "normalize"),
        ({"banned_items": torch.zeros((5, 2), dtype=torch.long)}, "banned_items"),
        ({"banned_items": torch.tensor([[7]])}, "banned_items"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    catalog = Catalog.from_codes(torch.tensor([[3, 5], [4, 6]]))
    ids, mask = _inputs(1)
    with pytest.raises(ValueError, match=message):
        beam_search(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, **kwargs)
    with pytest.raises(ValueError, match="input_ids"):
        beam_search(tiny_t5(), catalog, input_ids=ids[0])
