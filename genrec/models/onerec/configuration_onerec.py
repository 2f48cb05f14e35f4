"""OneRec configuration (Kuaishou, "OneRec: Unifying Retrieve and Rank with Generative Recommender", 2025)."""

from __future__ import annotations

from genrec.models.generative.configuration_generative import GenerativeT5Config
from genrec.utils.checks import check_int

__all__ = ["OneRecConfig"]


class OneRecConfig(GenerativeT5Config):
    r"""Every architectural number of a genrec OneRec model.

    An encoder over the user's history of semantic ids (balanced RQ-KMeans codes by default) and a decoder whose
    feed-forward layers are sparse MoE blocks; the decoder emits a *session* of items. Inherits the T5 fields and
    :class:`genrec.models.generative.GenerativeT5Config`'s shared fields; the defaults differ: ``ffn_type="moe"``
    in the ``"decoder"`` layers, balanced ``rq-kmeans`` (3 levels x 256).

    Args:
        session_length (int, defaults to 5): items per generated session (``m``) and per training target (the next
            ``m`` items of the history; fewer at the end of a sequence). ``recommend`` always ranks next items
            (m = 1); :meth:`~genrec.models.onerec.OneRecForConditionalGeneration.generate_sessions` emits sessions.
    """

    model_type = "genrec-onerec"

    ffn_type: str = "moe"
    moe_intermediate_size: int | None = 256
    max_history_items: int = 50
    session_length: int = 5

    def __post_init__(self, **kwargs):
        if self.item_tokenizer_config is None and self.item_tokenizer_method == "rq-kmeans":
            self.item_tokenizer_config = {"num_levels": 3, "codebook_size": 256, "balanced": True}
        super().__post_init__(**kwargs)
        check_int("session_length", self.session_length, 1)
