"""Self-checks for the exercise of notebook 00 (the tour): predict, then measure.

A prediction is a range ``(low, high)`` written before the measurement runs. The check
scores the range against the value it measures itself: inside passes; a range that is
reversed, a tie (``low == high``), wider than the exercise allows, or that has the measured
value itself as an end (copied from an output, not predicted) does not. ``prediction_range``
is shared with the other notebooks' predict-then-measure checks.
"""

from __future__ import annotations

import math

import numpy as np

from . import fail, one_pass_line_each, passed


def prediction_range(predicted, what: str, max_ratio: float, name: str = "your prediction"):
    """The learner's ``(low, high)`` as two floats, or a hint for a placeholder, tie or too-wide range.

    Introduced in notebook 00.
    """
    if predicted is None or predicted is Ellipsis:
        fail(
            f"{name} is not written yet: replace the placeholder with your range (low, high) for {what}, "
            "written before you run the measurement."
        )
    if isinstance(predicted, (str, bytes)) or not hasattr(predicted, "__len__") or len(predicted) != 2:
        fail(f"{name} should be a range: a pair (low, high) for {what}; got {predicted!r}.")
    try:
        low, high = (float(np.asarray(v)) for v in predicted)
    except (TypeError, ValueError):
        fail(f"{name} should hold two numbers (low, high); got {predicted!r}.")
    if not (math.isfinite(low) and math.isfinite(high)):
        fail(f"{name} has a bound that is not a finite number: {predicted!r}.")
    if low == high:
        fail(f"{name} is a single value, not a range: give low < high (a prediction has an uncertainty).")
    if low > high:
        fail(f"{name} is reversed: write (low, high) with low < high.")
    if low <= 0:
        fail(f"{what} is positive: the low end of {name} should be above 0.")
    if high / low > max_ratio:
        fail(
            f"{name} spans a factor {high / low:.2g} (high / low); a range that wide is not a prediction. "
            f"Commit to a range no wider than a factor {max_ratio:g}."
        )
    return low, high


def score_range(low: float, high: float, measured: float, what: str, known: dict | None = None) -> None:
    """Fail unless ``measured`` lies in [low, high]; a range around an already-measured value is named.

    ``known`` maps labels of values the learner has already seen (and that a right
    prediction cannot contain) to those values. Introduced in notebook 00.
    """
    if np.isclose([low, high], measured, rtol=1e-6, atol=0).any():
        fail(
            f"an end of your range is the measured {what} itself: that was copied from an output, not "
            "predicted. Write down what you expect before you run the measurement."
        )
    for label, value in (known or {}).items():
        if low <= value <= high and not low <= measured <= high:
            fail(
                f"your range holds the {what} of {label}, which you had already measured; the new model "
                "differs from it. Work out what grows, and by how much."
            )
    if measured > high:
        fail(
            f"the measured {what} is above your whole range (more than {measured / high:.2g} times its high "
            "end). Which part did your estimate leave out or undercount?"
        )
    if measured < low:
        fail(
            f"the measured {what} is below your whole range (your low end is {low / measured:.2g} times "
            "the measurement). Which part did your estimate overcount?"
        )


def wide_mlp_size(predicted, blob: bytes, measured_sizes: dict | None = None) -> None:
    """Exercise 00.1: the gzip bytes of a wider MLP's .tflite file, predicted as a range within a factor 1.5."""
    from .. import measure

    low, high = prediction_range(predicted, "the file's gzip size in bytes", 1.5, name="predicted_bytes")
    size = measure.compressed_size(blob)
    known = {f"the MLP '{label}'": float(value) for label, value in (measured_sizes or {}).items()}
    score_range(low, high, float(size), "size", known)
    return passed(
        f"measured {size:,} bytes (gzip), inside your range [{low:,.0f}, {high:,.0f}]: a file of float32 "
        "weights grows with its parameter count."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
