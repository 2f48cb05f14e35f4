"""Shared fixtures for training and CLI tests: a tiny dataset folder with a learnable pattern."""

import pytest
import torch

NUM_TOY_ITEMS = 24
NUM_TOY_USERS = 48


def write_toy_dataset(folder) -> str:
    """An S3-Rec style ``sequential_data.txt``: user u buys items start, start+1, ... (mod 24).

    The next item is always the current item + 1, so a working SASRec reaches high recall in a few
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
    return write_toy_dataset(tmp_path / "toy-data")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread avoids OpenMP contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
