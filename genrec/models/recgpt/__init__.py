"""RecGPT (HKUDS/RecGPT): FSQ text-derived item tokens, hybrid attention, parallel next-item code prediction."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_CONFIG, _MODELING = "genrec.models.recgpt.configuration_recgpt", "genrec.models.recgpt.modeling_recgpt"
_EXPORTS = {
    "RECGPT_CODE_EMBEDDING_TYPES": _CONFIG,
    "RECGPT_FFN_TYPES": _CONFIG,
    "RecGPTConfig": _CONFIG,
    "RecGPTForCausalLM": _MODELING,
    "RecGPTOutput": _MODELING,
    "RecGPTPreTrainedModel": _MODELING,
    "hybrid_attention_mask": _MODELING,
}
__all__ = [*sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
