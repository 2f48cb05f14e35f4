"""Per-item vectors built from a dataset (item text embeddings, optionally plus collaborative dimensions), shared
by the models that read one vector per item: RecGPT (its inputs and fsq ids) and the item-level P5 / OneRec inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["dataset_item_vectors"]


def dataset_item_vectors(catalog, tokenizer_kwargs: dict[str, Any], train_sequences):
    """Item vectors from a dataset: the text embedding, plus ``collaborative_dims`` spectral co-occurrence dimensions
    (RecGPT's ``model.tokenizer`` section; P5 / OneRec's ``item_vectors`` for item-level inputs).

    ``model.tokenizer.collaborative_dims`` (default 0) and ``collaborative_window`` (default 3) are popped from
    the tokenizer section: with ``d > 0`` every item's vector is ``[text ; spectral_d]`` (the spectral part from
    the TRAINING histories only, zero for items never seen there), so both the fsq ids and the model's inputs
    carry collaborative signal; ``model.tokenizer.item_text: false`` drops the text (catalogs without item text:
    the vector is ``spectral_d`` alone). Returns ``None`` (embed text only, inside ``from_catalog``) when ``d = 0``.
    """
    from genrec.tokenization.collaborative import spectral_item_embeddings
    from genrec.tokenization.embeddings import embed_catalog

    dims = tokenizer_kwargs.pop("collaborative_dims", 0)
    window = tokenizer_kwargs.pop("collaborative_window", 3)
    use_text = tokenizer_kwargs.pop("item_text", True)
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 0:
        raise ValueError(f"`model.tokenizer.collaborative_dims` ({dims!r}) must be an integer >= 0")
    if not isinstance(use_text, bool):
        raise ValueError(f"`model.tokenizer.item_text` ({use_text!r}) must be true or false")
    if not use_text and dims == 0:
        raise ValueError("`model.tokenizer.item_text: false` needs `model.tokenizer.collaborative_dims` > 0 "
                         "(the item vectors would be empty)")
    if dims == 0:
        return None
    if train_sequences is None:
        raise ValueError("`model.tokenizer.collaborative_dims` needs the training sequences")
    if not use_text:  # a catalog without item text (Amazon Sports/Toys ship ASINs only): co-occurrence vectors alone
        collaborative = spectral_item_embeddings(train_sequences.values(), catalog.item_ids, dim=dims, window=window)
        logger.info(f"item vectors: {dims} collaborative dimensions, no text "
                    f"({int((~collaborative.any(1)).sum())} items without co-occurrence get zeros)")
        return collaborative
    text = embed_catalog(catalog, tokenizer_kwargs.get("embedding_model"), tokenizer_kwargs.get("embedding_cache_dir"),
                         tokenizer_kwargs.get("text_fields"),
                         batch_size=tokenizer_kwargs.get("embedding_batch_size", 256))
    collaborative = spectral_item_embeddings(train_sequences.values(), catalog.item_ids, dim=dims, window=window)
    logger.info(f"item vectors: {text.shape[1]} text + {dims} collaborative dimensions "
                f"({int((~collaborative.any(1)).sum())} items without co-occurrence get zeros)")
    return np.concatenate([np.asarray(text, dtype=np.float32), collaborative], axis=1)
