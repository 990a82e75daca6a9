"""Argument checks shared by the package: one message style for bad input (every notebook).

Each returns the value it accepted, or raises an error naming the argument, what it got and what to do.
"""

from __future__ import annotations

import numbers


def positive_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number (an int), got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def mnist_like(data, what: str = "this function"):
    """``data`` if it is an ``effcourse.data.MNIST`` (train/val/test arrays); else a clear error."""
    from .data import MNIST

    if not isinstance(data, MNIST):
        raise TypeError(
            f"{what} needs the MNIST object from effcourse.data.load() (with x_train, "
            f"y_train, x_val, ...), got {type(data).__name__}."
        )
    return data
