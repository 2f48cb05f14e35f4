"""Last-item text-kNN baseline: the catalog items whose text is closest to the user's most recent item."""

from __future__ import annotations

from typing import Any

from genrec.utils.lazy import lazy_exports

__all__ = ["TextKNNConfig", "TextKNNModel", "from_dataset"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "TextKNNConfig": "genrec.models.textknn.configuration_textknn",
    "TextKNNModel": "genrec.models.textknn.modeling_textknn",
})


def from_dataset(catalog, train_sequences, *, seed: int = 0, **model_kwargs: Any):
    """Embed the catalog's item texts (cached); the model comes back fitted."""
    from genrec.models.textknn.modeling_textknn import TextKNNModel

    return TextKNNModel.from_catalog(catalog, **model_kwargs)
