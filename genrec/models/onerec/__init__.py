"""OneRec: semantic-id encoder, sparse-MoE decoder, session-wise generation."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_EXPORTS = {
    "OneRecConfig": "genrec.models.onerec.configuration_onerec",
    "OneRecForConditionalGeneration": "genrec.models.onerec.modeling_onerec",
    "SessionEncoder": "genrec.models.onerec.modeling_onerec",
}
__all__ = [*sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
