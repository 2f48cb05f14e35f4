"""The shared T5 base of genrec's generative recommenders (P5, OneRec), laid out as in transformers:

- :mod:`~genrec.models.generative.configuration_generative`: :class:`GenerativeT5Config` (no modeling code);
- :mod:`~genrec.models.generative.modeling_generative`: :class:`GenerativeT5Model` (item-position embeddings,
  sparse-MoE feed-forward, bound item tokenizer + catalog, constrained ``generate`` / ``recommend``);
- :mod:`~genrec.models.generative.cached_decoder`: the T5-specific fast decoder of genrec's beam search.

Names are imported lazily, so reading the config does not import the model.
"""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_CONFIG = "genrec.models.generative.configuration_generative"
_MODELING = "genrec.models.generative.modeling_generative"
_EXPORTS = {
    "FFN_TYPES": _CONFIG,
    "INPUT_GRANULARITIES": _CONFIG,
    "ITEM_VECTOR_OPTIONS": _CONFIG,
    "MOE_LAYERS": _CONFIG,
    "GenerativeT5Config": _CONFIG,
    "GenerativeSeq2SeqOutput": _MODELING,
    "GenerativeT5Model": _MODELING,
    "MoeLoggingCallback": _MODELING,
    "T5SparseMoeLayerFF": _MODELING,
    "build_generative_model": _MODELING,
    "build_generative_training_data": _MODELING,
    "dataset_item_input_vectors": _MODELING,
    "T5CachedDecoder": "genrec.models.generative.cached_decoder",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
