"""Last-item text-kNN: rank every catalog item by the cosine similarity of its text to the user's last item.

The item texts (``catalog.text()``: title, brand, categories) are embedded once with a sentence encoder (the
bundled offline all-MiniLM-L6-v2 by default, through :func:`genrec.tokenization.embeddings.embed_catalog`, which
caches the vectors on disk) and L2-normalised. The normalised table is a persistent buffer, saved in
``model.safetensors``, so a loaded checkpoint recommends without the encoder.

Query: the last history item's vector, or with ``last_items = m > 1`` the ``decay ** j``-weighted sum of the last
``m`` items' vectors (j = 0 for the most recent), renormalised; ``score(item) = cosine(query, item)``. With
``exclude_query_items`` (default) the query items themselves score ``-inf``: each would otherwise be its own
nearest neighbour, and Beauty has no repeated purchases.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from genrec.models.nonparametric import NonParametricRecommenderMixin
from genrec.models.textknn.configuration_textknn import TextKNNConfig

__all__ = ["TextKNNModel", "TextKNNPreTrainedModel"]


class TextKNNPreTrainedModel(PreTrainedModel):
    """Config class and loading settings of the text-kNN baseline."""

    config_class = TextKNNConfig
    config: TextKNNConfig
    base_model_prefix = "textknn"
    main_input_name = "input_ids"

    def _init_weights(self, module) -> None:  # no parameters; the embeddings come from the checkpoint or a fit
        pass


class TextKNNModel(NonParametricRecommenderMixin, TextKNNPreTrainedModel):
    """Content-based nearest-neighbour recommender with SASRec's ranking interface.

    Args:
        config (TextKNNConfig): ``num_items`` and ``embedding_dim`` must be > 0.
        item_ids (list[str] | None): catalog ids, ``item_ids[j]`` = score column ``j``.
        item_embeddings (array | None): ``(num_items, embedding_dim)`` item text vectors (L2-normalised here).

    :meth:`set_catalog` re-binds; its one feature is ``item_embeddings`` (default: the items' bound vectors), e.g.
    another domain's item texts embedded by the same encoder.

    Example:
        >>> model = TextKNNModel.from_catalog(data.catalog)                  # doctest: +SKIP
        >>> model.recommend([["12", "40"]], k=3)                             # doctest: +SKIP
        [[('41', 0.93), ('7', 0.88), ('1033', 0.87)]]
    """

    catalog_features: ClassVar[dict[str, str]] = {
        "item_embeddings": "(num_items, embedding_dim) text vector of each item (L2-normalised when bound)"}
    required_catalog_features: ClassVar[tuple[str, ...]] = ("item_embeddings",)
    catalog_row_tensors: ClassVar[dict[str, str]] = {"item_embeddings": "item_embeddings"}

    def __init__(self, config: TextKNNConfig, item_ids: Sequence[str] | None = None, item_embeddings=None):
        super().__init__(config)
        if config.num_items < 1 or config.embedding_dim < 1:
            raise ValueError(f"`num_items` ({config.num_items}) and `embedding_dim` ({config.embedding_dim}) must be "
                             ">= 1 to build a TextKNNModel")
        # (num_items, embedding_dim), unit rows: the whole fitted state
        self.register_buffer("item_embeddings", torch.zeros(config.num_items, config.embedding_dim))
        self.item_ids: list[str] | None = None
        self._item_index: dict[str, int] = {}
        if item_ids is not None:
            self._bind_item_ids(item_ids)
        if item_embeddings is not None:
            self._store_item_embeddings(item_embeddings)
        self.post_init()

    @classmethod
    def from_dataset(cls, catalog, train_sequences=None, *, seed: int = 0, **config_kwargs) -> "TextKNNModel":
        """genrec's one builder (:mod:`genrec.models.recommender`): embed the catalog texts (see
        :meth:`from_catalog`; ``train_sequences`` and ``seed`` are unused)."""
        return cls.from_catalog(catalog, **config_kwargs)

    @classmethod
    def from_catalog(cls, catalog, *, embeddings: np.ndarray | None = None, cache_dir=None,
                     **config_kwargs) -> "TextKNNModel":
        """Embed every catalog item's text (cached on disk) and build the model.

        Args:
            catalog: a :class:`genrec.data.ItemCatalog` (``item_ids``, ``texts(fields)``).
            embeddings: optional precomputed ``(num_items, d)`` vectors in catalog order (skips the encoder).
            cache_dir: embedding cache root (default ``$GENREC_CACHE/embeddings``).
            **config_kwargs: :class:`TextKNNConfig` fields (``num_items`` / ``embedding_dim`` are set here).

        Raises:
            ValueError: invalid config values, or no item of the catalog has any text.
        """
        config = TextKNNConfig(**{**config_kwargs, "num_items": len(catalog.item_ids)})  # validate before embedding
        if embeddings is None:
            from genrec.tokenization.embeddings import embed_catalog

            embeddings = embed_catalog(catalog, config.embedding_model, cache_dir, config.text_fields,
                                       batch_size=config.embedding_batch_size)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"`embeddings` must be (num_items, dim), got shape {embeddings.shape}")
        if config.embedding_dim not in (0, embeddings.shape[1]):
            raise ValueError(f"`embedding_dim` ({config.embedding_dim}) does not match the encoder's vectors "
                             f"({embeddings.shape[1]}); leave it out, it is set from the embeddings")
        config.embedding_dim = int(embeddings.shape[1])
        return cls(config, item_ids=catalog.item_ids, item_embeddings=embeddings)

    def set_item_embeddings(self, item_embeddings) -> None:
        """Deprecated alias (removed in genrec 0.3) of ``set_catalog(item_ids, item_embeddings=...)``: new vectors
        for the bound items (stored as they are when no ids are bound yet).

        Raises:
            ValueError: wrong shape, a non-finite value or an all-zero row.
        """
        from genrec.models.catalog import deprecated_alias

        deprecated_alias("TextKNNModel.set_item_embeddings(vectors)", "set_catalog(item_ids, item_embeddings=vectors)")
        if self.item_ids is None:
            self._store_item_embeddings(item_embeddings)
        else:
            self.set_catalog(self.item_ids, item_embeddings=item_embeddings)

    def _store_item_embeddings(self, item_embeddings) -> None:
        vectors = torch.as_tensor(np.asarray(item_embeddings), dtype=torch.float32)
        expected = (self.config.num_items, self.config.embedding_dim)
        if tuple(vectors.shape) != expected:
            raise ValueError(f"`item_embeddings` shape {tuple(vectors.shape)} must be {expected}")
        self.item_embeddings.copy_(self._check_catalog_rows("item_embeddings", vectors))

    def _check_catalog_rows(self, feature: str, values: torch.Tensor) -> torch.Tensor:
        """L2-normalised item vectors.

        Raises:
            ValueError: a non-finite value or an all-zero row.
        """
        vectors = values.float()
        if not bool(torch.isfinite(vectors).all()):
            raise ValueError(f"`{feature}` holds NaN or infinite values")
        norms = vectors.norm(dim=1)
        if bool((norms == 0).any()):
            raise ValueError(f"`{feature}` has {int((norms == 0).sum())} all-zero rows; cosine is undefined")
        return vectors / norms[:, None]

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`score`."""
        return self.score(input_ids, attention_mask)

    @torch.no_grad()
    def score(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full-ranking scores: cosine similarity of every item to the (decay-weighted) last history items.

        Args:
            input_ids: ``(batch, seq_len)`` left-padded catalog rows + 1 (0 = padding); the newest item is the
                last column.
            attention_mask: ``(batch, seq_len)`` optional, 1 = item (default ``input_ids != 0``).

        Returns:
            ``(batch, num_items)`` float in [-1, 1], ``-inf`` for the query items when ``exclude_query_items``.

        Raises:
            ValueError: wrong shape, or a history whose last ``last_items`` slots are all padding.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        recent = input_ids[:, -self.config.last_items:]  # (batch, m), newest last
        mask = recent != 0 if attention_mask is None else attention_mask[:, -self.config.last_items:].bool()
        if not bool(mask[:, -1].all()):
            raise ValueError("every history must end with an item (left padding only)")
        m = recent.shape[1]
        # weight decay**j for the j-th most recent item (j = 0 for the last column), 0 for padding
        weights = self.config.decay ** torch.arange(m - 1, -1, -1, device=recent.device, dtype=torch.float32)
        weights = weights[None, :] * mask.float()  # (batch, m)
        rows = (recent - 1).clamp(min=0)  # (batch, m) catalog rows; padding reads row 0 with weight 0
        query = (weights[:, :, None] * self.item_embeddings[rows]).sum(1)  # (batch, dim)
        scores = F.normalize(query, dim=1) @ self.item_embeddings.T  # (batch, num_items)
        if self.config.exclude_query_items:
            scores = scores.masked_fill(_rows_mask(rows, mask, self.config.num_items), float("-inf"))
        return scores


def _rows_mask(rows: torch.LongTensor, mask: torch.Tensor, num_items: int) -> torch.Tensor:
    """bool ``(batch, num_items)``: True at the catalog rows in ``rows`` where ``mask`` is True."""
    out = torch.zeros(rows.shape[0], num_items + 1, dtype=torch.bool, device=rows.device)
    out.scatter_(1, torch.where(mask, rows + 1, 0), True)  # column 0 collects the padding
    return out[:, 1:]
