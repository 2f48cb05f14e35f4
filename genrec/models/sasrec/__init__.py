"""SASRec baseline (Kang & McAuley, ICDM 2018): causal self-attention next-item model."""

from __future__ import annotations

from genrec.utils.lazy import lazy_exports

_CONFIG, _MODELING = "genrec.models.sasrec.configuration_sasrec", "genrec.models.sasrec.modeling_sasrec"
__all__ = ["SASREC_LOSS_TYPES", "SASRecConfig", "SASRecModel", "SASRecOutput", "SASRecPreTrainedModel"]
__getattr__, __dir__ = lazy_exports(__name__, {"SASREC_LOSS_TYPES": _CONFIG, "SASRecConfig": _CONFIG,
                                               "SASRecModel": _MODELING, "SASRecOutput": _MODELING,
                                               "SASRecPreTrainedModel": _MODELING})
