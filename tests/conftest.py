"""Test-wide settings: offline, CPU, Triton interpreter.

TRITON_INTERPRET must be set before any ``@triton.jit`` kernel is defined, so it is set here, at
collection time, before genrec.kernels is imported by any test.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# Must precede the torch import: with the default active wait policy, 2 OpenMP threads on a busy
# 2-core machine made small-tensor steps 30-40x slower (measured).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
