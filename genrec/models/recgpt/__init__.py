"""RecGPT (HKUDS/RecGPT): FSQ text-derived item tokens, hybrid attention, parallel next-item code prediction."""

from transformers import AutoConfig, AutoModelForCausalLM

from genrec.models.recgpt.configuration_recgpt import (
    RECGPT_CODE_EMBEDDING_TYPES,
    RECGPT_FFN_TYPES,
    RecGPTConfig,
)
from genrec.models.recgpt.modeling_recgpt import (
    RecGPTForCausalLM,
    RecGPTOutput,
    RecGPTPreTrainedModel,
    hybrid_attention_mask,
)

# Registered here too, so `import genrec.models.recgpt` alone makes the Auto classes resolve "genrec-recgpt".
AutoConfig.register(RecGPTConfig.model_type, RecGPTConfig, exist_ok=True)
AutoModelForCausalLM.register(RecGPTConfig, RecGPTForCausalLM, exist_ok=True)

__all__ = [
    "RECGPT_CODE_EMBEDDING_TYPES",
    "RECGPT_FFN_TYPES",
    "RecGPTConfig",
    "RecGPTForCausalLM",
    "RecGPTOutput",
    "RecGPTPreTrainedModel",
    "hybrid_attention_mask",
]
