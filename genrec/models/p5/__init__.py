"""P5: personalized-prompt T5 recommender over genrec item tokens."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_EXPORTS = {
    "P5Config": "genrec.models.p5.configuration_p5",
    "P5ForConditionalGeneration": "genrec.models.p5.modeling_p5",
    "build_prompt_tokenizer": "genrec.models.p5.modeling_p5",
    "DIRECT_TEMPLATES": "genrec.models.p5.prompts",
    "SEQUENTIAL_TEMPLATES": "genrec.models.p5.prompts",
    "PromptBuilder": "genrec.models.p5.prompts",
}
__all__ = [*sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
