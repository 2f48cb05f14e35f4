"""P5 for sequential (and direct) recommendation over genrec item tokens.

``P5ForConditionalGeneration`` is transformers' T5 (attention, relative positions, KV cache) with

* P5's prompt templates (:mod:`genrec.models.p5.prompts`) around the history's item tokens,
* whole-word embeddings: every token of the ``n``-th item in the prompt shares embedding ``n``
  (:class:`genrec.models.generative.GenerativeT5Model`),
* item ids from any genrec item tokenizer (semantic RQ-KMeans codes, collaborative/sequential ids, ...),
  added to the text vocabulary as whole tokens (``<a_12>``, ``<b_3>``, ...),
* a dense or sparse-MoE feed-forward (``config.ffn_type``).

No pretrained T5 can be downloaded in genrec's CI, so the default builds a small WordPiece prompt tokenizer with
the ``tokenizers`` library and trains from scratch; ``config.backbone = "t5-small"`` (or any T5 folder) starts
from those weights and that SentencePiece tokenizer instead.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging

from genrec.models.generative.modeling_generative import GenerativeT5Model
from genrec.models.p5.configuration_p5 import P5Config
from genrec.models.p5.prompts import PromptBuilder, template_texts

logger = logging.get_logger(__name__)

__all__ = ["P5ForConditionalGeneration", "build_prompt_tokenizer", "item_token_strings"]

_SPECIALS = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}


def item_token_strings(item_tokenizer) -> list[str]:
    """The item tokenizer's code tokens (``<a_0>``, ..., in level order), without special tokens."""
    hf = item_tokenizer.build_hf_tokenizer()
    specials = set(hf.all_special_tokens)
    return [token for token in hf.convert_ids_to_tokens(list(range(len(hf)))) if token not in specials]


def build_prompt_tokenizer(item_tokenizer, *, text_vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A from-scratch prompt tokenizer: a WordPiece vocabulary of P5's templates, plus every item code token.

    Ids 0, 1, 2 are ``<pad> </s> <unk>`` (T5's layout: pad = decoder start, eos = 1); then the word pieces; then
    the item tokens, contiguous per level (what the catalog trie and the beam search's per-level slicing need).
    The word pieces are built, not trained: every character (alone and as a ``##`` continuation) and every whole
    word of the templates, each group sorted. ``tokenizers``' WordPiece trainer broke its merge ties in hash-map
    order, so two runs of the same config got 211-214 text tokens and different token ids.

    Args:
        item_tokenizer: a fitted genrec ``ItemTokenizer``.
        text_vocab_size: the most word pieces allowed (the templates need ~110).

    Returns:
        ``PreTrainedTokenizerFast``.

    Raises:
        ValueError: the templates need more than ``text_vocab_size`` word pieces.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer, pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    words = {word for text in template_texts()
             for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    characters = sorted({character for word in words for character in word})
    pieces = [*_SPECIALS.values(), *characters, *(f"##{c}" for c in characters),
              *sorted(words - set(characters))]
    if len(pieces) > text_vocab_size:
        raise ValueError(f"`text_vocab_size` ({text_vocab_size}) is too small: P5's templates need {len(pieces)} "
                         "word pieces")
    backend = Tokenizer(models.WordPiece(vocab={piece: index for index, piece in enumerate(pieces)},
                                         unk_token=_SPECIALS["unk_token"]))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **_SPECIALS)
    tokenizer.add_tokens(item_token_strings(item_tokenizer))
    tokenizer.model_max_length = 1 << 30
    return tokenizer


class P5ForConditionalGeneration(GenerativeT5Model):
    """P5: T5 over personalized prompts, generating the next item's tokens (see the module docstring).

    Build one for a fitted item tokenizer with :meth:`from_item_tokenizer`; load a saved folder with
    ``AutoModelForSeq2SeqLM.from_pretrained(folder)``.

    Example:
        >>> model = P5ForConditionalGeneration.from_item_tokenizer(item_tokenizer, d_model=64, num_layers=2)
        >>> batch = model.build_inputs([[0, 5, 9]])          # catalog rows, oldest first
        >>> model.recommend([["1", "2", "3"]], k=5)           # [[(item_id, log_prob), ...]]
    """

    config_class = P5Config

    @classmethod
    def from_item_tokenizer(cls, item_tokenizer, config: P5Config | None = None, *, item_vector_table=None,
                            **config_kwargs: Any) -> P5ForConditionalGeneration:
        """A new P5 bound to ``item_tokenizer``: from scratch, or from ``config.backbone`` T5 weights.

        Args:
            item_tokenizer: a fitted genrec ``ItemTokenizer`` (its item order is the catalog order).
            config: a :class:`P5Config` (default: built from ``config_kwargs``).
            item_vector_table: ``input_granularity="item"`` only: float ``(num_items, D)`` vectors (e.g. item text
                embeddings) added to each history item's input; sets ``item_vector_dim``.
            **config_kwargs: P5Config fields.

        Returns:
            P5ForConditionalGeneration with ``tokenizer``, ``item_tokenizer`` and ``catalog`` set.
        """
        config = config if config is not None else P5Config(**config_kwargs)
        if config.backbone is None:
            tokenizer = build_prompt_tokenizer(item_tokenizer, text_vocab_size=config.text_vocab_size)
            return cls._new_bound_model(config, item_tokenizer, tokenizer, item_vector_table)
        cls._size_item_vectors(config, item_vector_table)
        model = cls._from_backbone(item_tokenizer, config)
        if item_vector_table is not None:
            model.set_item_vectors(item_vector_table)
        return model

    @classmethod
    def _from_backbone(cls, item_tokenizer, config: P5Config) -> P5ForConditionalGeneration:
        """Start from a pretrained T5 (Hub id or folder): its weights, its tokenizer + the item tokens."""
        from transformers import AutoTokenizer, T5ForConditionalGeneration

        tokenizer = AutoTokenizer.from_pretrained(config.backbone)
        tokenizer.add_tokens(item_token_strings(item_tokenizer))
        t5 = T5ForConditionalGeneration.from_pretrained(config.backbone)
        architecture = {key: getattr(t5.config, key) for key in (
            "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
            "relative_attention_num_buckets", "relative_attention_max_distance", "feed_forward_proj",
            "layer_norm_epsilon", "pad_token_id", "eos_token_id", "decoder_start_token_id")}
        values = {**config.to_dict(), **architecture}
        for key in ("model_type", "transformers_version", "architectures", "dense_act_fn", "is_gated_act",
                    "scale_decoder_outputs"):
            values.pop(key, None)
        values["vocab_size"] = max(t5.config.vocab_size, len(tokenizer))
        values["num_items"] = item_tokenizer.num_items
        config = P5Config(**values)
        model = cls(config)
        state = t5.state_dict()
        shared = state["shared.weight"]
        new_shared = model.shared.weight.detach().clone()
        new_shared[: shared.shape[0]] = shared
        for key in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
            state[key] = new_shared
        missing, unexpected = model.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if "relative_attention_bias" not in k or "EncDecAttention" not in k]
        if unexpected:
            raise ValueError(f"backbone {config.backbone!r} has weights P5 cannot place: {unexpected[:5]}")
        logger.info(f"P5 from backbone {config.backbone!r}: newly initialised {len(missing)} tensors")
        model.set_catalog(item_tokenizer.item_ids, item_tokenizer=item_tokenizer, tokenizer=tokenizer)
        return model

    def example_encoder(self) -> PromptBuilder:
        tokenizer = self.tokenizer
        return PromptBuilder(
            text_to_ids=lambda text: tokenizer(text, add_special_tokens=False).input_ids,
            item_token_table=[self.item_tokens(row) for row in range(self.item_token_table.shape[0])],
            eos_token_id=self.config.eos_token_id,
            max_history_items=self.config.max_history_items,
            num_candidates=self.config.num_candidates,
            direct_task_ratio=self.config.direct_task_ratio,
            item_input_offset=self.item_input_offset,
            prompt_templates=self.config.prompt_templates,
        )

    def prompt_text(self, history_rows, candidates=None) -> str:
        """The evaluation prompt of a history, as text (for inspection)."""
        self._require_bound()
        ids = self.expand_item_inputs(self.encode_history(history_rows, candidates=candidates))
        return self.tokenizer.decode(torch.tensor(ids))
