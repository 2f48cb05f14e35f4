"""Binding a model's item catalog: the one ``set_catalog(item_ids, **item_features)`` and ``item_ids.json``.

Every genrec model ranks a *catalog*: ``item_ids[j]`` is column ``j`` of ``score`` and the ids ``recommend``
returns. :meth:`CatalogMixin.set_catalog` is the one way to bind or replace it, on every model:

* ``item_ids``: distinct ids in column order (at least one).
* ``**item_features``: what the model needs to know about each item, by name (row ``j`` = ``item_ids[j]``); the
  names a model takes are its ``catalog_features`` (SASRec ``item_embeddings``, popularity ``item_counts``,
  text-kNN ``item_embeddings``, RecGPT ``item_codes`` / ``item_text_embeddings`` / ``texts``, BIGRec ``titles`` /
  ``popularity``, P5/OneRec ``item_tokenizer`` / ``tokenizer`` / ``item_token_table``, the reward model
  ``item_embeddings`` / ``item_bias``). An unknown name is a ``ValueError`` listing the accepted ones.
* **The default: a feature left out is taken from the bound catalog, matched by id.** So
  ``model.set_catalog(ids)`` with no features restricts and/or reorders the bound catalog (every item keeps its
  embedding, count, codes, title, ...); ids the model has no features for raise one ``ValueError`` naming them and
  the features they need. A model whose rows have no ids yet (built without them, or loaded without
  ``item_ids.json``) names its rows in order instead: ``set_catalog(ids)`` then needs ``num_items`` ids.

The ids-only models (SASRec, the reward model, the popularity / text-kNN baselines: their config holds
``num_items`` and their per-item state is a row of a tensor) share :class:`CatalogIdsMixin`, which also saves and
restores ``item_ids.json`` beside the weights (:func:`save_item_ids`, :func:`load_item_ids`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers.utils import logging

from genrec.models.histories import catalog_fingerprint, catalog_index, check_catalog_fingerprint

logger = logging.get_logger(__name__)

__all__ = ["ITEM_IDS_FILE", "CatalogIdsMixin", "CatalogMixin", "ItemEmbeddingCatalogMixin", "check_catalog_ids",
           "deprecated_alias", "load_item_ids", "save_item_ids"]

ITEM_IDS_FILE = "item_ids.json"


def deprecated_alias(old: str, new: str) -> None:
    """Warn once per call site that ``old`` is a deprecated alias of ``new`` (removed in genrec 0.3)."""
    warnings.warn(f"{old} is deprecated and will be removed in genrec 0.3; use {new}", DeprecationWarning,
                  stacklevel=3)


def check_catalog_ids(item_ids: Sequence[str]) -> list[str]:
    """Validate catalog ids (column order) and return them as ``str``.

    Raises:
        ValueError: a string instead of a list, no id at all, or duplicate ids (named).
    """
    if isinstance(item_ids, (str, bytes)) or not isinstance(item_ids, Sequence):
        raise ValueError(f"`item_ids` must be a list of item ids, not {type(item_ids).__name__}")
    item_ids = [str(item) for item in item_ids]
    if not item_ids:
        raise ValueError("`item_ids` is empty; a catalog needs at least one item")
    if len(set(item_ids)) != len(item_ids):
        seen: set[str] = set()
        duplicates = [item for item in item_ids if item in seen or seen.add(item)]
        raise ValueError(f"`item_ids` contains duplicate ids ({', '.join(map(repr, dict.fromkeys(duplicates)))}); "
                         "every catalog id must be unique")
    return item_ids


def save_item_ids(save_directory: str | os.PathLike, item_ids: Sequence[str]) -> None:
    """Write ``item_ids.json`` (``{"item_ids": [...]}``, column order) into ``save_directory``, atomically."""
    from genrec.utils.io import atomic_write_json

    atomic_write_json(Path(save_directory) / ITEM_IDS_FILE, {"item_ids": list(item_ids)}, indent=0)


def load_item_ids(pretrained_model_name_or_path: str | os.PathLike, from_pretrained_kwargs: Mapping[str, Any]
                  ) -> list[str] | None:
    """The ids of the ``item_ids.json`` beside a checkpoint (local folder or Hub cache), or None when it has none.

    Args:
        pretrained_model_name_or_path: what ``from_pretrained`` was given.
        from_pretrained_kwargs: its keyword arguments (``subfolder``, ``revision``, ``cache_dir``, ...).

    Raises:
        ValueError: the file is not ``{"item_ids": [...]}`` JSON (the message names it).
    """
    from genrec.models.histories import read_item_ids_file
    from genrec.utils.hub import hub_lookup, optional_file

    path = optional_file(pretrained_model_name_or_path, ITEM_IDS_FILE, **hub_lookup(dict(from_pretrained_kwargs)))
    return None if path is None else read_item_ids_file(path)


class CatalogMixin:
    """The one catalog-binding method of every genrec model (see the module docstring).

    A model declares two class attributes and implements two hooks:

    * :attr:`catalog_features`: feature name -> what it is (shown in errors and docs);
    * :attr:`required_catalog_features`: those a catalog of new items must give (a tuple of names = any one of
      them); features the model can take from its bound catalog never count as missing;
    * :meth:`_catalog_defaults`: the features it can take from its bound catalog for given ids;
    * :meth:`_bind_catalog`: validate the complete features and bind them.
    """

    catalog_features: ClassVar[dict[str, str]] = {}
    required_catalog_features: ClassVar[tuple[str | tuple[str, ...], ...]] = ()
    #: the order of the features an older ``set_catalog`` took by position (still accepted, deprecated)
    positional_catalog_features: ClassVar[tuple[str, ...]] = ()

    def set_catalog(self, item_ids: Sequence[str], *features_by_position: Any, **item_features: Any) -> None:
        """Bind the catalog that :meth:`recommend` and :meth:`score` rank, replacing the bound one.

        Args:
            item_ids: distinct ids; ``item_ids[j]`` becomes column ``j`` of ``score``.
            **item_features: the model's per-item features by name (its ``catalog_features``), row ``j`` for
                ``item_ids[j]``. A feature left out (or None) is taken from the bound catalog, matched by id: with
                none at all, ``set_catalog(ids)`` restricts or reorders the bound catalog. A model whose rows have
                no ids yet names its rows in order (``len(item_ids)`` must then be its row count).
            *features_by_position: deprecated; the features of an older signature (BIGRec ``titles,
                popularity``; RecGPT ``item_codes, item_text_embeddings``), in that order.

        Raises:
            ValueError: bad ``item_ids`` (a string, empty, duplicates), an unknown feature name (the accepted ones
                are listed), a feature missing for ids the bound catalog lacks (the ids and features are named),
                or a feature of the wrong shape / values (named by the model).
        """
        name = type(self).__name__
        if features_by_position:
            names = self.positional_catalog_features
            if len(features_by_position) > len(names):
                raise TypeError(f"{name}.set_catalog() takes item_ids and keyword features "
                                f"({', '.join(self.catalog_features)}), got {len(features_by_position)} more "
                                "positional arguments")
            warnings.warn(f"passing item features by position to {name}.set_catalog() is deprecated and will be "
                          f"removed in genrec 0.3; pass them by name: set_catalog(item_ids, "
                          f"{', '.join(f'{n}=...' for n in names[:len(features_by_position)])})",
                          DeprecationWarning, stacklevel=2)
            for feature, value in zip(names, features_by_position):
                if feature in item_features:
                    raise TypeError(f"{name}.set_catalog() got multiple values for {feature!r}")
                item_features[feature] = value
        item_ids = check_catalog_ids(item_ids)
        unknown = [feature for feature in item_features if feature not in self.catalog_features]
        if unknown:
            accepted = ", ".join(f"`{feature}`" for feature in self.catalog_features) or "none"
            raise ValueError(f"{name}.set_catalog() got unknown item feature(s) "
                             f"{', '.join(f'`{feature}`' for feature in unknown)}; it takes: {accepted}")
        given = {feature: value for feature, value in item_features.items() if value is not None}
        features = {**self._catalog_defaults(item_ids, given), **given}
        missing = [group for group in self.required_catalog_features
                   if not any(feature in features for feature in ((group,) if isinstance(group, str) else group))]
        if missing:
            needed = " and ".join(f"`{group}`" if isinstance(group, str) else " or ".join(f"`{g}`" for g in group)
                                  for group in missing)
            index = self.item_index
            new = [item for item in item_ids if item not in index]
            shown = ", ".join(map(repr, new[:5])) + (f" (+{len(new) - 5} more)" if len(new) > 5 else "")
            reason = (f"the item ids {shown} are not in the bound catalog" if index and new
                      else "the model has no bound catalog to take them from")
            raise ValueError(f"{name}.set_catalog() needs {needed}: {reason}")
        self._bind_catalog(item_ids, **features)

    def bound_rows(self, item_ids: Sequence[str]) -> list[int] | None:
        """Rows of ``item_ids`` in the bound catalog, or None when one of them is not bound."""
        index = self.item_index
        rows = [index.get(item) for item in item_ids]
        return None if any(row is None for row in rows) else rows

    def _catalog_defaults(self, item_ids: list[str], given: dict[str, Any]) -> dict[str, Any]:
        """The features of ``item_ids`` the model takes from its bound catalog (``given`` = what the caller passed).

        Default: none. Return only what is known for every id (an id outside the bound catalog: usually nothing).
        """
        return {}

    def _bind_catalog(self, item_ids: list[str], **features: Any) -> None:
        """Bind validated ids with their features (defaults already merged). Raise ``ValueError`` on bad values."""
        raise NotImplementedError(f"{type(self).__name__} does not implement catalog binding")


def _row_tensor(model: nn.Module, path: str) -> tuple[nn.Module, str, torch.Tensor]:
    """``(owner module, attribute, tensor)`` of a dotted tensor path such as ``"item_embeddings.weight"``."""
    owner_path, _, attribute = path.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    return owner, attribute, getattr(owner, attribute)


class CatalogIdsMixin(CatalogMixin):
    """Catalog of the models whose config holds ``num_items`` and whose per-item state is tensor rows (SASRec, the
    reward model, the popularity / text-kNN baselines): ``item_ids`` / ``item_index``, :meth:`set_catalog` over
    those rows, and ``item_ids.json`` saved by ``save_pretrained`` and restored by ``from_pretrained``.

    A host lists its row tensors in :attr:`catalog_row_tensors` (feature name -> dotted attribute path; catalog
    row ``j`` is tensor row ``j + catalog_row_offset``) and may validate/normalise a feature in
    :meth:`_check_catalog_rows`. Re-binding a catalog of another size resizes those tensors and ``num_items``.
    """

    catalog_row_tensors: ClassVar[dict[str, str]] = {}
    #: tensor row of catalog row 0 (1 where row 0 is padding)
    catalog_row_offset: ClassVar[int] = 0
    #: save the ids' fingerprint in config.json and check it on load (ids that do not belong to the weights fail)
    fingerprint_item_ids: ClassVar[bool] = False

    def _bind_item_ids(self, item_ids: Sequence[str]) -> None:
        """Name the model's rows: ``item_ids[j]`` is catalog row ``j``; the tensors are left as they are.

        Raises:
            ValueError: wrong length or duplicate ids.
        """
        self.item_ids, self._item_index = catalog_index(item_ids, self.config.num_items)

    def set_item_ids(self, item_ids: Sequence[str]) -> None:
        """Deprecated alias (removed in genrec 0.3): name the rows in order, as before; use :meth:`set_catalog`.

        Raises:
            ValueError: wrong length or duplicate ids.
        """
        deprecated_alias(f"{type(self).__name__}.set_item_ids(item_ids)", "set_catalog(item_ids)")
        self._bind_item_ids(item_ids)

    @property
    def item_index(self) -> dict[str, int]:
        """Catalog id -> row (empty until ``item_ids`` are bound)."""
        return self._item_index

    def _catalog_defaults(self, item_ids: list[str], given: dict[str, Any]) -> dict[str, Any]:
        if self.item_ids is None:  # rows without ids: name them in order
            rows = list(range(len(item_ids))) if len(item_ids) == self.config.num_items else None
        else:
            rows = self.bound_rows(item_ids)
        if rows is None:
            return {}
        index = torch.tensor(rows, dtype=torch.long) + self.catalog_row_offset
        defaults = {}
        for feature, path in self.catalog_row_tensors.items():
            tensor = _row_tensor(self, path)[2]
            defaults[feature] = tensor.detach()[index.to(tensor.device)].clone()
        return defaults

    def _check_catalog_rows(self, feature: str, values: torch.Tensor) -> torch.Tensor:
        """Validate (and possibly normalise) one feature's ``(num_items, ...)`` values. Default: as they are."""
        return values

    @torch.no_grad()
    def _bind_catalog(self, item_ids: list[str], **features: Any) -> None:
        size = len(item_ids)
        offset = self.catalog_row_offset
        checked = {}
        for feature, path in self.catalog_row_tensors.items():
            tensor = _row_tensor(self, path)[2]
            shape = (size, *tensor.shape[1:])
            if feature in features:
                values = torch.as_tensor(features[feature])
                if tuple(values.shape) != shape:
                    raise ValueError(f"`{feature}` has shape {tuple(values.shape)}; {type(self).__name__} needs "
                                     f"{shape} (one row per item id)")
                if not values.is_floating_point() and tensor.is_floating_point():
                    values = values.float()
                checked[feature] = self._check_catalog_rows(feature, values)
            else:  # optional and not given: zeros
                checked[feature] = tensor.new_zeros(shape)
        for feature, path in self.catalog_row_tensors.items():
            owner, attribute, tensor = _row_tensor(self, path)
            values = checked[feature].to(device=tensor.device, dtype=tensor.dtype)
            if tensor.shape[0] == size + offset:  # same size: in place (keeps the Parameter an optimizer holds)
                tensor[offset:] = values
                continue
            resized = torch.cat([tensor[:offset], values])
            if isinstance(tensor, nn.Parameter):
                setattr(owner, attribute, nn.Parameter(resized, requires_grad=tensor.requires_grad))
            else:
                owner.register_buffer(attribute, resized)
            if isinstance(owner, nn.Embedding):
                owner.num_embeddings = resized.shape[0]
        self.config.num_items = size
        self._bind_item_ids(item_ids)

    # ----- item_ids.json ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """``PreTrainedModel.save_pretrained`` plus ``item_ids.json`` (the catalog, column order) and the model card
        ``README.md``; with
        :attr:`fingerprint_item_ids`, config.json gets the ids' fingerprint, which ``from_pretrained`` checks."""
        if self.item_ids is not None and self.fingerprint_item_ids:
            self.config.catalog_fingerprint = catalog_fingerprint(self.item_ids)
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        if self.item_ids is not None:
            save_item_ids(save_directory, self.item_ids)
        from genrec.models.model_card import save_model_card

        save_model_card(self, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that also restores ``item_ids.json`` when present.

        Raises:
            ValueError: ``item_ids.json`` is damaged, has another length than the weights' rows, or (with
                :attr:`fingerprint_item_ids`) is not the catalog the weights were saved with.
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        item_ids = load_item_ids(pretrained_model_name_or_path, kwargs)
        if item_ids is None:
            logger.warning(f"{pretrained_model_name_or_path}: no {ITEM_IDS_FILE}; bind the catalog with "
                           "set_catalog(item_ids) before ranking")
            return model
        model._bind_item_ids(item_ids)
        if cls.fingerprint_item_ids:
            check_catalog_fingerprint(model.config, catalog_fingerprint(model.item_ids), pretrained_model_name_or_path,
                                      ITEM_IDS_FILE)
        return model


class ItemEmbeddingCatalogMixin(CatalogIdsMixin):
    """:class:`CatalogIdsMixin` of the id-embedding models (SASRec, the reward model): catalog row ``j`` is row
    ``j + 1`` of ``item_embeddings`` (row 0 = padding), which is also the input embedding."""

    catalog_row_offset: ClassVar[int] = 1

    def get_input_embeddings(self):
        return self.item_embeddings

    def set_input_embeddings(self, value) -> None:
        self.item_embeddings = value
