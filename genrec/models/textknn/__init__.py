"""Last-item text-kNN baseline: the catalog items whose text is closest to the user's most recent item."""

from genrec.models.textknn.configuration_textknn import TextKNNConfig
from genrec.models.textknn.modeling_textknn import TextKNNModel

__all__ = ["TextKNNConfig", "TextKNNModel"]
