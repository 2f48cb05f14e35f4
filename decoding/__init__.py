"""Catalog-constrained decoding: every generated sequence is a real catalog item.

* :class:`Catalog` — compact CSR trie over every item's token sequence (``from_codes``, ``from_sequences``).
* :class:`CatalogLogitsProcessor` / :func:`constrained_generate` — the constraint for any HF ``generate()``.
* :func:`beam_search` — genrec's fast constrained beam search over a model's forward and KV cache.
"""

from genrec.decoding.beam_search import beam_search, beam_search_unconstrained
from genrec.decoding.catalog import Catalog
from genrec.decoding.logits_processor import CatalogLogitsProcessor, constrained_generate

__all__ = ["Catalog", "CatalogLogitsProcessor", "beam_search", "beam_search_unconstrained", "constrained_generate"]
