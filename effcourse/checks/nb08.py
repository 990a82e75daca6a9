"""Self-checks for the exercises of notebook 08 (automated compression)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, close, fail, passed


def pareto(fn) -> None:
    """Exercise 08.1: the Pareto mask on constructed sets."""
    from ..results import pareto_mask

    cases = [
        ([1, 2, 3, 4], [0.5, 0.7, 0.6, 0.9]),
        ([5, 5, 1], [0.9, 0.8, 0.1]),
        ([2, 2], [0.7, 0.7]),
    ]
    for sizes, accs in cases:
        got = call(fn, list(sizes), list(accs), name="pareto")
        want = pareto_mask(sizes, accs).tolist()
        if got is None or [bool(g) for g in got] != want:
            hint = ""
            if got is not None and sizes == [2, 2]:
                hint = " Two identical points do not beat each other: neither is strictly better."
            elif got is not None and sizes == [5, 5, 1]:
                hint = " Same size but less accurate is beaten."
            fail(f"for sizes {sizes} and accuracies {accs} expected {want}, got {got}.{hint}")
    return passed("your Pareto mask matches results.pareto_mask on three constructed sets.")


def choose(fn) -> None:
    """Exercise 08.2: the search's selection rule."""
    trials = [(100, 0.90), (50, 0.985), (40, 0.97), (50, 0.99), (200, 0.995)]
    got = call(fn, trials, 0.99, 0.005, name="choose")
    if got == 2:
        fail(
            "trial 2 is the smallest but misses the budget (0.97 < 0.985): filter first, then take the smallest."
        )
    if got == 1:
        fail("trials 1 and 3 have the same size; break the tie with the higher accuracy.")
    if got != 3:
        fail(f"expected index 3 (50 bytes at 0.99), got {got}.")
    none = call(fn, [(10, 0.5)], 0.99, 0.005, name="choose")
    if none is not None:
        fail(f"when no trial meets the budget return None, got {none}.")
    return passed(
        "the smallest within-budget trial is chosen, ties to the more accurate, None when none fits."
    )


def compression_ratio(value, dense_bytes, size_bytes) -> None:
    """Exercise 08.3: dense float32 bytes over compressed deployable bytes."""
    if value is None or not np.isfinite(float(value)):
        fail("compute a number from the two byte counts (a ratio, larger than 1 for a compressed model).")
    if abs(float(value) - size_bytes / dense_bytes) < 1e-9:
        fail("you divided the wrong way round: the ratio is dense bytes over compressed bytes (> 1).")
    return close(value, dense_bytes / size_bytes, "compression ratio", atol=1e-6)


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
