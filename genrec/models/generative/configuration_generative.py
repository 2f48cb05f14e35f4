"""Configuration of genrec's T5-based generative recommenders (P5, OneRec): :class:`GenerativeT5Config`.

Imports no modeling code (only transformers' ``T5Config``); the model is in
:mod:`genrec.models.generative.modeling_generative`.
"""

from __future__ import annotations

from transformers import T5Config

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.utils.checks import check_int, check_number

__all__ = ["FFN_TYPES", "GENERATIVE_LOSS_TYPES", "INPUT_GRANULARITIES", "ITEM_LOSS_TARGETS", "ITEM_POSITION_ORIGINS",
           "ITEM_VECTOR_OPTIONS", "MOE_LAYERS", "GenerativeT5Config"]

FFN_TYPES = ("dense", "moe")
MOE_LAYERS = ("decoder", "encoder", "all")
INPUT_GRANULARITIES = ("token", "item")
GENERATIVE_LOSS_TYPES = ("codes", "items")
ITEM_POSITION_ORIGINS = ("first", "last")
ITEM_LOSS_TARGETS = ("first", "session")
# keys of `item_vectors`: the options of genrec.models.item_vectors.dataset_item_vectors (RecGPT's
# `model.tokenizer` section) plus the text encoder's
ITEM_VECTOR_OPTIONS = ("item_text", "collaborative_dims", "collaborative_window", "embedding_model", "text_fields",
                       "embedding_cache_dir", "embedding_batch_size")


class GenerativeT5Config(AutoRegisteredConfigMixin, T5Config):
    r"""T5 architecture numbers plus the generative-recommendation fields P5 and OneRec share.

    The T5 architecture defaults are genrec's small from-scratch model (TIGER-sized, ~4M parameters without the
    vocabulary): ``d_model=128``, ``d_kv=32``, ``d_ff=512``, ``num_layers=4`` (and as many decoder layers),
    ``num_heads=4``, ``dropout_rate=0.1``, ``feed_forward_proj="relu"``; P5 and OneRec inherit them.

    Args (beyond :class:`transformers.T5Config`'s ``d_model``, ``d_kv``, ``d_ff``, ``num_layers``,
    ``num_decoder_layers``, ``num_heads``, ``dropout_rate``, ``feed_forward_proj``, ...):
        num_items (int, defaults to 0): catalog size; 0 until the model is bound to an item tokenizer.
        item_tokenizer_method (str, defaults to "rq-kmeans"): genrec item tokenizer used when a run fits one.
        item_tokenizer_config (dict | None): that tokenizer's options (``None`` = its defaults).
        item_token_range (list[int] | None): ``[lo, hi)`` vocabulary ids of all item code tokens (set on binding).
        item_start_token_range (list[int] | None): ``[lo, hi)`` ids of level-0 code tokens (an item's first).
        max_history_items (int, defaults to 20): most recent history items read (older ones dropped).
        use_item_position_embeddings (bool, defaults to True): add the item-position ("whole-word") embedding.
        max_item_positions (int, defaults to 64): size of that table; item index ``n`` is clamped to it - 1.
        item_position_origin (str, defaults to "first"): where item index 1 is: ``"first"`` = the oldest history
            item (P5's whole-word numbering), ``"last"`` = the most recent one (n = n-th from the end, so the next
            item's strongest evidence has the same embedding in every history, as a causal model's last position).
        ffn_type (str, defaults to "dense"): ``"dense"`` (T5's FFN) or ``"moe"`` (genrec SparseMoeBlock).
        moe_layers (str, defaults to "decoder"): where the MoE replaces the FFN: "decoder", "encoder" or "all".
        num_experts (int, defaults to 8), num_experts_per_tok (int, defaults to 2): routed experts and top-k.
        moe_intermediate_size (int | None): width of each expert (``None`` = ``d_ff``).
        num_shared_experts (int, defaults to 0): always-active experts.
        router_aux_loss_coef (float, defaults to 0.01), router_z_loss_coef (float, defaults to 0.001): weights of
            the load-balancing and z losses added to the training loss.
        num_beams (int, defaults to 20): beams of :meth:`recommend` / ``score`` (the most items one call returns).
        input_granularity (str, defaults to "token"): how the encoder reads a history item. ``"token"``: every code
            token of the item is one encoder position (P5 also writes a separator between items), today's layout.
            ``"item"``: the cheap path (RPG-style, as RecGPT's ``input_granularity: item``): ONE encoder position per
            history item, ``RMSNorm(mean of its code embeddings)`` read from the SAME ``shared`` table the decoder
            embeds and scores codes with (sum and mean are the same after the RMS norm), plus
            ``RMSNorm(Linear(item vector))`` when the model has item vectors (``item_vector_dim`` > 0), plus the
            item-position embedding. About ``code_length`` times fewer encoder positions (P5: no separators
            either); the decoder, its targets and catalog-constrained decoding are unchanged. An item position is
            written in ``input_ids`` as ``vocab_size + catalog row``, so every caller of the encoder (HF
            ``generate``, genrec's beam search, DPO) passes it through as usual.
        item_vectors (dict | None, defaults to None): ``input_granularity="item"`` only: how ``from_dataset`` builds
            the per-item vector added to an item's input; ``None`` = codes only. Keys as RecGPT's ``model.tokenizer``
            section (``genrec.models.item_vectors.dataset_item_vectors``): ``item_text`` (bool, default
            true: the item's text embedding; the dataset needs item text), ``collaborative_dims`` (int, default 0:
            append that many spectral co-occurrence dimensions of the TRAINING histories), ``collaborative_window``,
            and the text encoder's ``embedding_model``, ``text_fields``, ``embedding_cache_dir``,
            ``embedding_batch_size`` (defaults: the item tokenizer's, so its cached text embeddings are reused).
        item_vector_dim (int, defaults to 0): width of those vectors (set by the builder; 0 = none). The vectors are
            saved with the checkpoint (``catalog.safetensors``).
        loss_type (str, defaults to "codes"): ``"codes"``: the decoder's token cross-entropy over the target codes
            (TIGER / P5 / OneRec), items ranked by catalog-constrained beam search. ``"items"`` (needs
            ``input_granularity: "item"``; RPG / RecGPT's item loss): the same token loss PLUS a softmax over ALL
            catalog items of an item head read at the decoder state that emits the next item's first code (the
            first position; with ``item_loss_targets: "session"`` also at the start of every later item of
            OneRec's session target): item logit = mean over its code levels of ``cos(q_l, code embedding) / τ`` (one query
            ``q_l`` per level, the code vectors from the ``shared`` table) ``+ cos(q_text, RMSNorm(W v_i)) / τ``
            with item vectors (``W`` = the input side's projection). ``recommend`` / ``score`` then rank the whole
            catalog exactly by that head (no beam search); ``generate()`` still decodes code tokens.
        item_logit_temperature (float, defaults to 0.07): τ of the item head (RPG's).
        item_loss_targets (str, defaults to "first"): which target items the item head is trained on: ``"first"``
            (the next item, what ``recommend`` ranks) or ``"session"`` (every item of a session target, each from
            the decoder state that emits its first code, so it also reads the session's earlier items; it costs
            more per step: see the README's measurements).
        item_code_length (int, defaults to 0): code levels the item head has queries for (set by the builder from
            the item tokenizer; 0 = no item head).
        text_prior_weight (float, defaults to 0.0): item head with item vectors only: ``score`` / ``recommend`` add
            ``w x cos(v_last, v_i) / τ`` (last-item kNN on the raw item vectors, 0 for the last item itself), as
            RecGPT's ``text_prior_weight``; chosen on validation by ``training.text_prior_weights``.
    """

    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 512
    num_layers: int = 4
    num_heads: int = 4
    dropout_rate: float | int = 0.1
    feed_forward_proj: str = "relu"
    num_items: int = 0
    decoder_start_token_id: int | None = 0
    item_tokenizer_method: str = "rq-kmeans"
    item_tokenizer_config: dict | None = None
    item_token_range: list[int] | None = None
    item_start_token_range: list[int] | None = None
    max_history_items: int = 20
    use_item_position_embeddings: bool = True
    max_item_positions: int = 64
    item_position_origin: str = "first"
    ffn_type: str = "dense"
    moe_layers: str = "decoder"
    num_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    router_aux_loss_coef: float = 0.01
    router_z_loss_coef: float = 0.001
    num_beams: int = 20
    input_granularity: str = "token"
    item_vectors: dict | None = None
    item_vector_dim: int = 0
    loss_type: str = "codes"
    item_logit_temperature: float = 0.07
    item_loss_targets: str = "first"
    item_code_length: int = 0
    text_prior_weight: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_generative_fields()

    def _check_generative_fields(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        for name, minimum in (("num_items", 0), ("d_model", 1), ("d_kv", 1), ("d_ff", 1), ("num_layers", 1),
                              ("num_decoder_layers", 1), ("num_heads", 1), ("max_history_items", 1),
                              ("max_item_positions", 2), ("num_experts", 1), ("num_experts_per_tok", 1),
                              ("num_shared_experts", 0), ("num_beams", 1)):
            check_int(name, getattr(self, name), minimum)
        if self.moe_intermediate_size is not None:
            check_int("moe_intermediate_size", self.moe_intermediate_size, 1)
        check_number("dropout_rate", self.dropout_rate, 0.0, 1.0)
        check_number("router_aux_loss_coef", self.router_aux_loss_coef, 0.0)
        check_number("router_z_loss_coef", self.router_z_loss_coef, 0.0)
        from transformers.activations import ACT2FN  # here: importing it loads transformers' modeling stack

        parts = self.feed_forward_proj.split("-") if isinstance(self.feed_forward_proj, str) else []
        if not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "gated")) or self.dense_act_fn not in ACT2FN:
            # T5Config accepts any string here; the model would fail only when built, after the data loaded.
            raise ValueError(
                f"`feed_forward_proj` ({self.feed_forward_proj!r}) must be 'ACT' or 'gated-ACT' with ACT one of "
                f"{sorted(ACT2FN)}"
            )
        if self.item_position_origin not in ITEM_POSITION_ORIGINS:
            raise ValueError(f"`item_position_origin` ({self.item_position_origin!r}) must be one of "
                             f"{list(ITEM_POSITION_ORIGINS)}")
        if self.ffn_type not in FFN_TYPES:
            raise ValueError(f"`ffn_type` ({self.ffn_type!r}) must be one of {list(FFN_TYPES)}")
        if self.moe_layers not in MOE_LAYERS:
            raise ValueError(f"`moe_layers` ({self.moe_layers!r}) must be one of {list(MOE_LAYERS)}")
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(
                f"`num_experts_per_tok` ({self.num_experts_per_tok}) must be <= `num_experts` ({self.num_experts})"
            )
        if not isinstance(self.item_tokenizer_method, str) or not self.item_tokenizer_method:
            raise ValueError(f"`item_tokenizer_method` ({self.item_tokenizer_method!r}) must be a non-empty string")
        if self.item_tokenizer_config is not None and not isinstance(self.item_tokenizer_config, dict):
            raise ValueError(f"`item_tokenizer_config` ({self.item_tokenizer_config!r}) must be a mapping or None")
        for name in ("item_token_range", "item_start_token_range"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2 or not all(isinstance(v, int) for v in value) or not 0 <= value[0] < value[1]:
                    raise ValueError(f"`{name}` ({value!r}) must be [lo, hi) with 0 <= lo < hi, or None")
                if value[1] > self.vocab_size:
                    raise ValueError(f"`{name}` ({value!r}) exceeds `vocab_size` ({self.vocab_size})")
        self._check_item_inputs()

    def _check_item_inputs(self) -> None:
        """``input_granularity`` / ``item_vectors`` / ``item_vector_dim``: raise ``ValueError`` naming the field."""
        if self.input_granularity not in INPUT_GRANULARITIES:
            raise ValueError(
                f"`input_granularity` ({self.input_granularity!r}) must be one of {list(INPUT_GRANULARITIES)}")
        check_int("item_vector_dim", self.item_vector_dim, 0)
        if self.item_vectors is not None:
            if not isinstance(self.item_vectors, dict):
                raise ValueError(f"`item_vectors` ({self.item_vectors!r}) must be a mapping or null")
            unknown = sorted(set(self.item_vectors) - set(ITEM_VECTOR_OPTIONS))
            if unknown:
                raise ValueError(f"`item_vectors` has unknown key(s) {unknown}; allowed: {list(ITEM_VECTOR_OPTIONS)}")
        if self.input_granularity != "item" and (self.item_vectors is not None or self.item_vector_dim):
            raise ValueError('`item_vectors` / `item_vector_dim` need `input_granularity: "item"` (the token layout '
                             "reads code tokens only)")
        if self.loss_type not in GENERATIVE_LOSS_TYPES:
            raise ValueError(f"`loss_type` ({self.loss_type!r}) must be one of {list(GENERATIVE_LOSS_TYPES)}")
        if self.loss_type == "items" and self.input_granularity != "item":
            raise ValueError('`loss_type: "items"` needs `input_granularity: "item"` (the item head scores the '
                             "item-level catalog)")
        check_number("item_logit_temperature", self.item_logit_temperature, 1e-4)
        if self.item_loss_targets not in ITEM_LOSS_TARGETS:
            raise ValueError(f"`item_loss_targets` ({self.item_loss_targets!r}) must be one of {list(ITEM_LOSS_TARGETS)}")
        check_int("item_code_length", self.item_code_length, 0)
        check_number("text_prior_weight", self.text_prior_weight, 0.0)
        if self.text_prior_weight and self.loss_type != "items":
            raise ValueError('`text_prior_weight` > 0 needs `loss_type: "items"` (beam search ranks only its beams)')

    def sparse_layers(self, stack: str) -> bool:
        """Whether the FFNs of ``stack`` ("encoder" or "decoder") are sparse MoE blocks."""
        return self.ffn_type == "moe" and self.moe_layers in (stack, "all")
