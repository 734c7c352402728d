"""Checks of user-given settings that fail early with a message naming the setting."""

from __future__ import annotations

from typing import Any


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_number(name: str, value: Any, minimum: float, unit: str) -> float:
    """``value`` if it is a number >= ``minimum`` (not a bool or NaN), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"{name} must be a number >= {minimum} {unit}, got {value!r}")
    return value
