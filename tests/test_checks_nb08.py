import pytest

from effcourse import checks


def todo(*args, **kwargs):
    raise NotImplementedError


def pareto_ok(sizes, accs):
    return [
        not any(s <= si and a >= ai and (s < si or a > ai) for s, a in zip(sizes, accs))
        for si, ai in zip(sizes, accs)
    ]


def choose_ok(trials, base, drop):
    ok = [i for i, (_, a) in enumerate(trials) if a >= base - drop]
    return min(ok, key=lambda i: (trials[i][0], -trials[i][1])) if ok else None


def test_pareto_check():
    checks.nb08.pareto(pareto_ok)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb08.pareto(todo)
    with pytest.raises(checks.CheckFailed, match="identical"):  # 'not strictly' forgotten
        checks.nb08.pareto(
            lambda s, a: [
                not any(x <= si and y >= ai and (j != i) for j, (x, y) in enumerate(zip(s, a)))
                for i, (si, ai) in enumerate(zip(s, a))
            ]
        )


def test_choose_check():
    checks.nb08.choose(choose_ok)
    with pytest.raises(checks.CheckFailed, match="misses the budget"):
        checks.nb08.choose(lambda t, b, d: min(range(len(t)), key=lambda i: t[i][0]))
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb08.choose(todo)


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
