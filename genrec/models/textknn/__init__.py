"""Last-item text-kNN baseline: the catalog items whose text is closest to the user's most recent item."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

__all__ = ["TextKNNConfig", "TextKNNModel"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "TextKNNConfig": "genrec.models.textknn.configuration_textknn",
    "TextKNNModel": "genrec.models.textknn.modeling_textknn",
})
