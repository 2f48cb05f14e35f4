"""Shared tiny fixtures of the alignment tests: a toy split with a planted pattern, tiny P5 / OneRec / RecGPT /
BIGRec models over its catalog, and a reward model trained on it (all session-scoped: built once, a few seconds).

The toy data follows tests/conftest.py's ``toy_dataset`` (user ``u`` buys items ``start, start + 1, ...`` mod 24),
built in memory so session-scoped fixtures can use it: the next item is always the current item + 1, which a
working reward model learns in well under a second while item popularity carries no signal.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

NUM_ITEMS = 24
NUM_USERS = 60
COLORS = ["Red", "Blue", "Green", "Rose", "Black", "Gold"]
PRODUCTS = ["Lipstick", "Nail Polish", "Face Mask", "Shampoo"]

ONEREC_TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4, "dropout_rate": 0.0,
               "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "max_history_items": 6,
               "session_length": 3, "num_beams": 6}
P5_TINY = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4, "dropout_rate": 0.0,
           "max_history_items": 6, "num_beams": 8, "num_candidates": 5}
RECGPT_TINY = {"num_chunks": 2, "codebook_size": 25, "fsq_levels": [5, 5], "text_embedding_dim": 8, "hidden_size": 16,
               "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
               "max_position_embeddings": 6, "hidden_dropout_prob": 0.0, "attention_dropout": 0.0}
REWARD_TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_history_items": 8, "dropout": 0.0}


def toy_sequences(num_users: int = NUM_USERS, num_items: int = NUM_ITEMS) -> dict[str, list[str]]:
    """User ``u`` buys ``start, start + 1, ...`` (mod ``num_items``), 5 to 8 items (ids "1".."num_items")."""
    sequences = {}
    for user in range(1, num_users + 1):
        start, length = (user * 5) % num_items, 5 + user % 4
        sequences[str(user)] = [str((start + step) % num_items + 1) for step in range(length)]
    return sequences


def toy_titles(num_items: int = NUM_ITEMS) -> list[str]:
    return [f"{COLORS[i % len(COLORS)]} {PRODUCTS[i // len(COLORS) % len(PRODUCTS)]}" for i in range(num_items)]


@pytest.fixture(scope="session")
def toy_split():
    """``LeaveOneOutSplit`` of the planted "+1" data: 60 users, 24 titled items."""
    from genrec.data import leave_one_out
    from genrec.data.catalog import ItemCatalog
    from genrec.data.interactions import InteractionData

    item_ids = [str(i) for i in range(1, NUM_ITEMS + 1)]
    catalog = ItemCatalog(item_ids, [{"title": title} for title in toy_titles()], name="toy")
    return leave_one_out(InteractionData(name="toy", sequences=toy_sequences(), catalog=catalog))


@pytest.fixture(scope="session")
def toy_item_tokenizer(toy_split):
    """A fitted "random" item tokenizer (3 levels of 4 codes) over the toy catalog."""
    from genrec.tokenization import get_tokenizer_class

    catalog = SimpleNamespace(item_ids=list(toy_split.data.item_ids))
    return get_tokenizer_class("random")(codebook_size=4, num_levels=3, seed=0).fit(catalog)


@pytest.fixture(scope="session")
def tiny_onerec(toy_item_tokenizer):
    """Untrained tiny OneRec (MoE decoder, session_length 3) in evaluation mode."""
    from genrec.models.onerec import OneRecForConditionalGeneration

    torch.manual_seed(0)
    return OneRecForConditionalGeneration.from_item_tokenizer(toy_item_tokenizer, **ONEREC_TINY).eval()


@pytest.fixture(scope="session")
def tiny_p5(toy_item_tokenizer):
    """Untrained tiny P5 in evaluation mode."""
    from genrec.models.p5 import P5ForConditionalGeneration

    torch.manual_seed(0)
    return P5ForConditionalGeneration.from_item_tokenizer(toy_item_tokenizer, **P5_TINY).eval()


@pytest.fixture(scope="session")
def tiny_recgpt(toy_split):
    """Untrained tiny RecGPT with unique 2-chunk codes (``(j mod 5, j div 5)``) and random text embeddings."""
    from genrec.models.recgpt import RecGPTConfig, RecGPTForCausalLM

    rows = np.arange(NUM_ITEMS)
    codes = np.stack([rows % 5, rows // 5], axis=1)
    text = np.random.default_rng(0).normal(size=(NUM_ITEMS, 8)).astype(np.float32)
    torch.manual_seed(0)
    model = RecGPTForCausalLM(RecGPTConfig(**RECGPT_TINY), item_ids=list(toy_split.data.item_ids),
                              item_codes=codes, item_text_embeddings=text)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_bigrec(toy_split, tmp_path_factory):
    """Untrained tiny BIGRec: a random 2-layer Llama + a byte-level BPE tokenizer trained on the prompt and titles,
    saved to a temporary folder (no download), LoRA r=4, catalog = the toy items and titles."""
    from tests.llm_helpers import save_tiny_llama, tiny_bigrec

    titles = toy_titles()
    folder = save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), titles)
    return tiny_bigrec(folder, toy_split.data.item_ids, titles, num_beams=4, max_history_items=5).eval()


@pytest.fixture(scope="session")
def toy_reward(toy_split):
    """``(reward_model, metrics)`` trained on the toy split (about half a second on one thread)."""
    from genrec.alignment.reward import RewardModelConfig, train_reward_model

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_reward_model(toy_split, config=RewardModelConfig(**REWARD_TINY), epochs=40, batch_size=16,
                                  learning_rate=1e-2, num_eval_negatives=10, seed=0)
    finally:
        torch.set_num_threads(previous)
