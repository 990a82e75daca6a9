"""Self-checks for the exercises of notebook 08 (automated compression)."""

from __future__ import annotations

import numpy as np

from . import call, fail, one_pass_line_each, passed


def _tiny_classifier():
    """A two-layer Dense classifier on 6 inputs and 400 labelled points it gets right."""
    import tf_keras

    rng = np.random.default_rng(8)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((6,)),
            tf_keras.layers.Dense(8, activation="relu", name="fc1"),
            tf_keras.layers.Dense(4, name="logits"),
        ]
    )
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(0, 1, (400, 6)).astype("float32")
    return model, x, np.argmax(model.predict(x, verbose=0), -1)


def _pruned_reference(model, x, y, sparsity):
    """Non-zero parameters (pruned kernels, every bias) and accuracy of the magnitude-pruned copy."""
    weights, out, nonzero = model.get_weights(), [], 0
    for i in range(0, len(weights), 2):
        kernel, bias = weights[i], weights[i + 1]
        k = int(round(sparsity[i // 2] * kernel.size))
        cut = np.sort(np.abs(kernel), axis=None)[k - 1] if k else -1.0
        kernel = np.where(np.abs(kernel) > cut, kernel, 0.0).astype("float32")
        out += [kernel, bias]
        nonzero += int(np.count_nonzero(kernel)) + bias.size
    h = np.maximum(x @ out[0] + out[1], 0.0)
    return nonzero, float(np.mean(np.argmax(h @ out[2] + out[3], -1) == y))


def objective(fn) -> None:
    """Exercise 08.1: a per-layer pruning objective for Optuna, with its constraint stored for the sampler."""
    import warnings

    import optuna

    model, x, y = _tiny_classifier()
    before = [w.copy() for w in model.get_weights()]
    floor = 0.9
    for s1, s2 in ((0.5, 0.25), (0.875, 0.75)):
        trial = optuna.trial.FixedTrial({"sparsity.fc1": s1, "sparsity.logits": s2})
        with warnings.catch_warnings():  # a fixed value outside the learner's range only warns
            warnings.simplefilter("ignore")
            got = call(fn, trial, model, x, y, floor, name="objective")
        if any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())):
            fail(
                "the model passed in was changed: prune a copy (clone_model, then set_weights), or "
                "every later trial starts from an already pruned model."
            )
        want, acc = _pruned_reference(model, x, y, (s1, s2))
        if not isinstance(got, (int, float, np.integer, np.floating)) or abs(float(got) - want) > 2:
            fail(
                f"at sparsities {s1} (fc1) and {s2} (logits) expected about {want} non-zero parameters "
                f"(pruned kernels plus every bias), got {got!r}: return that count, the value to minimise."
            )
        seen = trial.user_attrs.get("accuracy")
        if seen is None or abs(float(seen) - acc) > 0.02:
            fail(
                f"store the pruned copy's accuracy on (x, y) as trial.set_user_attr('accuracy', ...); "
                f"expected about {acc:.3f}, got {seen!r}. Prune the smallest magnitudes of each kernel."
            )
        cons = trial.user_attrs.get("constraint")
        if not isinstance(cons, (list, tuple)) or len(cons) != 1:
            fail("store the constraint as a list of one number: trial.set_user_attr('constraint', [...]).")
        if abs(float(cons[0]) - (floor - float(seen))) > 1e-6:
            fail(
                "Optuna counts a trial as feasible when every constraint value is <= 0: store "
                f"floor minus accuracy (here {floor - float(seen):+.4f}), got {cons[0]!r}."
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constraints_func is marked experimental
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=0, constraints_func=lambda t: t.user_attrs["constraint"])
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.optimize(lambda t: call(fn, t, model, x, y, floor, name="objective"), n_trials=4)
    names = set(study.trials[0].params)
    if names != {"sparsity.fc1", "sparsity.logits"}:
        fail(f"suggest one sparsity per Dense layer, named 'sparsity.<layer name>'; got {sorted(names)}.")
    return passed(
        "your objective prunes a copy per layer, returns the non-zero count, stores accuracy and the "
        "constraint floor - accuracy, and a constrained TPE study runs it."
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
    """Exercise 08.2: deploy the smallest trial that clears the floor by one standard error."""
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


def best_so_far(fn) -> None:
    """Exercise 08.3: the best value within budget so far, per trial (the progress chart's curve)."""
    import pandas as pd

    nan = float("nan")
    cases = [
        ([(True, 500.0), (False, 100.0), (True, 400.0), (True, 450.0), (False, nan), (True, 300.0)], "mixed"),
        ([(False, 50.0), (True, 900.0), (True, 800.0)], "late start"),
        ([(False, 10.0), (False, nan)], "none"),
    ]
    for spec, what in cases:
        rows = pd.DataFrame(
            {"trial": range(len(spec)), "feasible": [f for f, _ in spec], "size_bytes": [v for _, v in spec]}
        )
        want, best = [], nan
        for ok, v in spec:
            if ok and v == v:  # within budget and measured (NaN != NaN)
                best = v if best != best else min(best, v)
            want.append(best)
        got = call(fn, rows.copy(), "size_bytes", name="best_so_far")
        try:
            got = [float(g) for g in list(got)]
        except (TypeError, ValueError):
            fail(f"return one number per trial (a list or a Series), got {type(got).__name__}.")
        if len(got) != len(want):
            fail(f"return one value per trial: {len(rows)} trials, got {len(got)} values.")
        same = all((g == w) or (g != g and w != w) for g, w in zip(got, want))
        if same:
            continue
        if what == "none" or (what == "late start" and got[0] == got[0]):
            fail("before the first trial within budget there is no best yet: NaN there, not a number.")
        if what == "mixed" and min(x for x in got if x == x) < 300:
            fail("a trial over budget never counts, however small: only rows with feasible True.")
        if any(b > a for a, b in zip(got, got[1:]) if a == a and b == b):
            fail(
                "the best so far never gets worse: keep the running minimum, and carry it over trials that miss."
            )
        fail(
            f"for feasible {[f for f, _ in spec]} and sizes {[v for _, v in spec]} expected {want}, got {got}."
        )
    return passed(
        "the running best within budget: NaN before the first, infeasible trials skipped, never worse."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
