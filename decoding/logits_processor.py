"""Catalog constraint for Hugging Face ``generate()``: the portable (slower) path.

:class:`CatalogLogitsProcessor` masks every token that cannot extend the row's generated prefix to a
catalog item, for any HF model, batch size, ``num_beams``, greedy, beam search or sampling.

Sampling warpers. A ``top_k=1`` (or small ``top_p``) warper that runs *before* the constraint keeps only
the model's favourite token; if that token is not a valid continuation, masking leaves nothing (NaN
probabilities, or a silently invalid item: MiniOneRec PR #57). The guarantees:

1. In transformers 5 ``generate()`` applies the processors passed in ``logits_processor`` *before* the
   warpers it builds from the generation config (``GenerationMixin._get_logits_processor``; checked by
   ``tests/decoding/test_logits_processor.py``), so config warpers act on the constrained distribution:
   ``top_k=1`` = the best valid token, ``top_p`` = the nucleus of the valid tokens. Warpers always keep
   at least one finite token, so a valid token survives. :func:`constrained_generate` does not rely on
   that ordering: it moves the warpers out of the config and places them after the constraint itself.
2. Wherever a warper still runs first (placed before it in a processor list, other versions), the
   processor never leaves a row without a valid token: where every valid continuation is already
   ``-inf``, it restores them with equal scores (uniform over the valid children), counts the rows in
   ``num_restored_rows`` and logs a warning once. Every returned sequence is still a catalog item, but
   the choice among those children is then uninformed: put warpers after the processor.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)
from transformers.utils import logging

from genrec.decoding.catalog import Catalog

logger = logging.get_logger(__name__)

__all__ = ["CatalogLogitsProcessor", "constrained_generate"]


class CatalogLogitsProcessor(LogitsProcessor):
    """``LogitsProcessor`` allowing only tokens that extend the generated prefix towards a catalog item.

    Args:
        catalog: the valid token sequences.
        prompt_length: number of leading ``input_ids`` columns that are not generated item tokens: the prompt
            width for decoder-only models, 1 (the decoder start token) for encoder-decoder models. Default: the
            ``input_ids`` width at the first call of each generation (detected per call; see
            :meth:`_prompt_length`).
        eos_token_id: token forced once a row has completed an item (fixed-length codes generate exactly
            ``catalog.max_length`` tokens, so it is only needed when ``max_new_tokens`` is larger). Defaults to
            the catalog's own ``eos_token_id``.
        normalize: if True (default) the allowed scores are renormalised with a log-softmax over the valid
            tokens (beam scores = log-probabilities given that the sequence is an item, like
            ``beam_search(normalize="catalog")``); if False the model's scores are only masked (like
            ``beam_search(normalize="vocab")`` under HF beam search, which log-softmaxes first).
        banned_items: optional per-user items never to produce: bool ``(batch, num_items)`` or rows
            ``(batch, M)`` padded with -1; each user's rows are the ``rows / batch`` consecutive rows of
            ``input_ids`` (HF's layout for beams and ``num_return_sequences``).

    Example::

        processor = CatalogLogitsProcessor(catalog, prompt_length=1)          # T5-style model
        out = model.generate(input_ids, num_beams=10, num_return_sequences=10,
                             max_new_tokens=catalog.max_length, logits_processor=[processor])
        items = catalog.items_of(out[:, 1:])                                  # every row is an item
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        prompt_length: int | None = None,
        eos_token_id: int | None = None,
        normalize: bool = True,
        banned_items: torch.Tensor | None = None,
    ):
        if not isinstance(catalog, Catalog):
            raise ValueError(f"`catalog` must be a genrec.decoding.Catalog, got {type(catalog).__name__}")
        if prompt_length is not None and (not isinstance(prompt_length, int) or prompt_length < 0):
            raise ValueError(f"`prompt_length` must be a non-negative int or None, got {prompt_length!r}")
        self.catalog = catalog
        self.prompt_length = prompt_length
        self.eos_token_id = catalog.eos_token_id if eos_token_id is None else int(eos_token_id)
        self.normalize = bool(normalize)
        self.banned_leaves = None if banned_items is None else catalog.banned_leaves(banned_items)
        self._prompt: torch.Tensor | None = None
        self._last_length = -1
        self._warned = False
        self.num_restored_rows = 0  # rows where an earlier warper had removed every valid token

    def _prompt_length(self, input_ids: torch.Tensor) -> int:
        """Prompt width: explicit, or the width at the first call of this generation.

        A call continues the current generation when it is exactly one token longer than the previous call,
        has as many rows, and starts with the same prompt; otherwise it starts a new one.
        """
        if self.prompt_length is not None:
            return self.prompt_length
        width = input_ids.shape[1]
        prompt = self._prompt
        continues = (
            prompt is not None
            and width == self._last_length + 1
            and prompt.shape[0] == input_ids.shape[0]
            and torch.equal(input_ids[:, : prompt.shape[1]], prompt)
        )
        if not continues:
            self._prompt = input_ids.clone()
        self._last_length = width
        return self._prompt.shape[1]

    def allowed_tokens(self, input_ids: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens each row may generate next, as a padded list (no ``(rows, vocab)`` work).

        Args:
            input_ids: LongTensor ``(rows, length)``: prompt + generated tokens.
            vocab_size: width of the scores (token ids must be below it).

        Returns:
            ``(tokens, valid)``: LongTensor and BoolTensor ``(rows, C)``; ``tokens[r, j]`` is allowed where
            ``valid[r, j]``; padded entries repeat an allowed token of the row (or 0), so they can be used as
            gather/scatter indices.

        Raises:
            ValueError: catalog tokens beyond ``vocab_size``, or a row continuing past a complete item without
                an ``eos_token_id``.
        """
        catalog = self.catalog
        if catalog.device != input_ids.device:
            self.catalog = catalog = catalog.to(input_ids.device)
            if self.banned_leaves is not None:
                self.banned_leaves = self.banned_leaves.to(input_ids.device)
        rows = input_ids.shape[0]
        device = input_ids.device
        prompt_length = self._prompt_length(input_ids)
        generated = input_ids[:, prompt_length:]
        depth = generated.shape[1]
        if depth < catalog.max_length:
            if int(catalog.token_hi[depth]) > vocab_size:
                raise ValueError(
                    f"catalog tokens reach id {catalog.token_hi[depth] - 1} but the scores have vocab_size "
                    f"{vocab_size}; build the catalog with the model's token ids"
                )
            raw_nodes, reached = catalog.walk(generated)
            nodes = raw_nodes.clamp(min=0)
            in_catalog = (raw_nodes >= 0) & (reached == depth)
            complete = in_catalog & catalog.is_leaf[depth][nodes]
            on_path = in_catalog & ~complete
            start = catalog.child_ptr[depth][nodes].long()
            count = torch.where(on_path, catalog.child_ptr[depth][nodes + 1].long() - start, 0)
            offsets = torch.arange(catalog.max_children[depth], device=device)
            valid = offsets < count[:, None]  # (rows, C)
            child = torch.where(valid, start[:, None] + offsets, start[:, None])
            if self.banned_leaves is not None:
                per_user = rows // self.banned_leaves.shape[0]
                bans = self.banned_leaves.long().repeat_interleave(per_user, 0)
                lo = catalog.leaf_lo[depth + 1][child].long()
                hi = catalog.leaf_hi[depth + 1][child].long()
                under = torch.searchsorted(bans, hi) - torch.searchsorted(bans, lo)
                valid &= hi - lo > under
            tokens = catalog.child_token[depth][child.clamp(max=catalog.num_nodes[depth + 1] - 1)].long()
        else:
            complete = torch.ones(rows, dtype=torch.bool, device=device)
            tokens = torch.zeros((rows, 0), dtype=torch.long, device=device)
            valid = torch.zeros((rows, 0), dtype=torch.bool, device=device)
        if depth > 0 and bool(complete.any()):
            if self.eos_token_id is None:
                raise ValueError(
                    f"generation continued past a complete item (generated length {depth}); pass "
                    f"max_new_tokens={catalog.max_length} to generate() or an `eos_token_id` to "
                    "CatalogLogitsProcessor"
                )
            tokens = torch.cat([tokens, torch.full((rows, 1), self.eos_token_id, device=device)], 1)
            valid = torch.cat([valid, complete[:, None]], 1)
        # padded entries point at the row's first allowed token, so scatters write that token's own value
        first = tokens.gather(1, valid.long().argmax(1, keepdim=True)) if tokens.shape[1] else tokens[:, :1]
        tokens = torch.where(valid, tokens, first) if tokens.shape[1] else tokens
        return tokens, valid

    def allowed_mask(self, input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """Bool mask ``(rows, vocab_size)`` of the tokens each row may generate next."""
        tokens, valid = self.allowed_tokens(input_ids, vocab_size)
        mask = torch.zeros((input_ids.shape[0], vocab_size), dtype=torch.bool, device=input_ids.device)
        return mask.scatter_(1, tokens, valid) if tokens.shape[1] else mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask (and renormalise) ``scores`` ``(rows, vocab)`` given ``input_ids`` ``(rows, length)``.

        Only the allowed entries are read and written (a gather and a scatter of ``(rows, C)``), so the
        cost does not grow with the vocabulary beyond one fill of the output.
        """
        tokens, valid = self.allowed_tokens(input_ids, scores.shape[-1])
        out = torch.full_like(scores, float("-inf"))
        if tokens.shape[1] == 0:
            return out
        values = torch.where(valid, scores.gather(1, tokens).float(), float("-inf"))  # (rows, C)
        lse = torch.logsumexp(values, dim=-1, keepdim=True)  # -inf where no allowed score is finite
        has_allowed = valid.any(1, keepdim=True)
        # rows where every allowed token is already -inf (an earlier warper removed them): restore them
        lost = has_allowed & torch.isneginf(lse)
        if bool(lost.any()):
            self.num_restored_rows += int(lost.sum())
            if not self._warned:
                logger.warning(
                    "CatalogLogitsProcessor: a processor that ran before it (top_k/top_p/min_p warper) removed "
                    "every valid token in %d rows; choosing uniformly among the valid tokens there. Put the "
                    "warpers after the constraint (genrec.decoding.constrained_generate does).",
                    int(lost.sum()),
                )
                self._warned = True
            values = torch.where(lost & valid, 0.0, values)
            lse = torch.where(lost, valid.sum(1, keepdim=True).float().log(), lse)
        if self.normalize:
            values = values - torch.where(has_allowed, lse, 0.0)
        # padded entries hold a duplicate of an allowed token's value: the scatter writes identical values
        values = torch.where(valid, values, values.gather(1, valid.long().argmax(1, keepdim=True)))
        values = torch.where(has_allowed, values, float("-inf"))
        return out.scatter_(1, tokens, values.to(scores.dtype))


_WARPER_FIELDS = {"temperature": None, "top_k": None, "top_p": None, "min_p": None, "typical_p": None,
                  "epsilon_cutoff": None, "eta_cutoff": None, "top_h": None}


def _warpers_after_constraint(config: GenerationConfig) -> list[LogitsProcessor]:
    """Build the sampling warpers HF would build from ``config``, to run after the catalog constraint."""
    if config.epsilon_cutoff or config.eta_cutoff or getattr(config, "top_h", None):
        raise ValueError(
            "constrained_generate supports the temperature, top_k, top_p, min_p and typical_p warpers; got "
            f"epsilon_cutoff={config.epsilon_cutoff}, eta_cutoff={config.eta_cutoff}, "
            f"top_h={getattr(config, 'top_h', None)}"
        )
    keep = 2 if (config.num_beams or 1) > 1 else 1  # HF keeps one more than the eos count in beam sampling
    warpers: list[LogitsProcessor] = []
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k is not None and config.top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=keep))
    if config.top_p is not None and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=keep))
    if config.min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=config.min_p, min_tokens_to_keep=keep))
    if config.typical_p is not None and config.typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(mass=config.typical_p, min_tokens_to_keep=keep))
    return warpers


def constrained_generate(
    model: Any,
    catalog: Catalog,
    *,
    input_ids: torch.Tensor,
    generation_config: GenerationConfig | None = None,
    banned_items: torch.Tensor | None = None,
    normalize: bool = True,
    logits_processor: list[LogitsProcessor] | None = None,
    **generate_kwargs: Any,
) -> Any:
    """``model.generate`` with the catalog constraint applied *before* any sampling warper.

    Args:
        model: any HF generative model.
        catalog: the valid token sequences.
        input_ids: LongTensor ``(batch, length)``: encoder input or decoder-only prompt.
        generation_config: base config (default ``model.generation_config``); ``generate_kwargs`` that name
            config fields override it, the rest go to ``generate``.
        banned_items, normalize: see :class:`CatalogLogitsProcessor`.
        logits_processor: extra processors, run after the constraint and the warpers.
        **generate_kwargs: e.g. ``attention_mask``, ``num_beams``, ``num_return_sequences``, ``do_sample``,
            ``top_k``, ``top_p``; ``max_new_tokens`` defaults to ``catalog.max_length``.

    Returns:
        whatever ``model.generate`` returns (sequences include the prompt / decoder start token).
    """
    config = copy.deepcopy(generation_config if generation_config is not None else model.generation_config)
    generate_kwargs.setdefault("max_new_tokens", catalog.max_length)
    unused = config.update(**generate_kwargs)
    warpers: list[LogitsProcessor] = []
    if config.do_sample:
        warpers = _warpers_after_constraint(config)
        for name, value in _WARPER_FIELDS.items():
            if hasattr(config, name):
                setattr(config, name, value)
    is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    if is_encoder_decoder:
        decoder_input_ids = unused.get("decoder_input_ids")
        prompt_length = 1 if decoder_input_ids is None else decoder_input_ids.shape[1]
    else:
        prompt_length = input_ids.shape[1]
    processor = CatalogLogitsProcessor(catalog, prompt_length=prompt_length, normalize=normalize,
                                       banned_items=banned_items)
    processors = LogitsProcessorList([processor, *warpers, *(logits_processor or [])])
    return model.generate(input_ids=input_ids, generation_config=config, logits_processor=processors, **unused)
