"""Configuration dataclasses for item tokenizers.

Every scheme has one ``@dataclass`` config subclassing :class:`ItemTokenizerConfig`; it holds every
number the scheme needs, validates itself in ``__post_init__`` and round-trips through JSON
(``to_dict`` / ``from_dict``), so a saved tokenizer folder (``config.json``) rebuilds the same scheme.

Validation helpers (``check_int``, ``check_float``, ``check_choice``) raise ``ValueError`` naming the
field, the value and what is allowed; scheme configs call them from their own ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable

from genrec.utils.checks import is_int

__all__ = [
    "ItemTokenizerConfig",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
]


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Validate an integer field.

    Args:
        name (str): field name used in the error message.
        value: the value to check (``bool`` is rejected).
        minimum (int, optional): smallest allowed value.
        maximum (int, optional): largest allowed value.

    Returns:
        int: ``value`` unchanged.

    Raises:
        ValueError: not an int, or out of range.
    """
    if not is_int(value):
        raise ValueError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` ({value}) must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` ({value}) must be <= {maximum}")
    return value


def check_float(
    name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None, allow_inf: bool = False
) -> float:
    """Validate a real-valued field (ints accepted); same errors as :func:`check_int`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` ({value}) must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` ({value}) must be <= {maximum}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """Validate a boolean field."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be true or false, got {value!r} ({type(value).__name__})")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Validate that ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"`{name}` ({value!r}) must be one of {allowed}")
    return value


@dataclass
class ItemTokenizerConfig:
    """Base configuration shared by every item tokenizer.

    Args:
        method (str): the scheme name (``"sequential"``, ``"rq-kmeans"``, ...); filled in by the
            tokenizer class when left empty.
        seed (int, default 0): seed of every random choice the scheme makes; same inputs + same seed
            give identical codes.
    """

    method: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.method, str):
            raise ValueError(f"`method` must be a string, got {self.method!r}")
        check_int("seed", self.seed, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-serialisable dict (every field, lists instead of tuples)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ItemTokenizerConfig":
        """Build a config from a dict such as the one :meth:`to_dict` returns.

        Args:
            d (dict): field name -> value. Missing fields take their defaults.

        Returns:
            ItemTokenizerConfig: an instance of ``cls`` (validated).

        Raises:
            ValueError: ``d`` is not a dict, or holds keys that are not fields of ``cls`` (named in the
                message with the allowed ones), or a value fails validation.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}.from_dict expects a dict, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed fields: {names}")
        return cls(**d)

    def replace(self, **overrides: Any) -> "ItemTokenizerConfig":
        """Return a copy with ``overrides`` applied (validated); unknown names raise ``ValueError``."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} field(s) {unknown}; allowed fields: {names}")
        return dataclasses.replace(self, **overrides)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
