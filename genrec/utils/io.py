"""Atomic file output: a killed run never leaves a half-written artifact.

Every artifact genrec writes goes through these helpers: files are written to a temporary sibling
and renamed into place (``os.replace`` is atomic on POSIX), folders are built in a temporary
sibling folder and swapped in at the end. A command that replaces a whole output folder checks it
first (:func:`check_output_folder`), holds :func:`output_lock` on it while it works, and removes what
killed runs left (:func:`stale_staging_folders`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
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
    "check_output_folder",
    "staging_directory",
    "replace_directory",
    "stale_staging_folders",
    "clean_stale_staging",
    "output_lock",
    "path_inside",
]

# Staging folders are ``.NAME.genrec-XXXXXXXX.tmp`` (being built) and ``.NAME.genrec-XXXXXXXX.old`` (the
# previous folder, during the swap), next to ``NAME``; the tag lets a later run find and remove the ones
# a killed run left behind without touching anything else.
_STAGING_TAG = "genrec-"


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


def check_output_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking it can be (re)written as a file: its parent exists, it is no folder.

    Raises:
        FileNotFoundError: the parent folder does not exist.
        IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output file {str(path)!r}: its parent folder {str(parent)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"output file {str(path)!r} is a folder; pass a file path")
    return path


def check_output_folder(output: str | os.PathLike, *, overwrite: bool = False,
                        protect: dict[str, str | os.PathLike] | None = None) -> Path:
    """Check an output folder that a command will build and then swap in, before any work starts.

    Args:
        output: the folder.
        overwrite: a non-empty ``output`` may be replaced.
        protect: ``{what: path}`` of inputs that must not lie inside ``output`` (the dataset, the
            config): replacing ``output`` would delete them. The working folder is always protected.

    Returns:
        ``output`` as an absolute path (``--output .`` becomes the folder's own name).

    Raises:
        FileNotFoundError: the parent folder does not exist.
        NotADirectoryError: ``output`` is a file.
        FileExistsError: ``output`` is a non-empty folder and ``overwrite`` is False.
        UserInputError: ``output`` is or contains the working folder or a protected input.
    """
    from genrec.utils.errors import UserInputError

    check_output_parent(output)
    output = _absolute(output)
    guarded = {"the current working folder": Path.cwd(), **(protect or {})}
    if output.exists():
        for what, path in guarded.items():
            if path is not None and Path(path).exists() and path_inside(path, output):
                raise UserInputError(
                    f"--output {str(output)!r} contains {what} ({str(path)!r}), which replacing the folder "
                    "would delete; choose an --output folder of its own"
                )
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {str(output)!r} already exists and is not empty; choose another --output "
            "or pass --overwrite (the old folder is replaced only when the new run succeeds)"
        )
    return output


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


def _absolute(path: str | os.PathLike) -> Path:
    """Absolute and normalised (``.``, ``..`` resolved lexically), so ``--output .`` has a name and a parent."""
    return Path(os.path.abspath(os.fspath(path)))


def path_inside(inner: str | os.PathLike, outer: str | os.PathLike) -> bool:
    """Whether ``inner`` is ``outer`` or lies somewhere below it (symlinks resolved)."""
    inner_real, outer_real = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    return inner_real == outer_real or outer_real in inner_real.parents


def staging_directory(path: str | os.PathLike) -> Path:
    """A new, empty hidden sibling folder of ``path`` to build it in (``.NAME.genrec-XXXXXXXX.tmp``)."""
    path = _absolute(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_STAGING_TAG}", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
    return tmp


def replace_directory(staging: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move the finished ``staging`` folder to ``path``, replacing what is there.

    The old folder is first renamed aside and deleted only once the new one is in place, so a crash
    mid-swap never loses both (:func:`clean_stale_staging` puts a lone ``.old`` back). Ctrl-C and
    SIGTERM wait until both renames are done.
    """
    path = _absolute(path)
    old = None
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if hasattr(signal, "pthread_sigmask") else None
    try:
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_STAGING_TAG}", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
        os.replace(staging, path)
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def clean_stale_staging(path: str | os.PathLike) -> list[Path]:
    """Remove what killed runs left next to ``path`` (call it only while holding :func:`output_lock`).

    A ``.old`` folder with no ``path`` beside it is a previous result whose swap was cut short: it is
    moved back to ``path`` instead of being deleted.

    Returns:
        the leftovers removed or restored.
    """
    path = _absolute(path)
    leftovers = stale_staging_folders(path)
    for leftover in leftovers:
        if leftover.suffix == ".old" and not path.exists():
            os.replace(leftover, path)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    return leftovers


def stale_staging_folders(path: str | os.PathLike) -> list[Path]:
    """The staging folders of ``path`` left by runs that were killed (only safe to delete under its lock)."""
    path = _absolute(path)
    if not path.parent.is_dir():
        return []
    # Also the untagged ``.NAME.XXXXXXXX.tmp`` (8 mkdtemp characters) of genrec versions before the tag.
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:" + re.escape(_STAGING_TAG) + r"[a-z0-9_]+|[a-z0-9_]{8})"
                         r"\.(?:tmp|old)")
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the output folder ``path`` for the block (one run per folder).

    The lock is ``flock`` on a hidden sibling file ``.NAME.genrec-lock`` that is removed on exit; the
    kernel drops it when a process dies, even by ``kill -9``.

    Raises:
        OutputInUseError: another process holds it.
    """
    import fcntl  # POSIX only, like the rest of genrec's process handling

    from genrec.utils.errors import OutputInUseError

    path = _absolute(path)
    lock_path = path.parent / f".{path.name}.{_STAGING_TAG}lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputInUseError(
                f"output folder {str(path)!r} is in use by another genrec run (pid {holder}); "
                "wait for it to finish or choose another --output"
            ) from None
        # The holder before us may have removed the file between our open and flock: then we locked
        # an orphan inode and must start again on the new file.
        try:
            current = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


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
    path = _absolute(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it")
    tmp = staging_directory(path)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, path)
