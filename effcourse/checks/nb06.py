"""Self-checks for the exercises of notebook 06 (dynamic networks: early exits)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import one_pass_line_each, call, close, fail, passed


def exit_confidence(fn) -> None:
    """Exercise 06.1: the maximum softmax probability of each row of logits, numerically stable."""
    logits = np.array([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0], [1000.0, 0.0, -1000.0], [-5.0, 3.0, 3.0]])
    z = logits - logits.max(axis=1, keepdims=True)
    expected = 1.0 / np.exp(z).sum(axis=1)
    with np.errstate(all="ignore"):
        got = call(fn, logits.copy(), name="max_softmax")
    got = np.asarray(got, dtype=float)
    if got.shape != expected.shape:
        fail(
            f"return one number per row (shape {expected.shape}), got shape {got.shape}. Take the "
            "softmax over the classes (axis=1), then its maximum per row."
        )
    if np.array_equal(got, logits.argmax(axis=1).astype(float)):
        fail(
            "you returned the predicted class (argmax); the rule needs how sure the exit is: "
            "the largest softmax probability."
        )
    if np.allclose(got, logits.max(axis=1)):
        fail("you returned the largest logit; turn logits into probabilities with softmax first.")
    if not np.all(np.isfinite(got)):
        fail(
            "the result is not finite for logits like 1000: subtract each row's maximum before "
            "exp (the softmax does not change)."
        )
    if np.allclose(got[1], 1 / 3) and not np.allclose(got, expected, atol=1e-6):
        fail("check the softmax axis: normalise over the classes of each row (axis=1), not over the batch.")
    return close(
        got,
        expected,
        "max softmax of 4 rows of logits",
        atol=1e-6,
        hint="softmax(z)_k = exp(z_k - max z) / sum_j exp(z_j - max z); take the max over k.",
    )


def mean_macs(fn) -> None:
    """Exercise 06.2: mean MACs per input given the exit each input took and the MACs per stage."""
    stage_macs = [1000, 5000, 2000]  # each stage with its own exit head
    exit_index = np.array([0, 0, 0, 1, 2, 0, 1, 0])
    cum = np.cumsum(stage_macs)
    expected = float(cum[exit_index].mean())
    got = call(fn, exit_index.copy(), list(stage_macs), name="mean_macs_per_input")
    try:
        got = float(got)
    except (TypeError, ValueError):
        fail(f"return one number (the mean over inputs), got {type(got).__name__}.")
    if np.isclose(got, float(np.asarray(stage_macs)[exit_index].mean())):
        fail(
            "you charged each input only the stage it left at. An input that leaves at exit 2 "
            "also ran stage 1 and its head: charge the cumulative sum of stage MACs up to its exit."
        )
    if np.isclose(got, float(cum[-1])):
        fail("you charged every input the whole network; each input pays only up to the exit it took.")
    if np.isclose(got, float(cum[exit_index].sum())):
        fail("you summed over inputs; the question asks for the mean per input.")
    close(
        got,
        expected,
        "mean MACs on 8 inputs over 3 stages",
        atol=1e-6,
        hint="mean over inputs of cumsum(stage_macs)[exit_index].",
    )
    return passed("each input pays every stage and head up to the exit it leaves at.")


def _sweep_table():
    return pd.DataFrame(
        {
            "threshold": [0.5, 0.8, 0.9, 0.95, 0.99, 1.0],
            "accuracy": [0.9700, 0.9890, 0.9915, 0.9921, 0.9926, 0.9925],
            "mean_macs": [300e3, 380e3, 450e3, 560e3, 900e3, 2300e3],
        }
    )


def pick_operating_point(fn) -> None:
    """Exercise 06.3: the threshold with the fewest mean MACs within ``max_drop`` of the reference."""
    table = _sweep_table()
    reference, max_drop = 0.9925, 0.001
    ok = table[table["accuracy"] >= reference - max_drop - 1e-12]
    expected = float(ok.sort_values("mean_macs").iloc[0]["threshold"])
    got = call(fn, table.copy(), reference, max_drop, name="pick_threshold")
    try:
        got = float(got)
    except (TypeError, ValueError):
        fail(f"return the chosen threshold (a number), got {type(got).__name__}.")
    if np.isclose(got, 0.5):
        fail(
            "0.5 has the fewest MACs but loses 2.25 points; keep only thresholds whose accuracy is "
            "at least reference - max_drop (a fraction: 0.001 is 0.1 points), then take the "
            "cheapest of those."
        )
    if np.isclose(got, 0.99):
        fail(
            "you picked the most accurate threshold; among the thresholds within max_drop of the "
            "reference, the goal is the one with the fewest mean MACs."
        )
    if not np.isclose(got, expected):
        fail(
            f"expected the threshold {expected} (accuracy {ok.set_index('threshold').loc[expected, 'accuracy']}, "
            f"the cheapest within {max_drop * 100:.1f} points of {reference}); got {got}."
        )
    second = table.copy()
    second.loc[2, "accuracy"] = 0.9900  # now 0.9 falls outside: the answer must move to 0.95
    got2 = float(call(fn, second, reference, max_drop, name="pick_threshold"))
    if not np.isclose(got2, 0.95):
        fail(
            f"on a second table where 0.9 loses 0.25 points the answer should be 0.95, got {got2}: "
            "filter by accuracy on the table you are given, do not hard-code the answer."
        )
    return passed(
        f"threshold {expected} is the cheapest within {max_drop * 100:.1f} points of the reference."
    )


def _budget_table():
    return pd.DataFrame(
        {
            "threshold": [0.5, 0.8, 0.9, 0.95, 0.99, 1.0],
            "accuracy": [0.9700, 0.9890, 0.9915, 0.9921, 0.9923, 0.9925],
            "share_exit1": [1.0, 0.95, 0.90, 0.85, 0.80, 0.0],
            "share_exit2": [0.0, 0.03, 0.06, 0.09, 0.10, 0.0],
            "share_final": [0.0, 0.02, 0.04, 0.06, 0.10, 1.0],
        }
    )


def _predicted_ms(table, stage_ms):
    cum = np.cumsum(stage_ms)
    shares = table[["share_exit1", "share_exit2", "share_final"]].to_numpy()
    return shares @ cum


def threshold_under_budget(fn) -> None:
    """Exercise 06.4: the most accurate threshold whose predicted mean latency fits a budget (ties: the cheaper)."""
    table, stage_ms, budget = _budget_table(), [0.030, 0.100, 0.020], 0.047
    pred = _predicted_ms(table, stage_ms)
    got = call(fn, table.copy(), list(stage_ms), budget, name="threshold_under_budget")
    try:
        got = float(got)
    except (TypeError, ValueError):
        fail(f"return the chosen threshold (a number), got {type(got).__name__}.")
    if np.isclose(got, 1.0):
        fail(
            "1.0 (never exit) is the most accurate, but every input then runs every stage: its "
            "predicted latency is the cumulative sum of all the stage latencies, over the budget. "
            "Keep only the thresholds whose predicted mean latency is within the budget."
        )
    if np.isclose(got, 0.5):
        fail(
            "0.5 fits the budget, but so do more accurate thresholds: among those that fit, take "
            "the most accurate."
        )
    if np.isclose(got, 0.99):
        fail(
            "0.99 only fits if an input is charged the stage it leaves at alone. An input that "
            "leaves at exit 2 also ran stage 1: its latency is the cumulative sum of the stage "
            "latencies up to its exit, weighted by the share leaving there."
        )
    if not np.isclose(got, 0.95):
        fail(
            f"expected 0.95 (predicted {pred[3] * 1e3:.1f} µs within the {budget * 1e3:.0f} µs budget, "
            f"the most accurate that fits); got {got}."
        )
    second = table.copy()
    second.loc[1, "accuracy"] = second.loc[2, "accuracy"]  # 0.8 and 0.9 now tie on accuracy
    got2 = call(fn, second, list(stage_ms), 0.042, name="threshold_under_budget")
    if not np.isclose(float(got2), 0.8):
        fail(
            f"on a second table (budget 42 µs: 0.5, 0.8 and 0.9 fit; 0.8 and 0.9 equally accurate) "
            f"the answer is 0.8, got {got2}: on a tie in accuracy take the cheaper threshold, and "
            "read the table and budget you are given rather than fixed values."
        )
    return passed(
        f"threshold 0.95: predicted {pred[3] * 1e3:.1f} µs per input, within the budget, the most accurate that fits."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
