"""Configuration of genrec's engagement reward model (``model_type = "genrec-reward"``)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.models.sasrec.configuration_sasrec import SASRecConfig

__all__ = ["RewardModelConfig"]


class RewardModelConfig(AutoRegisteredConfigMixin, PreTrainedConfig):
    r"""Every architectural number of a :class:`RewardModel`.

    Args:
        num_items (int, defaults to 0): catalog size (0 only for a config not yet bound to a catalog).
        hidden_size (int, defaults to 64): item embedding and transformer width.
        num_layers (int, defaults to 2): causal self-attention blocks over the history.
        num_heads (int, defaults to 2): attention heads; must divide ``hidden_size``.
        intermediate_size (int | None, defaults to None): transformer feed-forward width (``None`` = ``hidden_size``).
        mlp_hidden_size (int | None, defaults to None): width of the scoring MLP over ``[u, e, u * e]``
            (``None`` = ``hidden_size``).
        max_history_items (int, defaults to 50): most recent history items read (older ones dropped).
        dropout (float, defaults to 0.1): dropout on embeddings, attention, feed-forward and the scoring MLP.
        hidden_act (str, defaults to "gelu"): activation of the feed-forward and scoring MLP (a key of ``ACT2FN``).
        layer_norm_eps (float, defaults to 1e-6): LayerNorm epsilon.
        initializer_range (float, defaults to 0.02): std of the normal weight init.
        use_item_bias (bool, defaults to True): add a learned per-item bias (the popularity prior) to the logit.
        pad_token_id (int, defaults to 0): history padding row; fixed to 0 (row ``j + 1`` = catalog item ``j``).

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-reward"

    num_items: int = 0
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int | None = None
    mlp_hidden_size: int | None = None
    max_history_items: int = 50
    dropout: float | int = 0.1
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    use_item_bias: bool = True
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = self.hidden_size
        if self.mlp_hidden_size is None:
            self.mlp_hidden_size = self.hidden_size
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        for name, minimum in (("num_items", 0), ("hidden_size", 1), ("num_layers", 1), ("num_heads", 1),
                              ("intermediate_size", 1), ("mlp_hidden_size", 1), ("max_history_items", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_heads` ({self.num_heads})"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` ({self.dropout!r}) must be a number in [0, 1)")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` ({value!r}) must be a number > 0")
        from transformers.activations import ACT2FN  # here: importing it loads transformers' modeling stack

        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` ({self.hidden_act!r}) must be one of {sorted(ACT2FN)}")
        if not isinstance(self.use_item_bias, bool):
            raise ValueError(f"`use_item_bias` ({self.use_item_bias!r}) must be True or False")
        if self.pad_token_id != 0:
            raise ValueError(f"`pad_token_id` ({self.pad_token_id!r}) must be 0: row 0 of the item table is padding")

    def block_config(self) -> SASRecConfig:
        """The :class:`SASRecConfig` whose blocks this model reuses (same width, heads, dropout)."""
        return SASRecConfig(
            num_items=self.num_items, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
            max_position_embeddings=self.max_history_items, hidden_dropout_prob=self.dropout,
            attention_dropout=self.dropout, layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )

