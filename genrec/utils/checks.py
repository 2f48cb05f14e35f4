"""Value checks shared by configs and functions: each raises one ``ValueError`` naming the field and the rule."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_int", "check_number", "is_int"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an ``int`` (``True``/``False`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= ``minimum`` (bools are refused)."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}")


def check_number(name: str, value: Any, low: float, high: float | None = None, *, low_inclusive: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number in ``[low, high)`` (``(low, high)`` when
    ``low_inclusive=False``; no upper bound when ``high`` is None). Bools are refused."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= low if low_inclusive else value > low) and (high is None or value < high))
    if not ok:
        opening = "[" if low_inclusive else "("
        bound = f"in {opening}{low}, {high})" if high is not None else f"{'>=' if low_inclusive else '>'} {low}"
        raise ValueError(f"`{name}` ({value!r}) must be a finite number {bound}")
