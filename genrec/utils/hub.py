"""Where genrec finds a model's files: a local folder, or a Hugging Face Hub repo.

* :func:`resolve_folder` is the ONE place a user-given path that may be a Hub repo id (``owner/name``, optionally
  ``owner/name@revision``) becomes a local folder (``huggingface_hub.snapshot_download``): ``genrec recommend /
  evaluate --checkpoint``, ``genrec align``'s ``base.checkpoint`` / ``reward.checkpoint``, ``model.item_tokenizer``,
  ``AutoItemTokenizer.from_pretrained`` and the ``from_pretrained`` of the models that read whole folders (P5,
  OneRec, BIGRec) all call it. A path that exists locally always wins.
* :func:`optional_file` fetches single optional files beside the weights (``item_ids.json``, catalogs).

Public ``huggingface_hub`` API only (``snapshot_download``, ``hf_hub_download`` and their errors), so a transformers
upgrade does not change how genrec finds them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["HUB_LOOKUP_KEYS", "hub_lookup", "optional_file", "parse_repo_id", "resolve_folder"]

# ``owner/name`` or ``owner/name@revision``: the Hub's naming rules (letters, digits, ``-``, ``_``, ``.``), so a local
# path such as ``./runs/x``, ``/abs/path`` or ``runs/x/checkpoint`` is never taken for a repo id
_REPO_ID = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]*[A-Za-z0-9])(?:@(?P<revision>[^@\s]+))?")

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


def parse_repo_id(text: str | os.PathLike) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``text`` reads as a Hub repo id ``owner/name[@revision]``, else None.

    Example:
        >>> parse_repo_id("genrec/sasrec-beauty@v1"), parse_repo_id("runs/a/checkpoint")
        (('genrec/sasrec-beauty', 'v1'), None)
    """
    match = _REPO_ID.fullmatch(os.fspath(text))
    if match is None or ".." in match["repo"] or match["repo"].endswith(".git"):
        return None
    return match["repo"], match["revision"]


def resolve_folder(path_or_repo_id: str | os.PathLike, *, what: str = "checkpoint", revision: str | None = None,
                   cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                   local_files_only: bool = False) -> Path:
    """A local file or folder as given, else the local snapshot of the Hub repo ``owner/name[@revision]``.

    Args:
        path_or_repo_id: a local path, or a Hub repo id (``@revision`` picks a branch, tag or commit).
        what: how the message names the value (``"--checkpoint"``, ``"`base.checkpoint`"``, ...).
        revision, cache_dir, token, local_files_only: ``snapshot_download``'s (``revision`` wins over ``@``).

    Returns:
        the local path (a snapshot folder in the Hugging Face cache for a repo id).

    Raises:
        FileNotFoundError: no such local path and not a repo id, or the repo could not be had (offline and not
            cached, no such repo or revision, no access); one line naming the value and the reason.
    """
    text = os.fspath(path_or_repo_id)
    path = Path(text).expanduser()
    if path.exists():
        return path
    parsed = parse_repo_id(text)
    if parsed is None:
        raise FileNotFoundError(f"{what} {text!r} does not exist (neither a local path nor a Hugging Face Hub repo "
                                "id 'owner/name[@revision]')")
    repo_id, tag = parsed
    revision = revision or tag
    import huggingface_hub  # the module attribute, looked up at call time (tests replace it)
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                                  local_files_only=local_files_only)
    except (OSError, ValueError, EntryNotFoundError) as error:  # offline, no repo/revision, gated, bad id, network
        reason = " ".join(str(error).split()) or type(error).__name__
        at = f" at revision {revision!r}" if revision else ""
        raise FileNotFoundError(
            f"{what} {text!r} is no local path, and the Hugging Face Hub repo {repo_id!r}{at} could not be "
            f"downloaded ({type(error).__name__}: {reason[:300]})") from None
    return Path(local)
