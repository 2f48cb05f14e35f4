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
