"""Popularity baseline: every user gets the items bought most often in the training sequences."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

__all__ = ["PopularityConfig", "PopularityModel"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "PopularityConfig": "genrec.models.popularity.configuration_popularity",
    "PopularityModel": "genrec.models.popularity.modeling_popularity",
})
