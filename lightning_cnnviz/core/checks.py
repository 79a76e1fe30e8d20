"""Argument checks shared by every monitor and the reference classes.

Each raises ``ValueError`` with a message that names the argument and echoes the
value, so a mistake in a YAML config reads the same as one in Python.

Example::

    >>> check_int("window", 8)
    >>> check_int("window", 0)
    Traceback (most recent call last):
    ...
    ValueError: `window` must be a positive integer, got 0
    >>> check_number("alpha", 1.5, low=0, high=1)
    Traceback (most recent call last):
    ...
    ValueError: `alpha` must be a number in [0, 1], got 1.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_choice",
    "check_int",
    "check_key",
    "check_layers",
    "check_number",
    "check_str",
]


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = 1,
    maximum: int | None = None,
    allow_none: bool = False,
) -> None:
    """Raise unless ``value`` is an int in ``[minimum, maximum]`` (``None``: unbounded)."""
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, int)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return
    if minimum is None:
        kind = "an integer"
    elif maximum is not None:
        kind = f"an integer in [{minimum}, {maximum}]"
    else:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise ValueError(f"`{name}` must be {kind}, got {value!r}")


def check_number(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> None:
    """Raise unless ``value`` is a finite number in the interval (open ends where asked)."""
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and (
            value < high if high_open else value <= high
        )
    if not ok:
        if (low, low_open, high) == (0, True, math.inf):
            kind = "a positive number"
        else:
            kind = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"`{name}` must be {kind}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")


def check_str(name: str, value: Any) -> None:
    """Raise unless ``value`` is a string (possibly empty)."""
    if not isinstance(value, str):
        raise ValueError(f"`{name}` must be a string, got {value!r}")


def check_key(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a non-empty string (a metric, output or batch key)."""
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{name}` must be a non-empty string, got {value!r}")


def check_layers(value: Any) -> None:
    """Raise unless ``value`` is ``"auto"``, a pattern, or a non-empty list of patterns.

    An empty pattern (an unset variable in a config) matches no module: said here, not at
    the fit's setup.
    """
    patterns = [value] if isinstance(value, str) else value
    if (
        isinstance(patterns, Sequence)
        and patterns
        and all(isinstance(p, str) and p.strip() for p in patterns)
    ):
        return
    raise ValueError(
        f"`layers` must be 'auto', a pattern or a non-empty list of patterns, got {value!r}"
    )
