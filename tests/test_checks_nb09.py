"""checks.nb09: each check passes a right answer once and rejects placeholders, usual mistakes and hard-coding."""

import numpy as np
import pandas as pd
import pytest

from effcourse import checks


def todo(*args, **kwargs):
    raise NotImplementedError


def stats_ok(blob, name):
    import onnx
    from onnx import numpy_helper

    init = next(i for i in onnx.load_from_string(blob).graph.initializer if i.name == name)
    values = numpy_helper.to_array(init)
    return float(np.mean(values == 0)), int(np.unique(values).size)


def choose_ok(table, reference, max_drop, max_bytes):
    ok = table[(table["accuracy"] >= reference - max_drop) & (table["gzip_bytes"] <= max_bytes)]
    return ok.sort_values(["latency_ms", "gzip_bytes"]).index[0] if len(ok) else None


def test_initializer_stats(capsys):
    checks.nb09.initializer_stats(stats_ok)
    assert capsys.readouterr().out.count("PASS") == 1
    for wrong, hint in [
        (todo, "not written yet"),
        (lambda b, n: (int(np.round(stats_ok(b, n)[0] * 96)), stats_ok(b, n)[1]), "count of zeros"),
        (lambda b, n: (1 - stats_ok(b, n)[0], stats_ok(b, n)[1]), "non-zeros"),
        (lambda b, n: (stats_ok(b, n)[0], stats_ok(b, n)[1] - 1), "0 is one of the stored values"),
        (lambda b, n: None, "two numbers"),
        (lambda b, n: (0.6, 5), "off by"),  # hard-coded from the first case: fails on the second
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb09.initializer_stats(wrong)


def test_choose_deployment(capsys):
    checks.nb09.choose_deployment(choose_ok)
    assert capsys.readouterr().out.count("PASS") == 1
    fastest = lambda t, r, d, b: t["latency_ms"].idxmin()  # noqa: E731
    with pytest.raises(checks.CheckFailed, match="loses 0.3 points"):
        checks.nb09.choose_deployment(fastest)
    no_tie_break = lambda t, r, d, b: (  # noqa: E731
        t[(t["accuracy"] >= r - d) & (t["gzip_bytes"] <= b)].sort_values("latency_ms", kind="stable").index[0]
    )
    with pytest.raises(checks.CheckFailed, match="break the tie"):
        checks.nb09.choose_deployment(no_tie_break)
    with pytest.raises(checks.CheckFailed, match="do not hard-code"):
        checks.nb09.choose_deployment(lambda t, r, d, b: "LiteRT dynamic")
    with pytest.raises(checks.CheckFailed, match="return None"):
        checks.nb09.choose_deployment(
            lambda t, r, d, b: choose_ok(t, r, d, b) or t.sort_values("latency_ms").index[-1]
        )
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb09.choose_deployment(todo)


@pytest.fixture
def measured():
    return pd.DataFrame({"latency_ms": [0.010, 0.030]}, index=["optimised", "not optimised"])


def test_prediction_right_side_passes_and_reports(measured, capsys):
    checks.nb09.prediction({"faster": "optimised", "ratio": 2.0}, measured)
    out = capsys.readouterr().out
    assert out.count("PASS") == 1 and "measured optimised 3.00x faster" in out and "1.50" in out


def test_prediction_rejects_placeholders_ties_and_a_clear_wrong_side(measured):
    for bad, hint in [
        (None, "dict"),
        ({"faster": None, "ratio": 2.0}, "fill in"),
        ({"faster": "...", "ratio": 2.0}, "fill in"),
        ({"faster": "fastest", "ratio": 2.0}, "must be one of"),
        ({"faster": "optimised", "ratio": None}, "must be a number"),
        ({"faster": "optimised", "ratio": 0.5}, "at least 1"),
        ({"faster": "optimised", "ratio": 1}, "tie"),
        ({"faster": "not optimised", "ratio": 2.0}, "the other way round"),
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb09.prediction(bad, measured)


def test_prediction_accepts_either_side_of_a_close_call(capsys):
    close_call = pd.DataFrame({"latency_ms": [0.010, 0.011]}, index=["a", "b"])
    checks.nb09.prediction({"faster": "b", "ratio": 1.5}, close_call)
    assert "too close to call" in capsys.readouterr().out
