"""Optional files beside a model's weights (``item_ids.json``, catalogs), from a local folder or the Hub cache.

Public ``huggingface_hub`` API only (``hf_hub_download`` and its ``EntryNotFoundError``), so a transformers upgrade
does not change how genrec finds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["HUB_LOOKUP_KEYS", "hub_lookup", "optional_file"]

# the ``from_pretrained`` keyword arguments that say where a model's files live
HUB_LOOKUP_KEYS = ("cache_dir", "revision", "token", "local_files_only", "subfolder")


def hub_lookup(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The :data:`HUB_LOOKUP_KEYS` entries of ``from_pretrained``'s keyword arguments."""
    return {key: kwargs[key] for key in HUB_LOOKUP_KEYS if key in kwargs}


def optional_file(path_or_repo_id: str | os.PathLike, filename: str, *, subfolder: str = "",
                  cache_dir: str | os.PathLike | None = None, revision: str | None = None,
                  token: str | bool | None = None, local_files_only: bool = False) -> str | None:
    """Local path of ``filename`` in a model folder or Hub repo, or None when it has no such file.

    A local folder is read directly. A Hub id goes through ``huggingface_hub.hf_hub_download`` (cache first); a file
    the repo lacks, or that is not cached while offline, gives None. Other errors (authentication, a bad repo id)
    propagate.
    """
    folder = Path(path_or_repo_id)
    if folder.is_dir():
        path = folder / subfolder / filename
        return str(path) if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(str(path_or_repo_id), filename, subfolder=subfolder or None, cache_dir=cache_dir,
                               revision=revision, token=token, local_files_only=local_files_only)
    except EntryNotFoundError:  # the repo has no such file (or, offline, it is not cached): optional
        return None
