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


def test_ratio_check():
    checks.nb08.compression_ratio(40.0, 4000, 100)
    with pytest.raises(checks.CheckFailed, match="wrong way round"):
        checks.nb08.compression_ratio(100 / 4000, 4000, 100)
