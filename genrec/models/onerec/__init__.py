"""OneRec: semantic-id encoder, sparse-MoE decoder, session-wise generation."""

from genrec.models.generative import register_generative_auto_classes
from genrec.models.onerec.configuration_onerec import OneRecConfig
from genrec.models.onerec.modeling_onerec import (
    OneRecForConditionalGeneration,
    SessionEncoder,
)

register_generative_auto_classes(OneRecConfig, OneRecForConditionalGeneration)

__all__ = ["OneRecConfig", "OneRecForConditionalGeneration", "SessionEncoder"]
