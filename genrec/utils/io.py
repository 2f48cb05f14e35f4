"""Atomic file output: a killed run never leaves a half-written artifact.

Every artifact genrec writes goes through these helpers: files are written to a temporary sibling
and renamed into place (``os.replace`` is atomic on POSIX), folders are built in a temporary
sibling folder and swapped in at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = [
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_directory",
    "check_output_parent",
]


def check_output_parent(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that its parent folder exists.

    Raises:
        FileNotFoundError: the parent folder does not exist (we never create deep trees silently).
        NotADirectoryError: ``path`` exists and is a file.
    """
    path = Path(path)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"output folder {str(path)!r}: its parent folder {str(parent)!r} does not exist; "
            "create it first or pass an --output inside an existing folder"
        )
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output {str(path)!r} exists and is a file, not a folder")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the artifact the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON (sorted keys) and write it to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it to ``path`` only when the block succeeds.

    If the block raises, the temporary folder is removed and whatever was at ``path`` is untouched.
    With ``overwrite=True`` an existing folder at ``path`` is replaced (first renamed aside, then
    deleted once the new one is in place), so a crash mid-swap never loses both.

    Example:
        >>> with atomic_directory(out / "checkpoint") as tmp:   # doctest: +SKIP
        ...     model.save_pretrained(tmp)

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
