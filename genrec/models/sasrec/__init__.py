"""SASRec baseline (Kang & McAuley, ICDM 2018): causal self-attention next-item model."""

from __future__ import annotations

from typing import Any

from genrec.utils.lazy import lazy_exports

_CONFIG, _MODELING = "genrec.models.sasrec.configuration_sasrec", "genrec.models.sasrec.modeling_sasrec"
__all__ = ["SASREC_LOSS_TYPES", "SASRecConfig", "SASRecModel", "SASRecOutput", "SASRecPreTrainedModel",
           "from_dataset"]
__getattr__, __dir__ = lazy_exports(__name__, {"SASREC_LOSS_TYPES": _CONFIG, "SASRecConfig": _CONFIG,
                                               "SASRecModel": _MODELING, "SASRecOutput": _MODELING,
                                               "SASRecPreTrainedModel": _MODELING})


def from_dataset(catalog, train_sequences, *, seed: int = 0, **model_kwargs: Any):
    """A new SASRec for ``catalog.item_ids`` (the registry's builder; the sequences are the Trainer's)."""
    from genrec.models.sasrec.configuration_sasrec import SASRecConfig
    from genrec.models.sasrec.modeling_sasrec import SASRecModel

    item_ids = list(catalog.item_ids)
    return SASRecModel(SASRecConfig(**{**model_kwargs, "num_items": len(item_ids)}), item_ids=item_ids)
