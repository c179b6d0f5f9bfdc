"""Argument checks shared across the package, with errors that name the argument."""

from __future__ import annotations

from typing import Any


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` if it is an int (a bool is not) of at least ``minimum`` (1 or 0): else a
    ``TypeError`` (not an int) or ``ValueError`` (too small) that names ``name``."""
    kind = "positive" if minimum == 1 else "non-negative"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a {kind} int; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be a {kind} int; got {value!r}")
    return value
