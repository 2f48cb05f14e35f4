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


def pytest_runtest_setup(item):
    """Skip ``@pytest.mark.gpu`` tests where no CUDA device is present; asked here, at each such test's set-up,
    never at import or in a decorator (a CUDA query there initialises the driver for every collected module)."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


NUM_TOY_ITEMS = 24
NUM_TOY_USERS = 48


def write_toy_dataset(folder) -> str:
    """An S3-Rec style ``sequential_data.txt``: user u buys items start, start+1, ... (mod 24).

    The next item is always the current item + 1, so a working model reaches high recall in a few
    epochs while a broken one stays near chance (k / 24).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, NUM_TOY_USERS + 1):
        start = (user * 5) % NUM_TOY_ITEMS
        length = 5 + user % 4
        items = [(start + step) % NUM_TOY_ITEMS + 1 for step in range(length)]
        lines.append(" ".join(str(value) for value in [user, *items]))
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    return str(folder)


@pytest.fixture
def toy_dataset(tmp_path):
    """Path of a tiny S3-Rec-format dataset folder with a learnable next-item pattern."""
    return write_toy_dataset(tmp_path / "toy-data")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP contention (measured 10-30x faster on 2 busy cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def write_interactions_csv(path, *, num_users: int = 60, num_items: int = 40,
                           columns: tuple[str, str, str] = ("user", "item", "timestamp")) -> str:
    """A user's own interactions table: ``user,item,timestamp`` rows, user ``u0``.. buys ``sku<k>``, ``sku<k+1>``, ...

    Rows are written shuffled (the timestamps give the order), 5 to 9 items per user, every item bought.
    """
    import csv
    import random

    rng = random.Random(0)
    rows = []
    for user in range(num_users):
        start, length = (user * 7) % num_items, 5 + user % 5
        for step in range(length):
            rows.append((f"u{user}", f"sku{(start + step) % num_items}", 1_700_000_000 + user * 10_000 + step * 60))
    rng.shuffle(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)
