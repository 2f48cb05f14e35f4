"""Run one ``genrec train`` subprocess with its output in a log file (the quality benchmarks' shared runner)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

__all__ = ["run_logged"]


def run_logged(command: list[str], log_path: Path, cwd: Path, timeout_seconds: float | None,
               timeout_label: str) -> tuple[float, str | None]:
    """Run ``command`` with stdout and stderr in ``log_path``.

    Args:
        command: the argv. log_path: written from scratch. cwd: the working folder.
        timeout_seconds: kill the process after this many seconds (``None``: no limit).
        timeout_label: how the error names the limit, e.g. ``"--run-timeout-minutes 30"``.

    Returns:
        ``(wall seconds rounded to 0.1, error)``: ``error`` is ``None`` on exit status 0, else one message with the
        exit status and the log's last 15 lines, or the timeout.
    """
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, timeout=timeout_seconds,
                                     check=False)
        except subprocess.TimeoutExpired:
            return round(time.time() - start, 1), f"killed after {timeout_label}; see {log_path}"
    seconds = round(time.time() - start, 1)
    if process.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        return seconds, f"exit status {process.returncode}; last lines of {log_path}:\n" + "\n".join(tail)
    return seconds, None
