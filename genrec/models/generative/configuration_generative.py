"""Configuration of genrec's T5-based generative recommenders (P5, OneRec): :class:`GenerativeT5Config`.

Imports no modeling code (only transformers' ``T5Config``); the model is in
:mod:`genrec.models.generative.modeling_generative`.
"""

from __future__ import annotations

from transformers import T5Config

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.utils.checks import check_int, check_number

__all__ = ["FFN_TYPES", "MOE_LAYERS", "GenerativeT5Config"]

FFN_TYPES = ("dense", "moe")
MOE_LAYERS = ("decoder", "encoder", "all")


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
        ffn_type (str, defaults to "dense"): ``"dense"`` (T5's FFN) or ``"moe"`` (genrec SparseMoeBlock).
        moe_layers (str, defaults to "decoder"): where the MoE replaces the FFN: "decoder", "encoder" or "all".
        num_experts (int, defaults to 8), num_experts_per_tok (int, defaults to 2): routed experts and top-k.
        moe_intermediate_size (int | None): width of each expert (``None`` = ``d_ff``).
        num_shared_experts (int, defaults to 0): always-active experts.
        router_aux_loss_coef (float, defaults to 0.01), router_z_loss_coef (float, defaults to 0.001): weights of
            the load-balancing and z losses added to the training loss.
        num_beams (int, defaults to 20): beams of :meth:`recommend` / ``score`` (the most items one call returns).
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
    ffn_type: str = "dense"
    moe_layers: str = "decoder"
    num_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int | None = None
    num_shared_experts: int = 0
    router_aux_loss_coef: float = 0.01
    router_z_loss_coef: float = 0.001
    num_beams: int = 20

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

    def sparse_layers(self, stack: str) -> bool:
        """Whether the FFNs of ``stack`` ("encoder" or "decoder") are sparse MoE blocks."""
        return self.ffn_type == "moe" and self.moe_layers in (stack, "all")
