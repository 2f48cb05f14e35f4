"""Kernels for genrec (Triton on GPU, each with a torch reference that runs anywhere)."""

from genrec.kernels.constrained_topk import (
    ConstrainedTopK,
    constrained_topk,
    constrained_topk_reference,
    constrained_topk_triton,
    triton_available,
)

__all__ = [
    "ConstrainedTopK",
    "constrained_topk",
    "constrained_topk_reference",
    "constrained_topk_triton",
    "triton_available",
]
