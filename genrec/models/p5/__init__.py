"""P5: personalized-prompt T5 recommender over genrec item tokens."""

from __future__ import annotations

from typing import Any

from genrec.utils.lazy import lazy_exports

_EXPORTS = {
    "P5Config": "genrec.models.p5.configuration_p5",
    "P5ForConditionalGeneration": "genrec.models.p5.modeling_p5",
    "build_prompt_tokenizer": "genrec.models.p5.modeling_p5",
    "DIRECT_TEMPLATES": "genrec.models.p5.prompts",
    "SEQUENTIAL_TEMPLATES": "genrec.models.p5.prompts",
    "PromptBuilder": "genrec.models.p5.prompts",
}
__all__ = [*sorted(_EXPORTS), "from_dataset"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def from_dataset(catalog, train_sequences, *, seed: int = 0, **model_kwargs: Any):
    """Fit the configured item tokenizer on the catalog + TRAINING sequences and build P5 around it."""
    from genrec.models.generative.modeling_generative import build_generative_model
    from genrec.models.p5.modeling_p5 import P5ForConditionalGeneration

    return build_generative_model(P5ForConditionalGeneration, model_kwargs, catalog, train_sequences, seed=seed)
