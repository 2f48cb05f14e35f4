"""Popularity baseline: every user gets the items bought most often in the training sequences."""

from __future__ import annotations

from typing import Any

from genrec.utils.lazy import lazy_exports

__all__ = ["PopularityConfig", "PopularityModel", "from_dataset"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "PopularityConfig": "genrec.models.popularity.configuration_popularity",
    "PopularityModel": "genrec.models.popularity.modeling_popularity",
})


def from_dataset(catalog, train_sequences, *, seed: int = 0, **model_kwargs: Any):
    """Count the TRAINING sequences only (no valid/test target); the model comes back fitted."""
    from genrec.models.popularity.modeling_popularity import PopularityModel

    return PopularityModel.from_sequences(train_sequences, list(catalog.item_ids), **model_kwargs)
