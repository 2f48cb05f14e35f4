"""User-facing errors and the one-line report every genrec command gives for them.

Library code raises ``ValueError`` (bad value), ``FileNotFoundError`` / ``FileExistsError`` /
``NotADirectoryError`` (paths) with a message naming the file or key, what is wrong and what is
allowed; :class:`UserInputError` marks the checks that are about the user's input rather than a value
passed between library functions. The command line turns exactly these into one line on stderr and
exit status 2 (:func:`run_command`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

__all__ = ["USER_ERRORS", "OutputInUseError", "RunInterrupted", "UserInputError", "one_line", "run_command"]


class UserInputError(ValueError):
    """A file, option or config value given by the user is unusable (the message says which and why)."""


class OutputInUseError(UserInputError):
    """Another genrec run holds the output folder."""


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: unwinds like Ctrl-C so staging folders are removed."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


# The errors that mean "bad input" (one line, exit 2). Not KeyError: a missing dict key inside genrec
# is a bug, and every lookup of a user-given id is wrapped into a ValueError naming it.
# PermissionError: an output or input path the user cannot write or read (its message names the path).
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (YAML/pandas messages span several)."""
    text = str(error)
    return " ".join(part.strip() for part in text.splitlines() if part.strip()) or type(error).__name__


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into :class:`RunInterrupted` so ``finally`` blocks clean up (main thread only)."""

    def handler(number, frame):
        raise RunInterrupted(signal.Signals(number).name)

    previous = {}
    try:
        for number in (signal.SIGTERM, signal.SIGHUP):
            previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def run_command(prog: str, func: Callable[[], int | None]) -> int:
    """Run a command's body: user errors -> one line + 2; Ctrl-C/SIGTERM -> one line + 130/143.

    Args:
        prog: prefix of the message, e.g. ``"genrec train"``.
        func: the body; its return value is the exit status.
    """
    try:
        with _terminate_as_interrupt():
            return int(func() or 0)
    except USER_ERRORS as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        name = error.signal_name if isinstance(error, RunInterrupted) else "Ctrl-C"
        print(f"{prog}: interrupted by {name}; the output folder was left as it was", file=sys.stderr)
        return {"SIGTERM": 143, "SIGHUP": 129}.get(name, 130)  # 128 + signal number, as a shell reports it
