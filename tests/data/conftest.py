import pytest


@pytest.fixture(scope="session")
def beauty():
    """The bundled Amazon Beauty dataset, loaded once per test session (read-only: do not mutate)."""
    from genrec.data import load_dataset

    return load_dataset("amazon-beauty")


@pytest.fixture(scope="session")
def beauty_split(beauty):
    from genrec.data import leave_one_out

    return leave_one_out(beauty)
