"""BIGRec (Bao et al. 2023): LoRA-tuned causal LM writing the next item's title, grounded to the catalog."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_CONFIG = "genrec.models.bigrec.configuration_bigrec"
_GROUNDING = "genrec.models.bigrec.grounding"
_MODELING = "genrec.models.bigrec.modeling_bigrec"
_PROMPTS = "genrec.models.bigrec.prompts"
_EXPORTS = {
    "BIGREC_GROUNDING_METHODS": _CONFIG,
    "DEFAULT_BASE_MODEL": _CONFIG,
    "DEFAULT_GGUF_FILE": _CONFIG,
    "BIGRecConfig": _CONFIG,
    "grounding_scores": _GROUNDING,
    "llm_text_embeddings": _GROUNDING,
    "popularity_from_sequences": _GROUNDING,
    "BIGRecForCausalLM": _MODELING,
    "load_base_model": _MODELING,
    "resolve_base_model": _MODELING,
    "BIGRecCollator": _PROMPTS,
    "build_prompt": _PROMPTS,
    "encode_example": _PROMPTS,
    "format_response": _PROMPTS,
}
__all__ = [*sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
