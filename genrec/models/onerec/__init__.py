"""OneRec: semantic-id encoder, sparse-MoE decoder, session-wise generation."""

from __future__ import annotations

from typing import Any

from genrec.utils.lazy import lazy_exports

_EXPORTS = {
    "OneRecConfig": "genrec.models.onerec.configuration_onerec",
    "OneRecForConditionalGeneration": "genrec.models.onerec.modeling_onerec",
    "SessionEncoder": "genrec.models.onerec.modeling_onerec",
}
__all__ = [*sorted(_EXPORTS), "from_dataset"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def from_dataset(catalog, train_sequences, *, seed: int = 0, **model_kwargs: Any):
    """Fit the configured item tokenizer on the catalog + TRAINING sequences and build OneRec around it."""
    from genrec.models.generative.modeling_generative import build_generative_model
    from genrec.models.onerec.modeling_onerec import OneRecForConditionalGeneration

    return build_generative_model(OneRecForConditionalGeneration, model_kwargs, catalog, train_sequences,
                                  seed=seed)
