"""Process-level helpers every run shares (training, alignment, the CLI): which process writes, W&B closing."""

from __future__ import annotations

import os
import sys

__all__ = ["finish_wandb", "is_main_process"]


def is_main_process() -> bool:
    """Whether this is process 0 of a (possibly distributed) run.

    ``RANK`` is set by torchrun / ``accelerate launch`` before any process group exists, so this answers before
    torch.distributed is initialised (and without importing torch).
    """
    return int(os.environ.get("RANK", "0")) == 0


def finish_wandb() -> None:
    """Close an active W&B run (e.g. before its folder, inside a run folder, is moved into place).

    Does nothing when wandb was never imported or has no active run.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
