"""CPU thread settings for genrec's hot paths on a shared machine.

OpenMP (torch's CPU thread pool) reads ``OMP_WAIT_POLICY`` once, when torch is imported. Its default lets idle
threads spin for their turn; beside one other busy process on a 2-core machine, genrec's beam search dropped from
about 229 to 6 users/s (HF ``generate`` alike), while ``PASSIVE`` kept 229 (``benchmarks/bench_decoding.py --busy``).
``import genrec`` sets ``PASSIVE`` when torch is not imported yet and the variable is unset; the CLI sets it too.
When torch came first, nothing can change the policy any more: :func:`warn_if_threads_may_spin` says so once,
from the hot paths (beam search, ``recommend``), and names the fixes.
"""

from __future__ import annotations

import os

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["openmp_may_spin", "warn_if_threads_may_spin"]


def openmp_may_spin() -> bool:
    """True when torch's CPU threads may busy-wait: more than one thread and no wait policy chosen before torch
    was imported (``import genrec`` before torch, or ``OMP_WAIT_POLICY`` in the environment, chooses one)."""
    import genrec

    if torch.get_num_threads() <= 1 or genrec.OPENMP_WAIT_POLICY_SET:
        return False
    return os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"


def warn_if_threads_may_spin() -> None:
    """Log once per process when :func:`openmp_may_spin` (a hot path on CPU calls this)."""
    if openmp_may_spin():
        logger.warning_once(
            "torch was imported before genrec without OMP_WAIT_POLICY, and uses "
            f"{torch.get_num_threads()} CPU threads: beside another busy process its idle threads spin and decoding "
            "can run 10-40x slower. Start Python with OMP_WAIT_POLICY=PASSIVE, import genrec before torch, or call "
            "torch.set_num_threads(1) for small models."
        )
