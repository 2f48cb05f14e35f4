"""P5: personalized-prompt T5 recommender over genrec item tokens."""

from genrec.models.generative import register_generative_auto_classes
from genrec.models.p5.configuration_p5 import P5Config
from genrec.models.p5.modeling_p5 import (
    P5ForConditionalGeneration,
    build_prompt_tokenizer,
)
from genrec.models.p5.prompts import (
    DIRECT_TEMPLATES,
    SEQUENTIAL_TEMPLATES,
    PromptBuilder,
)

register_generative_auto_classes(P5Config, P5ForConditionalGeneration)

__all__ = [
    "DIRECT_TEMPLATES",
    "SEQUENTIAL_TEMPLATES",
    "P5Config",
    "P5ForConditionalGeneration",
    "PromptBuilder",
    "build_prompt_tokenizer",
]
