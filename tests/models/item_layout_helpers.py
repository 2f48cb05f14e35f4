"""What the item-layout P5 / OneRec suites share: a 30-item catalog, its 8-d item vectors and the two model classes
(``test_generative_item_inputs.py``, ``test_generative_item_head.py``; the fixture ``item_tokenizer`` is in
``conftest.py``)."""

from genrec.models.onerec import OneRecForConditionalGeneration
from genrec.models.p5 import P5ForConditionalGeneration

NUM_ITEMS = 30
VECTOR_DIM = 8
MODELS = {
    "p5": (P5ForConditionalGeneration, {}),
    "onerec": (OneRecForConditionalGeneration, {"num_experts": 4, "moe_intermediate_size": 32, "session_length": 2}),
}


def toy_run_values(model_type: str, dataset, **model_extra) -> dict:
    """``genrec train`` values of the toy item-layout run: collaborative item vectors (the toy data has no text),
    one random cut per user per epoch, 30 epochs, no validation (the suites assert on test recall@10)."""
    model = {"type": model_type, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4,
             "dropout_rate": 0.0, "max_history_items": 5, "num_beams": 10, "input_granularity": "item",
             "item_vectors": {"item_text": False, "collaborative_dims": 4},
             "item_tokenizer_method": "random", "item_tokenizer_config": {"codebook_size": 4, "num_levels": 3},
             **model_extra}
    training = {"seed": 0, "learning_rate": 0.01, "per_device_train_batch_size": 8, "num_train_epochs": 30,
                "train_targets": "random_cut", "train_sampling_strategy": "group_by_length", "eval_strategy": "no",
                "logging_strategy": "epoch", "eval_ks": [5, 10], "early_stopping_patience": None,
                "report_to": "none", "disable_tqdm": True}
    return {"model": model, "data": {"dataset": dataset}, "training": training}
