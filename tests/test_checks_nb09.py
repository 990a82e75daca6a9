"""checks.nb09: each check passes a right answer once and rejects placeholders, usual mistakes and hard-coding."""

import numpy as np
import pandas as pd
import pytest

from effcourse import checks


def todo(*args, **kwargs):
    raise NotImplementedError


def choose_ok(table, reference, max_drop, max_bytes):
    ok = table[(table["accuracy"] >= reference - max_drop) & (table["gzip_bytes"] <= max_bytes)]
    return ok.sort_values(["latency_ms", "gzip_bytes"]).index[0] if len(ok) else None


def _reader(base=None):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(base or CalibrationDataReader):
        def __init__(self, images, input_name):
            self.images, self.input_name, self.position = np.asarray(images, np.float32), input_name, 0

        def get_next(self):
            if self.position >= len(self.images):
                return None
            self.position += 1
            return {self.input_name: self.images[self.position - 1 : self.position]}

        def rewind(self):
            self.position = 0

    return Reader


def test_calibration_reader(capsys):
    checks.nb09.calibration_reader(_reader())
    assert capsys.readouterr().out.count("PASS") == 1
    Reader = _reader()

    class Todo(Reader):
        def __init__(self, images, input_name):
            raise NotImplementedError

    class Endless(Reader):
        def get_next(self):
            return {self.input_name: self.images[:1]}

    class All(Reader):
        def get_next(self):
            if self.position:
                return None
            self.position = 1
            return {self.input_name: self.images}

    class NoBatch(Reader):
        def get_next(self):
            feed = super().get_next()
            return feed and {k: v[0] for k, v in feed.items()}

    class WrongKey(Reader):
        def get_next(self):
            feed = super().get_next()
            return feed and {"input": next(iter(feed.values()))}

    class NoRewind(Reader):
        def rewind(self):
            pass

    class Shared(Reader):
        position = 0

        def __init__(self, images, input_name):
            self.images, self.input_name = np.asarray(images, np.float32), input_name

        def get_next(self):
            if Shared.position >= len(self.images):
                return None
            Shared.position += 1
            return {self.input_name: self.images[Shared.position - 1 : Shared.position]}

        def rewind(self):
            Shared.position = 1  # never back to the start of a new reader

    for wrong, hint in [
        (Todo, "not written yet"),
        (object, "CalibrationDataReader"),
        (Endless, "return None"),
        (All, "one image per get_next"),
        (NoBatch, "batch of one"),
        (WrongKey, "input name"),
        (NoRewind, "rewind"),
        (Shared, "starts again|own first image"),
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb09.calibration_reader(wrong)


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
