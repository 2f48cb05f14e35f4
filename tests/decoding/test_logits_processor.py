"""CatalogLogitsProcessor / constrained_generate: every HF generate() output is a catalog item."""

import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import TopKLogitsWarper

from genrec.decoding import Catalog, CatalogLogitsProcessor, constrained_generate
from tests.decoding.helpers import VOCAB, tiny_llama, tiny_t5


def _catalog():
    torch.manual_seed(3)
    codes = torch.stack([torch.randint(0, 6, (25,)) + 3 + level * 6 for level in range(3)], 1)
    return Catalog.from_codes(codes.unique(dim=0))


def _inputs(batch=3, length=6):
    ids = torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(5))
    return ids, torch.ones_like(ids)


def _generated_items(catalog, model, sequences, prompt_width):
    start = 1 if model.config.is_encoder_decoder else prompt_width
    return catalog.items_of(sequences[:, start:])


@pytest.mark.parametrize("family", ["t5", "llama"])
@pytest.mark.parametrize(
    "sampling",
    [
        dict(do_sample=False, num_beams=1),
        dict(do_sample=False, num_beams=4, num_return_sequences=4),
        dict(do_sample=True, top_k=1, num_beams=1),
        dict(do_sample=True, top_p=0.01, num_beams=3, num_return_sequences=2),
        dict(do_sample=True, top_k=2, top_p=0.5, temperature=0.7, num_beams=1, num_return_sequences=3),
    ],
)
def test_constrained_generate_returns_only_items_even_with_warpers(family, sampling):
    catalog = _catalog()
    model = tiny_t5() if family == "t5" else tiny_llama()
    ids, mask = _inputs()
    out = constrained_generate(model, catalog, input_ids=ids, attention_mask=mask, pad_token_id=0, **sampling)
    items = _generated_items(catalog, model, out, ids.shape[1])
    assert (items >= 0).all(), out


def test_greedy_top_k_1_warper_after_constraint_picks_the_best_valid_token():
    catalog = _catalog()
    ids, mask = _inputs()
    greedy = constrained_generate(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, do_sample=False)
    sampled = constrained_generate(tiny_t5(), catalog, input_ids=ids, attention_mask=mask, do_sample=True, top_k=1)
    assert torch.equal(greedy, sampled)  # top_k=1 over the constrained distribution == constrained greedy


def test_generation_config_warpers_run_after_the_processor_in_generate():
    """transformers 5 applies user processors before the config's warpers: top_k=1 = constrained greedy."""
    catalog = _catalog()
    model = tiny_t5()
    ids, mask = _inputs()
    config = GenerationConfig(do_sample=True, top_k=1, top_p=0.05, max_new_tokens=catalog.max_length,
                              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    processor = CatalogLogitsProcessor(catalog, prompt_length=1)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, logits_processor=[processor])
    greedy = constrained_generate(model, catalog, input_ids=ids, attention_mask=mask, do_sample=False)
    assert torch.equal(out, greedy)
    assert processor.num_restored_rows == 0
    # without the constraint, the same warpers produce non-items from this random model
    unconstrained = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert (catalog.items_of(unconstrained[:, 1:]) < 0).any()


def test_a_warper_placed_before_the_processor_cannot_remove_every_valid_token():
    catalog = _catalog()
    model = tiny_t5()
    ids, mask = _inputs()
    processor = CatalogLogitsProcessor(catalog, prompt_length=1)
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=catalog.max_length,
                         logits_processor=[TopKLogitsWarper(top_k=1), processor])
    assert (catalog.items_of(out[:, 1:]) >= 0).all()
    assert processor.num_restored_rows > 0  # the model's favourite token (pad) was never valid


def test_prompt_length_is_inferred_per_generation_for_decoder_only():
    catalog = _catalog()
    model = tiny_llama()
    processor = CatalogLogitsProcessor(catalog)  # no prompt_length: inferred at each generation's first call
    for width in (6, 9, 4):
        ids, mask = _inputs(2, width)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=catalog.max_length,
                             num_beams=3, num_return_sequences=3, logits_processor=[processor], pad_token_id=0)
        assert (catalog.items_of(out[:, width:]) >= 0).all()


def test_processor_bans_items_per_user():
    catalog = _catalog()
    model = tiny_t5()
    ids, mask = _inputs(2)
    free = constrained_generate(model, catalog, input_ids=ids, attention_mask=mask, num_beams=4,
                                num_return_sequences=4)
    first = catalog.items_of(free[:, 1:]).view(2, 4)
    banned = first[:, :2]  # ban each user's two best items
    out = constrained_generate(model, catalog, input_ids=ids, attention_mask=mask, num_beams=4,
                               num_return_sequences=4, banned_items=banned)
    items = catalog.items_of(out[:, 1:]).view(2, 4)
    assert (items >= 0).all()
    for b in range(2):
        assert not set(items[b].tolist()) & set(banned[b].tolist())


def test_titles_catalog_with_eos_and_longer_generation():
    catalog = Catalog.from_sequences([[5, 6, 7], [5, 6], [9], [9, 4, 4, 4]], eos_token_id=1)
    model = tiny_t5()
    ids, mask = _inputs(2)
    out = constrained_generate(model, catalog, input_ids=ids, attention_mask=mask, num_beams=4,
                               num_return_sequences=4, max_new_tokens=8, eos_token_id=1, pad_token_id=0)
    items = catalog.items_of(out[:, 1:]).view(2, 4)
    assert (items >= 0).all() and all(len(set(row)) == 4 for row in items.tolist())


def test_generation_past_a_complete_item_without_eos_raises():
    catalog = _catalog()
    ids, mask = _inputs(1)
    processor = CatalogLogitsProcessor(catalog, prompt_length=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_t5().generate(input_ids=ids, attention_mask=mask, max_new_tokens=catalog.max_length + 1,
                           min_new_tokens=catalog.max_length + 1, logits_processor=[processor])
    with pytest.raises(ValueError, match="prompt_length"):
        CatalogLogitsProcessor(catalog, prompt_length=-1)
    with pytest.raises(ValueError, match="catalog"):
        CatalogLogitsProcessor("not a catalog")
