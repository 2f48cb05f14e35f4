"""genrec models, registered with the transformers Auto classes (no ``trust_remote_code`` needed).

Importing ``genrec.models`` (or any ``genrec.models.*`` module) makes ``AutoConfig.from_pretrained``
and ``AutoModel.from_pretrained`` resolve our ``model_type`` values ("genrec-sasrec", "genrec-popularity",
"genrec-textknn", ...); the encoder-decoder recommenders ("genrec-p5", "genrec-onerec") also load with
``AutoModelForSeq2SeqLM``.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
)

from genrec.models.bigrec import BIGRecConfig, BIGRecForCausalLM
from genrec.models.onerec import OneRecConfig, OneRecForConditionalGeneration
from genrec.models.p5 import P5Config, P5ForConditionalGeneration
from genrec.models.popularity import PopularityConfig, PopularityModel
from genrec.models.recgpt import RecGPTConfig, RecGPTForCausalLM
from genrec.models.sasrec import SASRecConfig, SASRecModel
from genrec.models.textknn import TextKNNConfig, TextKNNModel

__all__ = [
    "BIGRecConfig",
    "BIGRecForCausalLM",
    "OneRecConfig",
    "OneRecForConditionalGeneration",
    "P5Config",
    "P5ForConditionalGeneration",
    "PopularityConfig",
    "PopularityModel",
    "RecGPTConfig",
    "RecGPTForCausalLM",
    "SASRecConfig",
    "SASRecModel",
    "TextKNNConfig",
    "TextKNNModel",
    "register_auto_classes",
]


def register_auto_classes() -> None:
    """Register every genrec config/model pair with the Auto classes (idempotent)."""
    # SASRec and the non-parametric baselines (popularity, text-kNN): AutoModel
    for config_class, model_class in ((SASRecConfig, SASRecModel), (PopularityConfig, PopularityModel),
                                      (TextKNNConfig, TextKNNModel)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
    # decoder-only generative models: AutoModelForCausalLM, and AutoModel for genrec's evaluate path
    for config_class, model_class in ((RecGPTConfig, RecGPTForCausalLM), (BIGRecConfig, BIGRecForCausalLM)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
    # encoder-decoder generative models: AutoModelForSeq2SeqLM, and AutoModel for genrec's evaluate path
    for config_class, model_class in ((P5Config, P5ForConditionalGeneration),
                                      (OneRecConfig, OneRecForConditionalGeneration)):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForSeq2SeqLM.register(config_class, model_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)


register_auto_classes()
