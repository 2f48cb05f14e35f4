"""BIGRec (Bao et al. 2023): LoRA-tuned causal LM writing the next item's title, grounded to the catalog."""

from transformers import AutoConfig, AutoModelForCausalLM

from genrec.models.bigrec.configuration_bigrec import (
    BIGREC_GROUNDING_METHODS,
    DEFAULT_BASE_MODEL,
    DEFAULT_GGUF_FILE,
    BIGRecConfig,
)
from genrec.models.bigrec.grounding import (
    grounding_scores,
    llm_text_embeddings,
    popularity_from_sequences,
)
from genrec.models.bigrec.modeling_bigrec import (
    BIGRecForCausalLM,
    load_base_model,
    resolve_base_model,
)
from genrec.models.bigrec.prompts import (
    BIGRecCollator,
    build_prompt,
    encode_example,
    format_response,
)

# Registered here too, so `import genrec.models.bigrec` alone makes the Auto classes resolve "genrec-bigrec".
AutoConfig.register(BIGRecConfig.model_type, BIGRecConfig, exist_ok=True)
AutoModelForCausalLM.register(BIGRecConfig, BIGRecForCausalLM, exist_ok=True)

__all__ = [
    "BIGREC_GROUNDING_METHODS",
    "DEFAULT_BASE_MODEL",
    "DEFAULT_GGUF_FILE",
    "BIGRecCollator",
    "BIGRecConfig",
    "BIGRecForCausalLM",
    "build_prompt",
    "encode_example",
    "format_response",
    "grounding_scores",
    "llm_text_embeddings",
    "load_base_model",
    "popularity_from_sequences",
    "resolve_base_model",
]
