"""P5 configuration (Geng et al., "Recommendation as Language Processing", RecSys 2022)."""

from __future__ import annotations

from genrec.models.generative.configuration_generative import GenerativeT5Config
from genrec.models.p5.prompts import check_prompt_templates
from genrec.utils.checks import check_int, check_number

__all__ = ["P5Config"]


class P5Config(GenerativeT5Config):
    r"""Every architectural number of a genrec P5 model (a T5 with prompts, item tokens and whole-word embeddings).

    Inherits every :class:`transformers.T5Config` field (``d_model``, ``d_ff``, ``num_layers``, ``num_heads``,
    ``feed_forward_proj``, ``dropout_rate``, ...) and the shared generative fields of
    :class:`genrec.models.generative.GenerativeT5Config` (item tokenizer, ``max_history_items``,
    ``use_item_position_embeddings`` = P5's whole-word embeddings, ``ffn_type`` "dense"/"moe", experts,
    ``num_beams``). The defaults are a small from-scratch model (TIGER-sized, ~4M parameters without the vocab).

    Args:
        direct_task_ratio (float, defaults to 0.0): share of training prompts that are direct recommendation
            (pick the next item among ``num_candidates`` candidates); the rest are sequential recommendation.
        num_candidates (int, defaults to 20): candidates of a direct-recommendation prompt (target included).
        prompt_templates (str, defaults to "all"): the sequential templates training samples from: ``"all"`` (P5's
            six paraphrases), ``"first"`` (template 0, the one evaluation uses), ``"none"`` (no words: the history's
            items then ``</s>``, in training and evaluation; requires ``direct_task_ratio`` 0).
        text_vocab_size (int, defaults to 400): WordPiece vocabulary of the from-scratch prompt tokenizer.
        backbone (str | None, defaults to None): a T5 checkpoint (Hub id such as ``"t5-small"`` or a folder) whose
            weights and SentencePiece tokenizer initialise the model (item tokens are added to its vocabulary);
            ``None`` trains the tokenizer and the model from scratch.
    """

    model_type = "genrec-p5"

    direct_task_ratio: float = 0.0
    num_candidates: int = 20
    prompt_templates: str = "all"
    text_vocab_size: int = 400
    backbone: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_number("direct_task_ratio", self.direct_task_ratio, 0.0)
        if self.direct_task_ratio > 1:
            raise ValueError(f"`direct_task_ratio` ({self.direct_task_ratio!r}) must be in [0, 1]")
        check_int("num_candidates", self.num_candidates, 2)
        check_prompt_templates(self.prompt_templates)
        if self.prompt_templates == "none" and self.direct_task_ratio > 0:
            raise ValueError(f"`prompt_templates` 'none' has no direct-recommendation prompt; set `direct_task_ratio` "
                             f"({self.direct_task_ratio!r}) to 0")
        check_int("text_vocab_size", self.text_vocab_size, 50)
        if self.backbone is not None and (not isinstance(self.backbone, str) or not self.backbone):
            raise ValueError(f"`backbone` ({self.backbone!r}) must be a T5 Hub id / folder or None")
