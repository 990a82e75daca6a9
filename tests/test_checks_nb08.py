import pytest

from effcourse import checks


def todo(*args, **kwargs):
    raise NotImplementedError


def objective_ok(trial, model, x, y, floor):
    import numpy as np
    import tensorflow as tf

    pruned = tf.keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    nonzero = 0
    for layer in pruned.layers:
        kernel, bias = layer.get_weights()
        s = trial.suggest_float(f"sparsity.{layer.name}", 0.0, 0.99)
        kernel = np.where(np.abs(kernel) > np.quantile(np.abs(kernel), s), kernel, 0.0)
        layer.set_weights([kernel, bias])
        nonzero += np.count_nonzero(kernel) + bias.size
    accuracy = float(np.mean(np.argmax(pruned.predict(x, verbose=0), -1) == y))
    trial.set_user_attr("accuracy", accuracy)
    trial.set_user_attr("constraint", [floor - accuracy])
    return nonzero


def test_objective_check():
    checks.nb08.objective(objective_ok)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb08.objective(todo)

    def in_place(trial, model, x, y, floor):  # prunes the model it was given, not a copy
        for layer in model.layers:
            k, b = layer.get_weights()
            layer.set_weights([k * (abs(k) > 0.3), b])
        return objective_ok(trial, model, x, y, floor)

    with pytest.raises(checks.CheckFailed, match="was changed"):
        checks.nb08.objective(in_place)

    def wrong_sign(trial, model, x, y, floor):
        out = objective_ok(trial, model, x, y, floor)
        trial.set_user_attr("constraint", [trial.user_attrs["accuracy"] - floor])
        return out

    with pytest.raises(checks.CheckFailed, match="<= 0"):
        checks.nb08.objective(wrong_sign)

    def kernels_only(trial, model, x, y, floor):
        return objective_ok(trial, model, x, y, floor) - 12  # the 8 + 4 biases left out

    with pytest.raises(checks.CheckFailed, match="every bias"):
        checks.nb08.objective(kernels_only)

    def fixed_accuracy(trial, model, x, y, floor):
        out = objective_ok(trial, model, x, y, floor)
        trial.set_user_attr("accuracy", 1.0)
        return out

    with pytest.raises(checks.CheckFailed, match="accuracy"):
        checks.nb08.objective(fixed_accuracy)


def _deploy_ok(rows, floor, n_val):
    import numpy as np

    done = rows[rows["state"] == "complete"]
    safe = done[done["accuracy"] >= floor + np.sqrt(done["accuracy"] * (1 - done["accuracy"]) / n_val)]
    if safe.empty:
        return None
    return int(safe.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]["trial"])


def _study_rows():
    import pandas as pd

    return pd.DataFrame(
        {
            "trial": [0, 1, 2, 3],
            "state": ["complete", "pruned", "complete", "complete"],
            "size_bytes": [900, 100, 400, 300],
            "accuracy": [0.99, 0.5, 0.985, 0.9801],
        }
    )


def test_deploy_choice_check():
    rows = _study_rows()
    checks.nb08.deploy_choice(_deploy_ok, rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb08.deploy_choice(todo, rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="only just"):  # the plain budget filter, no margin
        checks.nb08.deploy_choice(
            lambda r, f, n: int(
                r[(r.state == "complete") & (r.accuracy >= f)].sort_values("size_bytes").iloc[0].trial
            ),
            rows,
            0.98,
            5000,
        )
    for constant in (0, 1, 2, 3, None):  # a hard-coded answer fails on some constructed table
        with pytest.raises(checks.CheckFailed):
            checks.nb08.deploy_choice(lambda r, f, n, c=constant: c, rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="an int"):
        checks.nb08.deploy_choice(lambda r, f, n: "trial 2", rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="higher accuracy"):  # ties broken the wrong way

        def no_tie(r, f, n):
            d = r[r.state == "complete"]
            d = d[d.accuracy >= f + (d.accuracy * (1 - d.accuracy) / n) ** 0.5]
            return None if d.empty else int(d.sort_values(["size_bytes", "accuracy"]).iloc[0].trial)

        checks.nb08.deploy_choice(no_tie, rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="pruned"):  # pruned trials counted

        def with_pruned(r, f, n):
            d = r[r.accuracy >= f + (r.accuracy * (1 - r.accuracy) / n) ** 0.5]
            return (
                None
                if d.empty
                else int(d.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0].trial)
            )

        checks.nb08.deploy_choice(with_pruned, rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="n_val"):  # a fixed standard error

        def fixed_se(r, f, n):
            d = r[(r.state == "complete") & (r.accuracy >= f + 0.0044)]
            return (
                None
                if d.empty
                else int(d.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0].trial)
            )

        checks.nb08.deploy_choice(fixed_se, rows, 0.98, 5000)
    with pytest.raises(checks.CheckFailed, match="constructed table .* not the smallest"):
        checks.nb08.deploy_choice(lambda r, f, n: 0, rows, 0.98, 5000)


def test_best_so_far_check():
    def ok(rows, metric):
        return rows[metric].where(rows["feasible"]).cummin().ffill()

    checks.nb08.best_so_far(ok)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb08.best_so_far(todo)
    with pytest.raises(checks.CheckFailed, match="over budget never counts"):
        checks.nb08.best_so_far(lambda r, m: r[m].cummin().ffill())
    with pytest.raises(checks.CheckFailed, match="never gets worse"):
        checks.nb08.best_so_far(lambda r, m: r[m].where(r["feasible"]).ffill())
    with pytest.raises(checks.CheckFailed, match="NaN there"):
        checks.nb08.best_so_far(lambda r, m: r[m].where(r["feasible"]).cummin().ffill().fillna(0))
