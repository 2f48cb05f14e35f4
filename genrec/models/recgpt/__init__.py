"""RecGPT (HKUDS/RecGPT): FSQ text-derived item tokens, hybrid attention, parallel next-item code prediction."""

from __future__ import annotations

from typing import Any

from genrec.utils.checks import is_int
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
__all__ = [*sorted(_EXPORTS), "from_dataset"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def from_dataset(catalog, train_sequences, *, seed: int = 0, tokenizer: dict | None = None, **model_kwargs: Any):
    """Embed the item texts (cached), fit the fsq item tokenizer and build the model.

    Args:
        tokenizer: the run config's ``model.tokenizer`` section (fsq tokenizer fields, plus
            ``collaborative_dims`` / ``collaborative_window``, see :func:`_item_vectors`).
    """
    from genrec.models.recgpt.modeling_recgpt import RecGPTForCausalLM

    tokenizer_kwargs = dict(tokenizer or {})
    embeddings = _item_vectors(catalog, tokenizer_kwargs, train_sequences)
    return RecGPTForCausalLM.from_catalog(catalog, embeddings=embeddings, tokenizer_kwargs=tokenizer_kwargs,
                                          **model_kwargs)


def _item_vectors(catalog, tokenizer_kwargs: dict[str, Any], train_sequences):
    """RecGPT's item vectors: the text embedding, plus ``collaborative_dims`` spectral co-occurrence dimensions.

    ``model.tokenizer.collaborative_dims`` (default 0) and ``collaborative_window`` (default 3) are popped from
    the tokenizer section: with ``d > 0`` every item's vector is ``[text ; spectral_d]`` (the spectral part from
    the TRAINING histories only, zero for items never seen there), so both the fsq ids and the model's inputs
    carry collaborative signal. Returns ``None`` (embed text only, inside ``from_catalog``) when ``d = 0``.
    """
    import numpy as np
    from transformers.utils import logging

    from genrec.tokenization.collaborative import spectral_item_embeddings
    from genrec.tokenization.embeddings import embed_catalog

    dims = tokenizer_kwargs.pop("collaborative_dims", 0)
    window = tokenizer_kwargs.pop("collaborative_window", 3)
    if not is_int(dims) or dims < 0:
        raise ValueError(f"`model.tokenizer.collaborative_dims` ({dims!r}) must be an integer >= 0")
    if dims == 0:
        return None
    if train_sequences is None:
        raise ValueError("`model.tokenizer.collaborative_dims` needs the training sequences")
    text = embed_catalog(catalog, tokenizer_kwargs.get("embedding_model"), tokenizer_kwargs.get("embedding_cache_dir"),
                         tokenizer_kwargs.get("text_fields"),
                         batch_size=tokenizer_kwargs.get("embedding_batch_size", 256))
    collaborative = spectral_item_embeddings(train_sequences.values(), catalog.item_ids, dim=dims, window=window)
    logging.get_logger(__name__).info(f"recgpt item vectors: {text.shape[1]} text + {dims} collaborative dimensions "
                f"({int((~collaborative.any(1)).sum())} items without co-occurrence get zeros)")
    return np.concatenate([np.asarray(text, dtype=np.float32), collaborative], axis=1)
