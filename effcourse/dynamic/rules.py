"""Exit rules and their accounting: confidence and entropy, routing, mean MACs, the threshold sweep (notebook 06).

``confidence`` / ``entropy`` score an exit's logits; ``route`` sends each input to the first
exit whose score passes the threshold; ``mean_macs`` charges each input the MACs of every
stage and head it ran (counted by ``measure.macs``); ``sweep`` tabulates accuracy against
mean MACs over thresholds and ``operating_point`` picks the cheapest row within an accuracy
budget.

The exit rules (threshold ``t`` in [0, 1]):

* ``confidence``: exit when ``max softmax > t``. ``t = 1`` never exits early; ``t = 0``
  always exits at the first exit (the maximum softmax is at least 1/C > 0).
* ``entropy``: exit when the entropy of the softmax, divided by ``log C`` so that it lies in
  [0, 1], is ``< t``. ``t = 0`` never exits early; ``t = 1`` exits every input whose head is
  not exactly uniform.
"""

from __future__ import annotations

import numpy as np

RULES = ("confidence", "entropy")
NEVER_EXIT = {"confidence": 1.0, "entropy": 0.0}  # thresholds at which no input exits early
ALWAYS_EXIT = {"confidence": 0.0}  # the threshold at which every input leaves at the first exit


def _logits2d(logits, what="logits"):
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(
            f"{what} must have shape (samples, classes) with at least 2 classes; got {arr.shape}."
        )
    return arr


def confidence(logits) -> np.ndarray:
    """The maximum softmax probability of each row of logits, computed stably.

    Introduced in notebook 06.
    """
    z = _logits2d(logits)
    z = z - z.max(axis=1, keepdims=True)
    return 1.0 / np.exp(z).sum(axis=1)


def entropy(logits) -> np.ndarray:
    """The entropy of softmax(logits) per row, divided by log(classes): 0 sure, 1 uniform.

    Introduced in notebook 06.
    """
    z = _logits2d(logits)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    h = -(np.exp(logp) * logp).sum(axis=1) / np.log(z.shape[1])
    return np.clip(h, 0.0, 1.0)


def check_threshold(threshold, rule: str = "confidence") -> float:
    """A valid exit threshold as a float, or a ValueError that says the valid range.

    Introduced in notebook 06.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown exit rule {rule!r}; choose one of {RULES}.")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.number)):
        raise ValueError(f"The {rule} threshold must be a number in [0, 1]; got {threshold!r}.")
    t = float(threshold)
    if not (0.0 <= t <= 1.0):
        never = NEVER_EXIT[rule]
        raise ValueError(
            f"The {rule} threshold must lie in [0, 1]; got {t}. "
            + (
                "Confidence is a probability: exit when max softmax > t (t = 1 never exits early, "
                "t = 0 always exits at the first exit)."
                if rule == "confidence"
                else "Entropy is divided by log(classes): exit when it is < t "
                f"(t = {never} never exits early, t = 1 exits nearly everything)."
            )
        )
    return t


def exit_mask(logits, rule: str, threshold) -> np.ndarray:
    """True for the inputs whose exit logits pass the rule: confidence > t, or entropy < t.

    Introduced in notebook 06.
    """
    t = check_threshold(threshold, rule)
    if rule == "confidence":
        return confidence(logits) > t
    return entropy(logits) < t


def _check_exits(exit_logits):
    if not isinstance(exit_logits, (list, tuple)) or len(exit_logits) < 2:
        raise ValueError(
            "Give the logits of every exit as a list, earliest first, the final exit "
            f"last (at least 2); got {type(exit_logits).__name__}."
        )
    arrays = [_logits2d(z, f"exit {k + 1} logits") for k, z in enumerate(exit_logits)]
    classes = [a.shape[1] for a in arrays]
    if len(set(classes)) != 1:
        raise ValueError(
            f"The exits give different numbers of classes {classes}; every exit must "
            "predict the same classes (end every head in Dense(num_classes))."
        )
    rows = [a.shape[0] for a in arrays]
    if len(set(rows)) != 1:
        raise ValueError(
            f"The exits' logits cover different numbers of samples {rows}; compute "
            "all of them on the same inputs."
        )
    return arrays


def _thresholds(thresholds, rule, n_early):
    if isinstance(thresholds, (list, tuple, np.ndarray)):
        if len(thresholds) != n_early:
            raise ValueError(
                f"Give one threshold per early exit ({n_early}) or a single number; got {len(thresholds)}."
            )
        return [check_threshold(t, rule) for t in thresholds]
    return [check_threshold(thresholds, rule)] * n_early


def route(exit_logits, rule: str, thresholds) -> np.ndarray:
    """The exit each input leaves at (0 = first): the first early exit whose logits pass the rule,
    else the final exit (notebook 06). ``thresholds``: one number, or one per early exit.

    Introduced in notebook 06.
    """
    arrays = _check_exits(exit_logits)
    ts = _thresholds(thresholds, rule, len(arrays) - 1)
    n = arrays[0].shape[0]
    exit_index = np.full(n, len(arrays) - 1, dtype=np.int64)
    open_ = np.ones(n, dtype=bool)
    for k, (z, t) in enumerate(zip(arrays[:-1], ts)):
        leave = open_ & exit_mask(z, rule, t)
        exit_index[leave] = k
        open_ &= ~leave
    return exit_index


def dynamic_predict(exit_logits, rule: str, thresholds):
    """Predicted class and exit index per input under an exit rule.

    Introduced in notebook 06.
    """
    arrays = _check_exits(exit_logits)
    exit_index = route(arrays, rule, thresholds)
    stacked = np.stack(arrays)  # (exits, samples, classes)
    chosen = stacked[exit_index, np.arange(stacked.shape[1])]
    return chosen.argmax(axis=1), exit_index


def mean_macs(exit_index, cumulative_macs) -> float:
    """Mean MACs per input: each input pays the cumulative MACs of the exit it left at.

    ``cumulative_macs[k]`` counts every stage and every head up to and including exit k (an
    input that goes on past an exit has paid for that exit's head too).

    Introduced in notebook 06.
    """
    cum = np.asarray(cumulative_macs, dtype=np.float64)
    idx = np.asarray(exit_index)
    if idx.size == 0:
        raise ValueError("No inputs: mean MACs of an empty set is undefined.")
    if idx.min() < 0 or idx.max() >= len(cum):
        raise ValueError(
            f"Exit indices must lie in 0..{len(cum) - 1} (one cumulative MAC count per "
            f"exit); got {idx.min()}..{idx.max()}."
        )
    return float(cum[idx].mean())


def exit_shares(exit_index, n_exits: int) -> np.ndarray:
    """The share of inputs leaving at each exit (sums to 1).

    Introduced in notebook 06.
    """
    idx = np.asarray(exit_index)
    return np.bincount(idx, minlength=n_exits)[:n_exits] / max(len(idx), 1)


def sweep(exit_logits, labels, cumulative_macs, thresholds, rule: str = "confidence"):
    """Accuracy, mean MACs and exit shares for each threshold, as a DataFrame.

    The same threshold is used at every early exit. Besides ``accuracy`` and ``mean_macs``,
    each row counts the inputs whose answer changed against the final exit's (never exiting):
    ``harm``, right at the final exit and wrong when exiting early; ``help``, the reverse; and
    ``samples``, the number of inputs. The accuracy difference from the final exit is
    ``(help - harm) / samples``; ``operating_point`` reads its uncertainty from those counts.

    Introduced in notebook 06.
    """
    import pandas as pd

    arrays = _check_exits(exit_logits)
    cum = np.asarray(cumulative_macs, dtype=np.float64)
    if len(cum) != len(arrays):
        raise ValueError(f"Give one cumulative MAC count per exit ({len(arrays)}); got {len(cum)}.")
    labels = np.asarray(labels)
    final_right = arrays[-1].argmax(axis=1) == labels
    rows = []
    for t in thresholds:
        pred, idx = dynamic_predict(arrays, rule, t)
        right = pred == labels
        row = {
            "threshold": float(t),
            "accuracy": float(np.mean(right)),
            "mean_macs": mean_macs(idx, cum),
            "harm": int(np.sum(final_right & ~right)),
            "help": int(np.sum(~final_right & right)),
            "samples": int(len(labels)),
        }
        for k, share in enumerate(exit_shares(idx, len(arrays))):
            row[f"share_exit{k + 1}" if k < len(arrays) - 1 else "share_final"] = float(share)
        rows.append(row)
    return pd.DataFrame(rows)


def operating_point(table, reference_accuracy: float, max_drop: float, z: float = 0.0):
    """The sweep row with the fewest mean MACs whose accuracy is at most ``max_drop`` below the
    reference (fractions, e.g. 0.001 = 0.1 points) (notebook 06); ties go to the more accurate.

    With ``z`` > 0 the drop must hold with a margin for the uncertainty of a finite
    validation set: the measured drop plus ``z`` standard errors. The drop comes from the
    inputs whose answer changed (``sweep``'s ``harm`` and ``help`` counts); treating each
    change as an independent +-1 of a count, its standard error is ``sqrt(harm + help) /
    samples``. A threshold that changed many answers, half for the better, is less certain
    than one that changed none, though both measure no drop.

    Introduced in notebook 06.
    """
    if not 0 <= max_drop < 1:
        raise ValueError(
            f"max_drop is a fraction of accuracy in [0, 1) (0.001 = 0.1 points); got {max_drop}."
        )
    if not (np.isfinite(z) and z >= 0):
        raise ValueError(f"z (standard errors of margin) must be a number >= 0; got {z!r}.")
    drop = reference_accuracy - table["accuracy"]
    if z > 0:
        missing = {"harm", "help", "samples"} - set(table.columns)
        if missing:
            raise ValueError(
                f"A margin of z standard errors needs the sweep's change counts; the table lacks "
                f"{sorted(missing)}. Build it with dynamic.sweep."
            )
        drop = drop + z * np.sqrt(table["harm"] + table["help"]) / table["samples"]
    ok = table[drop <= max_drop + 1e-12]
    if ok.empty:
        margin = f" with a margin of {z:g} standard errors" if z > 0 else ""
        raise ValueError(
            f"No threshold keeps accuracy within {max_drop * 100:.2f} points of "
            f"{reference_accuracy:.4f}{margin}; add thresholds closer to 'never exit'."
        )
    return ok.sort_values(["mean_macs", "accuracy"], ascending=[True, False]).iloc[0]
