"""Self-checks for the exercises of notebook 06 (dynamic networks: early exits)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import one_pass_line_each, call, fail, passed


def _scores(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    conf = 1.0 / np.exp(z).sum(axis=1)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ent = -(np.exp(log_p) * log_p).sum(axis=1) / np.log(z.shape[1])
    return conf, ent


def _route(exit_logits, rule, t, first=True, strict=True, normalise=True):
    """The expected routing, and the typical mistakes (last passing exit, >=, entropy not divided by log C)."""
    n, last = len(exit_logits[0]), len(exit_logits) - 1
    idx = np.full(n, last)
    for k in range(last) if not first else reversed(range(last)):
        conf, ent = _scores(exit_logits[k])
        if not normalise:
            ent = ent * np.log(exit_logits[k].shape[1])
        if rule == "confidence":
            passes = conf > t if strict else conf >= t
        else:
            passes = ent < t if strict else ent <= t
        idx[passes] = k
    pred = np.stack(exit_logits)[idx, np.arange(n)].argmax(axis=1)
    return pred, idx


def _exit_logits():
    rng = np.random.default_rng(6)
    logits = [rng.normal(0, s, (40, 10)) for s in (2.0, 3.0, 4.0)]
    logits[0][0] = 0.0  # uniform: confidence exactly 0.1, entropy exactly 1
    logits[0][1] = [1000.0] + [0.0] * 9  # sure, and too large for a plain exp
    return logits


def exit_rule(fn) -> None:
    """Exercise 06.1: route each input to the first exit whose score passes; (predictions, exit indices)."""
    logits = _exit_logits()
    cases = [
        ("confidence", 0.1),
        ("confidence", 0.6),
        ("confidence", 0.0),
        ("confidence", 1.0),
        ("entropy", 0.5),
        ("entropy", 1.0),
        ("entropy", 0.0),
    ]
    for rule, t in cases:
        with np.errstate(all="ignore"):
            got = call(fn, [z.copy() for z in logits], rule, t, name="exit_rule")
        if not isinstance(got, tuple) or len(got) != 2:
            fail("return two arrays, (predicted class per input, exit index per input), as a tuple.")
        pred, idx = (np.asarray(g) for g in got)
        want_pred, want_idx = _route(logits, rule, t)
        if idx.shape != want_idx.shape or pred.shape != want_pred.shape:
            fail(
                f"return one class and one exit index per input ({len(want_idx)} inputs); got shapes "
                f"{pred.shape} and {idx.shape}."
            )
        if np.array_equal(idx, want_idx) and np.array_equal(pred, want_pred):
            continue
        if not np.all(np.isfinite(_as_float(idx))):
            fail("some exit indices are not finite: subtract each row's maximum before exp.")
        if np.array_equal(idx, _route(logits, rule, t, first=False)[1]):
            fail(
                "an input leaves at the FIRST exit whose score passes; yours takes a later one. Stop "
                "routing an input once it has left."
            )
        if np.array_equal(idx, _route(logits, rule, t, strict=False)[1]):
            fail(
                f"use the strict comparison ({'confidence > t' if rule == 'confidence' else 'entropy < t'}): "
                "with uniform logits over 10 classes the confidence is exactly 0.1 and the entropy exactly 1."
            )
        if rule == "entropy" and np.array_equal(idx, _route(logits, rule, t, normalise=False)[1]):
            fail("divide the entropy by log(number of classes), so that it lies in [0, 1].")
        if np.array_equal(idx, want_idx):
            fail(
                "the exits are right but not the predictions: predict with the logits of the exit each "
                "input leaves at (argmax over the classes)."
            )
        fail(
            f"rule {rule!r}, threshold {t}: {int(np.sum(idx != want_idx))} of {len(idx)} inputs leave at "
            "another exit than expected. Score each early exit (max softmax, or entropy / log C), leave "
            "at the first that passes, and send the rest to the final exit (index len(exit_logits) - 1)."
        )
    return passed(
        f"{len(cases)} rule and threshold cases route and predict as expected, logits of 1000 included."
    )


def _as_float(a):
    try:
        return np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        return np.array([np.nan])


def _sweep_table():
    return pd.DataFrame(
        {
            "threshold": [0.5, 0.8, 0.9, 0.95, 0.99, 1.0],
            "accuracy": [0.9700, 0.9890, 0.9915, 0.9921, 0.9926, 0.9925],
            "mean_macs": [300e3, 380e3, 450e3, 560e3, 900e3, 2300e3],
        }
    )


def pick_operating_point(fn) -> None:
    """Exercise 06.2: the threshold with the fewest mean MACs within ``max_drop`` of the reference."""
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


def threshold_under_budget(fn, judgement=None) -> None:
    """Exercise 06.3: the most accurate threshold whose predicted mean latency fits a budget (ties: the
    cheaper; None when nothing fits), and a judgement of the measurement against the prediction."""
    if not isinstance(judgement, str) or not any(w in judgement.lower() for w in ("higher", "lower")):
        fail(
            "write your judgement as a sentence in `judgement`: will the measured latency be higher or "
            "lower than predicted from the stages timed one at a time, and why?"
        )
    if len(judgement.split()) < 8:
        fail(
            "give a reason in your judgement too: what does the measurement pay that the stages timed "
            "alone did not, or the other way round?"
        )
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
    nothing = call(fn, table.copy(), list(stage_ms), 0.010, name="threshold_under_budget")
    if nothing is not None:
        fail(
            f"with a budget of 10 µs no threshold fits (the first stage alone takes 30 µs); return None, "
            f"got {nothing}."
        )
    return passed(
        f"threshold 0.95: predicted {pred[3] * 1e3:.1f} µs per input, within the budget, the most accurate that fits."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
