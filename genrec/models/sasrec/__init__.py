"""SASRec baseline (Kang & McAuley, ICDM 2018): causal self-attention next-item model."""

from genrec.models.sasrec.configuration_sasrec import SASREC_LOSS_TYPES, SASRecConfig
from genrec.models.sasrec.modeling_sasrec import SASRecModel, SASRecOutput, SASRecPreTrainedModel

__all__ = ["SASREC_LOSS_TYPES", "SASRecConfig", "SASRecModel", "SASRecOutput", "SASRecPreTrainedModel"]
