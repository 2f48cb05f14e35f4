"""RecGPT configuration (HKUDS/RecGPT: text-derived FSQ item tokens, hybrid attention, parallel code prediction)."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.utils.checks import is_int

__all__ = ["RECGPT_CODE_EMBEDDING_TYPES", "RECGPT_FFN_TYPES", "RECGPT_INPUT_GRANULARITIES", "RecGPTConfig"]

RECGPT_CODE_EMBEDDING_TYPES = ("table", "digits", "both")
RECGPT_FFN_TYPES = ("dense", "moe")
RECGPT_INPUT_GRANULARITIES = ("token", "item")
RECGPT_CODE_INITS = ("random", "text")
RECGPT_LOSS_TYPES = ("codes", "items")


class RecGPTConfig(AutoRegisteredConfigMixin, PreTrainedConfig):
    r"""Every architectural number of a RecGPT model.

    An item is ``num_chunks`` tokens: the FSQ codes of the chunks of its text embedding (genrec's ``fsq``
    item tokenizer). A history of ``n`` items is ``n * num_chunks`` tokens. Token ``(i, c)`` (item ``i``,
    chunk ``c``) gets ``LayerNorm(code embedding) + LayerNorm(Linear_c(text chunk c of item i))`` plus item
    and chunk position embeddings; attention is bidirectional inside an item and causal across items; the
    ``num_chunks`` positions of item ``i`` predict the ``num_chunks`` codes of item ``i + 1`` (one forward pass
    gives every code of the next item).

    Args:
        num_chunks (int, defaults to 4): tokens per item (= the fsq tokenizer's ``num_chunks``).
        codebook_size (int, defaults to 15360): codes per chunk (= ``prod(fsq_levels)``).
        fsq_levels (list[int], defaults to [8, 8, 8, 6, 5]): FSQ levels; used by the ``digits`` code embeddings
            (a code is the mixed-radix index of its digits). ``prod(fsq_levels)`` must equal ``codebook_size``.
        text_embedding_dim (int, defaults to 384): item text embedding size (MiniLM 384; the paper 768);
            divisible by ``num_chunks``.
        code_embedding_type (str, defaults to "both"): ``"table"``: one learned vector per (chunk, code), as the
            paper; ``"digits"``: the sum of per-digit vectors (codes never seen in training, e.g. in a new
            domain, still get a meaningful embedding and output logit); ``"both"``: their sum. The output head
            uses the same parameterisation (separate weights).
        hidden_size (int, defaults to 64), num_hidden_layers (int, defaults to 2), num_attention_heads (int,
            defaults to 2), intermediate_size (int, defaults to 256), hidden_act (str, defaults to "gelu").
        max_position_embeddings (int, defaults to 20): longest history in ITEMS (the most recent are kept).
        hidden_dropout_prob (float, defaults to 0.1), attention_dropout (float, defaults to 0.1).
        layer_norm_eps (float, defaults to 1e-6), initializer_range (float, defaults to 0.02).
        input_granularity (str, defaults to "token"): ``"token"``: the paper's layout, ``num_chunks`` positions per
            history item with the hybrid mask; ``"item"``: the cheap path (RPG-style), ONE position per history
            item = ``LayerNorm(sum of its code embeddings) + LayerNorm(Linear(its whole text embedding))``, causal
            attention over items, and ``num_chunks`` linear heads turn each position's state into the
            ``num_chunks`` code queries of the next item. Same codes, scoring, decoding and catalog binding;
            ``num_chunks`` times fewer positions per history.
        code_init (str, defaults to "random"): how the OUTPUT code vectors start when a catalog is bound at
            construction (``from_catalog`` / ``item_ids=...``): ``"random"``, or ``"text"``: the vector of code ``k``
            of chunk ``c`` starts as the mean projected text chunk ``c`` of the catalog items holding that code, so an
            untrained model already scores items by their text's similarity to the history (what last-item text-kNN
            does) and training starts from there. Loading a checkpoint never re-initialises.
        tie_code_embeddings (bool, defaults to False): score the next item's codes against the INPUT code vectors
            (one table, as SASRec ties its item embeddings and RPG its code embeddings) instead of a separate head.
        logit_temperature (float | None, defaults to None): ``None``: code logit = query · code vector; a number τ:
            ``cos(query, code vector) / τ`` (RPG uses 0.07), which bounds the logits and trains faster with tied codes.
        loss_type (str, defaults to "codes"): ``"codes"``: the paper's cross-entropy of every code of the next item
            (``C`` independent softmaxes over ``codebook_size``); ``"items"``: cross-entropy over the CATALOG with
            the item's logit = the mean of its ``C`` code logits (the same additive score that ranks and decodes, so
            training optimises the ranking directly, as SASRec-CE does with its item embeddings).
        num_negatives (int, defaults to 1024): ``loss_type="items"`` only: the softmax runs over the target and this
            many uniformly sampled catalog items shared by the batch (sampled softmax, as eSASRec; accidental hits
            masked); 0 = every catalog item (exact, but ``positions x items x C`` gathers per step).
        text_logits (bool, defaults to False): ``input_granularity="item"`` only: every item's logit also gets a
            text term, ``cos(text_query(state), normalize(text_i @ W)) / τ`` (τ = ``logit_temperature``, or a dot
            product without it), where ``W`` is the SAME text projection the input side reads (tied, like the codes)
            and ``text_query`` starts as the identity. An item is then scored by its own text embedding as well as by
            its codes: an untrained model already ranks by the history's text (the last-item text-kNN signal), and an
            item from a catalog the model never saw (``set_catalog`` from item texts) has a score path that does not
            depend on codes learned for other items. Ranking, ``score()`` and the ``"items"`` loss include it;
            beam search over codes (``generate``) does not.
        text_skip (bool, defaults to False): with ``text_logits``, a second text term in the RAW item-vector space:
            ``cos(g * v_last + U(state), v_i) / τ`` where ``v`` are the items' own (unprojected) vectors, ``v_last``
            the scored position's item, ``g`` a learned gate (starts at 1) and ``U`` a learned map (starts at 0):
            an untrained model is last-item text-kNN, and a catalog from another domain keeps the full text
            embedding instead of a projection learned on the training domain.
        text_prior_weight (float, defaults to 0.0): ``input_granularity="item"`` only: ``score()`` adds ``w x C x
            cos(v_last, v_i) / τ`` to every item's score, the last history item's similarity to the item in the raw
            item-vector space (text, plus the collaborative dimensions when the vectors have them; 0 for the last
            item itself): last-item text-kNN mixed into the model's ranking. Not trained: chosen on the VALIDATION split after training
            (``training.text_prior_weights``, ``genrec evaluate --text-prior-weights``) or on a new domain's validation
            split for a zero-shot catalog. 0 = the model alone; a very large weight = text-kNN with the model
            breaking ties. Beam search (``generate_items``) does not use it.
        code_dropout (float, defaults to 0.0): ``input_granularity="item"`` only: in training, each history item's
            code term is left out with this probability, so the model also learns to read an item from its text
            alone -- what it must do for a catalog whose codes it never trained on (``set_catalog(...,
            use_codes=False)``, the zero-shot path).
        ffn_type (str, defaults to "dense"): ``"dense"`` feed-forward or ``"moe"`` (genrec SparseMoeBlock).
        num_experts (int, defaults to 4), num_experts_per_tok (int, defaults to 2), router_aux_loss_coef
            (float, defaults to 0.01), router_z_loss_coef (float, defaults to 0.001): MoE only.
        pad_token_id (int, defaults to 0): catalog-row padding id (inputs are catalog rows + 1).

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-recgpt"

    num_chunks: int = 4
    codebook_size: int = 15360
    fsq_levels: list[int] | None = None
    text_embedding_dim: int = 384
    code_embedding_type: str = "both"
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    max_position_embeddings: int = 20
    hidden_dropout_prob: float | int = 0.1
    attention_dropout: float | int = 0.1
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    input_granularity: str = "token"
    code_init: str = "random"
    tie_code_embeddings: bool = False
    loss_type: str = "codes"
    num_negatives: int = 1024
    logit_temperature: float | None = None
    text_logits: bool = False
    text_skip: bool = False
    text_prior_weight: float | int = 0.0
    code_dropout: float | int = 0.0
    ffn_type: str = "dense"
    num_experts: int = 4
    num_experts_per_tok: int = 2
    router_aux_loss_coef: float = 0.01
    router_z_loss_coef: float = 0.001
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.fsq_levels is None:
            self.fsq_levels = [8, 8, 8, 6, 5]
        self.fsq_levels = list(self.fsq_levels)
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        for name in ("num_chunks", "codebook_size", "text_embedding_dim", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "max_position_embeddings", "num_experts",
                     "num_experts_per_tok"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` ({value!r}) must be a positive integer")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})"
            )
        if self.text_embedding_dim % self.num_chunks:
            raise ValueError(
                f"`text_embedding_dim` ({self.text_embedding_dim}) must be divisible by `num_chunks` ({self.num_chunks})"
            )
        if not self.fsq_levels or any(not is_int(v) or v < 2 for v in self.fsq_levels):
            raise ValueError(f"`fsq_levels` ({self.fsq_levels!r}) must be a non-empty list of ints >= 2")
        if math.prod(self.fsq_levels) != self.codebook_size:
            raise ValueError(
                f"`codebook_size` ({self.codebook_size}) must equal prod(`fsq_levels`) = {math.prod(self.fsq_levels)}"
            )
        if self.code_embedding_type not in RECGPT_CODE_EMBEDDING_TYPES:
            raise ValueError(
                f"`code_embedding_type` ({self.code_embedding_type!r}) must be one of {list(RECGPT_CODE_EMBEDDING_TYPES)}"
            )
        if self.input_granularity not in RECGPT_INPUT_GRANULARITIES:
            raise ValueError(
                f"`input_granularity` ({self.input_granularity!r}) must be one of {list(RECGPT_INPUT_GRANULARITIES)}"
            )
        if not isinstance(self.tie_code_embeddings, bool):
            raise ValueError(f"`tie_code_embeddings` ({self.tie_code_embeddings!r}) must be true or false")
        if self.logit_temperature is not None and (
            isinstance(self.logit_temperature, bool) or not isinstance(self.logit_temperature, (int, float))
            or not self.logit_temperature > 0
        ):
            raise ValueError(f"`logit_temperature` ({self.logit_temperature!r}) must be null or a number > 0")
        if not is_int(self.num_negatives) or self.num_negatives < 0:
            raise ValueError(f"`num_negatives` ({self.num_negatives!r}) must be an integer >= 0")
        if not isinstance(self.text_logits, bool):
            raise ValueError(f"`text_logits` ({self.text_logits!r}) must be true or false")
        if self.text_logits and self.input_granularity != "item":
            raise ValueError('`text_logits: true` needs `input_granularity: "item"`')
        if self.text_logits and self.loss_type != "items":
            raise ValueError('`text_logits: true` needs `loss_type: "items"` (the code loss never trains the text term)')
        if not isinstance(self.text_skip, bool):
            raise ValueError(f"`text_skip` ({self.text_skip!r}) must be true or false")
        if self.text_skip and not self.text_logits:
            raise ValueError("`text_skip: true` needs `text_logits: true`")
        if isinstance(self.text_prior_weight, bool) or not isinstance(self.text_prior_weight, (int, float)) or not (
                0.0 <= self.text_prior_weight < math.inf):
            raise ValueError(f"`text_prior_weight` ({self.text_prior_weight!r}) must be a finite number >= 0")
        if self.text_prior_weight and self.input_granularity != "item":
            raise ValueError('`text_prior_weight` > 0 needs `input_granularity: "item"` (the raw item vectors)')
        if isinstance(self.code_dropout, bool) or not isinstance(self.code_dropout, (int, float)) or not (
                0.0 <= self.code_dropout < 1.0):
            raise ValueError(f"`code_dropout` ({self.code_dropout!r}) must be a number in [0, 1)")
        if self.code_dropout and self.input_granularity != "item":
            raise ValueError('`code_dropout` > 0 needs `input_granularity: "item"`')
        if self.loss_type not in RECGPT_LOSS_TYPES:
            raise ValueError(f"`loss_type` ({self.loss_type!r}) must be one of {list(RECGPT_LOSS_TYPES)}")
        if self.code_init not in RECGPT_CODE_INITS:
            raise ValueError(f"`code_init` ({self.code_init!r}) must be one of {list(RECGPT_CODE_INITS)}")
        if self.ffn_type not in RECGPT_FFN_TYPES:
            raise ValueError(f"`ffn_type` ({self.ffn_type!r}) must be one of {list(RECGPT_FFN_TYPES)}")
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(
                f"`num_experts_per_tok` ({self.num_experts_per_tok}) must be <= `num_experts` ({self.num_experts})"
            )
        from transformers.activations import ACT2FN  # here: importing it loads transformers' modeling stack

        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` ({self.hidden_act!r}) must be one of {sorted(ACT2FN)}")
        for name in ("hidden_dropout_prob", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"`{name}` ({value!r}) must be a number in [0, 1)")
        for name in ("layer_norm_eps", "initializer_range", "router_aux_loss_coef", "router_z_loss_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` ({value!r}) must be a number >= 0")
