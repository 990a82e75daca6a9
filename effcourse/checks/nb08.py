"""Self-checks for the exercises of notebook 08 (automated compression)."""

from __future__ import annotations

import numpy as np

from . import call, fail, one_pass_line_each, passed


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


def _reference_choice(rows, floor, n_val):
    done = rows[rows["state"] == "complete"]
    se = np.sqrt(done["accuracy"] * (1 - done["accuracy"]) / n_val)
    safe = done[done["accuracy"] >= floor + se - 1e-12]
    if safe.empty:
        return None
    return int(safe.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]["trial"])


def _rows(spec):
    import pandas as pd

    return pd.DataFrame(
        [{"trial": i, "state": st, "size_bytes": sz, "accuracy": acc} for i, (st, sz, acc) in enumerate(spec)]
    )


def deploy_choice(fn, rows, floor, n_val) -> None:
    """Exercise 08.3: deploy the smallest trial that clears the floor by one standard error."""
    # n = 1000: at 98% accuracy one standard error is 0.44 points
    cases = [
        (  # the plain winner (trial 1) clears the floor, but not by a standard error
            [
                ("complete", 500, 0.99),
                ("complete", 300, 0.9805),
                ("complete", 400, 0.99),
                ("complete", 200, 0.90),
            ],
            0.98,
            1000,
            "the smallest within-budget trial",
        ),
        (  # a tie on size: the more accurate; a pruned trial never counts
            [
                ("pruned", 100, 0.999),
                ("complete", 400, 0.995),
                ("complete", 400, 0.991),
                ("complete", 900, 0.999),
            ],
            0.98,
            1000,
            "a tie",
        ),
        (  # nothing clears it
            [("complete", 400, 0.981), ("complete", 300, 0.95)],
            0.98,
            1000,
            "none",
        ),
        (  # more images, smaller standard error: the smallest now qualifies
            [("complete", 500, 0.99), ("complete", 300, 0.9815), ("complete", 400, 0.99)],
            0.98,
            100_000,
            "many images",
        ),
    ]
    for spec, fl, n, what in cases:
        table = _rows(spec)
        want = _reference_choice(table, fl, n)
        got = call(fn, table.copy(), fl, n, name="deploy_choice")
        if got is not None and not isinstance(got, (int, np.integer)):
            fail(f"return a trial number (an int) or None, got {type(got).__name__} {got!r}.")
        if got == want:
            continue
        if want is None:
            fail("when no complete trial clears floor + one standard error, return None.")
        if what == "the smallest within-budget trial" and got == 1:
            fail(
                "that trial meets the budget but only just: its margin over the floor is smaller than "
                "one standard error of its accuracy, sqrt(a (1 - a) / n_val)."
            )
        if what == "a tie" and got == 0:
            fail(
                "a pruned trial was stopped early and never measured as a file: only 'complete' trials count."
            )
        if what == "a tie":
            fail("two trials have the same size: break the tie with the higher accuracy.")
        if what == "many images":
            fail("the standard error shrinks with n_val: compute it from the n_val you are given, per trial.")
        fail(
            f"on a constructed table ({what}) trial {got} is not the smallest complete trial clearing "
            "floor + one standard error."
        )
    want = _reference_choice(rows, floor, n_val)
    got = call(fn, rows.copy(), floor, n_val, name="deploy_choice")
    if got != want:
        fail(
            f"on the study's own trials your choice ({got}) differs: check the filter on state and the margin."
        )
    return passed(
        "the smallest complete trial clearing the floor by one standard error, ties to the more accurate, "
        "None when none does (constructed tables and the study's trials)."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
