"""Hybrid indexing (Hua et al. 2023): concatenate the codes of several schemes.

The default is How to Index's best content+collaborative mix: the category path (``semantic``) as
prefix, then the spectral-clustering path (``collaborative``). Each component is fitted on its own
(component ``i`` gets seed ``seed + i`` unless its overrides set one) and contributes its codes either
*before* its own collision fix (``component_codes="prefix"``: the category path without the leaf index,
the cluster path without the leaf index, an RQ code without the disambiguation level) or complete
(``"full"``). The concatenation is then made unique by the base class's TIGER disambiguation level,
so e.g. ``semantic + collaborative`` ids read "category path, cluster path, rank in group".

Any fixed-length registered scheme can be a component (``rq-kmeans`` etc. need ``embeddings`` or
compute them as their config says); variable-length schemes (``title``) cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genrec.tokenization.base import ItemTokenizer, get_tokenizer_class, register_tokenizer
from genrec.tokenization.config import ItemTokenizerConfig, check_choice

__all__ = ["HybridTokenizerConfig", "HybridTokenizer"]


@dataclass
class HybridTokenizerConfig(ItemTokenizerConfig):
    """Config of hybrid indexing.

    Args:
        components (list[str], default ["semantic", "collaborative"]): scheme names, prefix first (>= 2).
        component_configs (list[dict], default []): config overrides per component, aligned with
            ``components`` (empty = defaults for all), e.g. ``[{}, {"num_clusters": 8}]``.
        component_codes (str, default "prefix"): ``"prefix"`` = each component's codes before its own
            collision fix; ``"full"`` = its final codes.
    """

    components: list[str] = field(default_factory=lambda: ["semantic", "collaborative"])
    component_configs: list[dict] = field(default_factory=list)
    component_codes: str = "prefix"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.components, str) or not isinstance(self.components, (list, tuple)):
            raise ValueError(f"`components` must be a list of method names, got {self.components!r}")
        self.components = list(self.components)
        if len(self.components) < 2:
            raise ValueError(f"`components` ({self.components}) must name at least 2 schemes")
        if "hybrid" in self.components:
            raise ValueError("`components` cannot contain 'hybrid'")
        if not isinstance(self.component_configs, (list, tuple)) or not all(
            isinstance(c, dict) for c in self.component_configs
        ):
            raise ValueError(f"`component_configs` must be a list of dicts, got {self.component_configs!r}")
        self.component_configs = [dict(c) for c in self.component_configs]
        if self.component_configs and len(self.component_configs) != len(self.components):
            raise ValueError(
                f"`component_configs` has {len(self.component_configs)} entries for {len(self.components)} `components`"
            )
        check_choice("component_codes", self.component_codes, ["prefix", "full"])


@register_tokenizer("hybrid")
class HybridTokenizer(ItemTokenizer):
    """Concatenation of several schemes' codes (default: semantic prefix + collaborative suffix)."""

    config_class = HybridTokenizerConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.components = self._build_components()
        # Instance-level: what the components need (fit checks these before fitting).
        self.requires_sequences = any(c.requires_sequences for c in self.components)
        self.requires_embeddings = any(c.requires_embeddings for c in self.components)

    def _build_components(self) -> list[ItemTokenizer]:
        config = self.config
        overrides = config.component_configs or [{} for _ in config.components]
        components = []
        for i, (method, extra) in enumerate(zip(config.components, overrides)):
            cls = get_tokenizer_class(method)  # ValueError listing the allowed methods
            settings = {"seed": config.seed + i, **extra}
            try:
                components.append(cls(settings))
            except ValueError as error:
                raise ValueError(f"`component_configs[{i}]` for {method!r}: {error}") from None
        return components

    def _fit_codes(self, catalog, *, sequences, embeddings):
        parts, sizes = [], []
        self.component_stats = []
        for i, component in enumerate(self.components):
            component.fit(catalog, sequences=sequences, embeddings=embeddings)
            if (component.codes < 0).any():
                raise ValueError(
                    f"`components[{i}]` ({component.method!r}) gives variable-length codes; "
                    "hybrid needs fixed-length ones"
                )
            if self.config.component_codes == "full":
                codes, level_sizes = np.asarray(component.codes), component.codebook_sizes
            else:
                codes = np.asarray(component._fit_raw_codes)
                level_sizes = component.codebook_sizes[: codes.shape[1]]
                level_sizes = [max(2, s, int(codes[:, j].max()) + 1) for j, s in enumerate(level_sizes)]
            parts.append(codes)
            sizes.extend(int(s) for s in level_sizes)
            self.component_stats.append({"method": component.method, "levels": int(codes.shape[1])})
        return np.concatenate(parts, axis=1), sizes

    def _fit_stats(self) -> dict[str, Any]:
        return {"components": self.component_stats}

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for i, component in enumerate(self.components):
            for name, tensor in component._state_tensors().items():
                tensors[f"{i}.{name}"] = tensor
        return tensors

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, component in enumerate(self.components):
            prefix = f"{i}."
            component._load_state_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        unknown = [k for k in tensors if not any(k.startswith(f"{i}.") for i in range(len(self.components)))]
        if unknown:
            raise ValueError(f"hybrid tokenizer state holds tensors of no component: {sorted(unknown)}")
