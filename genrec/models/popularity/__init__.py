"""Popularity baseline: every user gets the items bought most often in the training sequences."""

from genrec.models.popularity.configuration_popularity import PopularityConfig
from genrec.models.popularity.modeling_popularity import PopularityModel

__all__ = ["PopularityConfig", "PopularityModel"]
