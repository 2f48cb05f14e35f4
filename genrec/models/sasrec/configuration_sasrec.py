"""SASRec configuration (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from genrec.models.registry import AutoRegisteredConfigMixin
from genrec.utils.checks import is_int

__all__ = ["SASRecConfig", "SASREC_LOSS_TYPES"]

SASREC_LOSS_TYPES = ("ce", "bce")


class SASRecConfig(AutoRegisteredConfigMixin, PreTrainedConfig):
    r"""Every architectural number of a SASRec model.

    Items are rows ``1..num_items`` of the item embedding table; row 0 is padding. Row ``i + 1`` is the
    catalog item ``item_ids[i]`` (the id list itself is saved beside the weights as ``item_ids.json``).

    Args:
        num_items (int, defaults to 0): catalog size (padding excluded). Must be > 0 to build a model.
        hidden_size (int, defaults to 64): item/position embedding and transformer width.
        num_hidden_layers (int, defaults to 2): self-attention blocks.
        num_attention_heads (int, defaults to 2): heads per block; must divide ``hidden_size``.
        intermediate_size (int | None, defaults to None): feed-forward width; ``None`` means
            ``hidden_size`` (the paper's point-wise FFN keeps the width).
        hidden_act (str, defaults to "gelu"): FFN activation, any key of ``transformers.activations.ACT2FN``
            (the paper uses "relu").
        max_position_embeddings (int, defaults to 50): longest history the model reads (the paper's ``n``);
            longer histories keep their most recent items.
        hidden_dropout_prob (float, defaults to 0.5): dropout on embeddings, attention output and FFN.
        attention_dropout (float, defaults to 0.5): dropout on attention probabilities.
        layer_norm_eps (float, defaults to 1e-8): LayerNorm epsilon (the paper's value).
        initializer_range (float, defaults to 0.02): std of the normal weight init.
        scale_embeddings (bool, defaults to True): multiply item embeddings by ``sqrt(hidden_size)``
            before adding positions (as in the reference implementation).
        loss_type (str, defaults to "ce"): ``"ce"`` = softmax cross-entropy over all items (the strong
            variant); ``"bce"`` = binary cross-entropy with one uniformly sampled negative per position
            (the paper's original objective).
        pad_token_id (int, defaults to 0): id of the padding row; fixed to 0.

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-sasrec"

    num_items: int = 0
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int | None = None
    hidden_act: str = "gelu"
    max_position_embeddings: int = 50
    hidden_dropout_prob: float | int = 0.5
    attention_dropout: float | int = 0.5
    layer_norm_eps: float = 1e-8
    initializer_range: float = 0.02
    scale_embeddings: bool = True
    loss_type: str = "ce"
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        if self.intermediate_size is None:
            self.intermediate_size = self.hidden_size
        super().__post_init__(**kwargs)
        # Checked here (not in a `@strict` validator) so that bad values raise a plain ValueError.
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        for name in (
            "num_items",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not is_int(value):
                raise ValueError(f"`{name}` ({value!r}) must be an integer")
        for name in ("num_items",):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"`{name}` ({value}) must be >= 0 (0 only for a config not yet bound to a catalog)")
        for name in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"`{name}` ({value}) must be a positive integer")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})"
            )
        for name in ("hidden_dropout_prob", "attention_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` ({value}) must be in [0, 1)")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` ({self.layer_norm_eps}) must be > 0")
        if self.initializer_range <= 0:
            raise ValueError(f"`initializer_range` ({self.initializer_range}) must be > 0")
        if self.loss_type not in SASREC_LOSS_TYPES:
            raise ValueError(f"`loss_type` ({self.loss_type!r}) must be one of {list(SASREC_LOSS_TYPES)}")
        from transformers.activations import ACT2FN  # here: importing it loads transformers' modeling stack

        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` ({self.hidden_act!r}) must be one of {sorted(ACT2FN)}")
        if self.pad_token_id != 0:
            raise ValueError(f"`pad_token_id` ({self.pad_token_id}) must be 0: row 0 of the item table is padding")
