"""effcourse.dynamic (notebook 06): staged LiteRT execution of an early-exit network, its latency
comparison, the skip gate, bad input; and the notebook's exercise checks."""

from types import SimpleNamespace

import numpy as np
import pytest

import effcourse
from effcourse import checks, convert, dynamic, measure

keras = effcourse.keras
JUDGEMENT = "Higher: the measurement also pays for the exit decisions and the copies between stages."


def stages3():
    """Three stages on 8x8 images, as notebook 06 builds them: [features, logits] for the early
    stages, logits for the last; fixed random weights."""
    L = keras.layers
    image = keras.Input((8, 8, 1))
    c1 = L.Conv2D(2, 3, activation="relu", name="c1")
    f1_flat, h1 = L.Flatten(name="flat"), L.Dense(3, name="exit1")
    d1, h2, out = L.Dense(4, activation="relu", name="d1"), L.Dense(3, name="exit2"), L.Dense(3, name="out")
    f1 = c1(image)
    flat = f1_flat(f1)
    f2 = d1(flat)
    joint = keras.Model(image, [h1(flat), h2(f2), out(f2)])
    rng = np.random.default_rng(1)
    joint.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in joint.get_weights()])
    s1_in, s2_in, s3_in = keras.Input((8, 8, 1)), keras.Input((6, 6, 2)), keras.Input((4,))
    s1_f = c1(s1_in)
    s2_f = d1(f1_flat(s2_in))
    stages = [
        keras.Model(s1_in, [s1_f, h1(f1_flat(s1_f))], name="stage1"),
        keras.Model(s2_in, [s2_f, h2(s2_f)], name="stage2"),
        keras.Model(s3_in, out(s3_in), name="stage3"),
    ]
    return joint, stages


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(2).random((64, 8, 8, 1)).astype("float32")


def test_staged_tflite_gives_the_keras_predictions(images):
    joint, stages = stages3()
    logits = [np.asarray(z) for z in joint.predict(images, verbose=0)]
    z = logits[0] - logits[0].max(axis=1, keepdims=True)
    t = float(np.median(1 / np.exp(z).sum(axis=1)))  # about half leave at exit 1
    staged = dynamic.StagedTFLite(stages, "confidence", t)
    pred, idx = staged.predict(images)
    want_pred, want_idx = good_exit_rule(logits, "confidence", t)
    assert len(set(idx)) >= 2
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(pred, want_pred)
    staged_e = dynamic.StagedTFLite(stages, "entropy", 0.9)
    np.testing.assert_array_equal(staged_e.predict(images)[1], good_exit_rule(logits, "entropy", 0.9)[1])
    assert staged.size_bytes == sum(measure.compressed_size(b) for b in staged.blobs)
    full = keras.Model(joint.inputs, joint.outputs[-1])
    report = dynamic.compare_latency(staged, convert.to_tflite(full), images[:6], repeats=2, warmup=2)
    np.testing.assert_array_equal(report.exits, want_idx[:6])
    assert report.dynamic_ms.shape == (6,) and report.full_p90_ms > 0
    assert list(report.table().columns) == ["mean (µs)", "median (µs)", "p90 (µs)"]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.5", None, True])
def test_threshold_outside_its_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dynamic.StagedTFLite(stages3()[1], "confidence", bad)


def test_bad_input_is_explained():
    _, stages = stages3()
    with pytest.raises(ValueError, match="Unknown exit rule"):
        dynamic.StagedTFLite(stages, "margin", 0.5)
    with pytest.raises(ValueError, match="one threshold per early exit"):
        dynamic.StagedTFLite(stages, "confidence", [0.5])
    with pytest.raises(ValueError, match="at least 2"):
        dynamic.StagedTFLite(stages[:1], "confidence", 0.5)
    with pytest.raises(ValueError, match=r"\[features, logits\]"):
        dynamic.StagedTFLite([stages[2], stages[2]], "confidence", 0.5)


class FakeClock:
    """A clock that only moves when a fake model runs: each run advances it by a set duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_compare_latency_arithmetic_with_a_fake_clock(monkeypatch):
    """Per-sample medians over repeats, mean / median / p90 across samples, the speed-up, the
    block order (blocks alternate which model goes first, and so do passes) and the exits, exactly."""
    from effcourse.dynamic import staged as staged_module

    clock, calls = FakeClock(), []
    # seconds per run: dynamic[sample][repeat], full[sample][repeat]
    dyn_s = np.array([[1.0, 3.0, 2.0], [4.0, 4.0, 9.0], [1.0, 1.0, 1.0], [2.0, 8.0, 5.0]]) * 1e-3
    full_s = np.array([[6.0, 5.0, 7.0], [6.0, 6.0, 6.0], [9.0, 1.0, 5.0], [5.0, 5.0, 5.0]]) * 1e-3
    warm = 3

    class FakeStaged:
        input_shape = (1, 2)
        runs = 0

        def classify(self, sample):
            i = int(sample[0, 0])
            k = FakeStaged.runs - warm
            FakeStaged.runs += 1
            if k >= 0:
                calls.append(("dynamic", i))
                clock.now += dyn_s[i][sum(1 for c in calls if c == ("dynamic", i)) - 1]
            return 0, i % 3

    class FakeFull:
        runs = 0

        def __init__(self, blob, threads=1):
            assert blob == b"full" and threads == 1

        def classify(self, sample):
            i = int(sample[0, 0])
            k = FakeFull.runs - warm
            FakeFull.runs += 1
            if k >= 0:
                calls.append(("full", i))
                clock.now += full_s[i][sum(1 for c in calls if c == ("full", i)) - 1]
            return 0, 0

    monkeypatch.setattr(staged_module, "_SingleTFLite", FakeFull)
    x = np.repeat(np.arange(4, dtype=np.float32)[:, None], 2, axis=1)
    out = dynamic.compare_latency(FakeStaged(), b"full", x, repeats=3, warmup=warm, clock=clock, block=2)
    assert isinstance(out, dynamic.LatencyComparison)
    np.testing.assert_allclose(out.dynamic_ms, [2.0, 4.0, 1.0, 5.0])
    np.testing.assert_allclose(out.full_ms, [6.0, 6.0, 5.0, 5.0])
    assert list(out.exits) == [0, 1, 2, 0]
    assert out.repeats == 3 and out.threads == 1
    assert out.dynamic_mean_ms == pytest.approx(3.0) and out.full_mean_ms == pytest.approx(5.5)
    assert out.dynamic_median_ms == pytest.approx(3.0) and out.full_median_ms == pytest.approx(5.5)
    assert out.dynamic_p90_ms == pytest.approx(np.percentile([2, 4, 1, 5], 90))
    assert out.full_p90_ms == pytest.approx(6.0)
    assert out.speedup_mean == pytest.approx(5.5 / 3.0)
    # blocks of two samples; pass 1: block 1 early exit first, block 2 full first; pass 2 the reverse
    order = "".join(name[0].upper() for name, _ in calls)
    assert order == "DDFF" + "FFDD" + "FFDD" + "DDFF" + "DDFF" + "FFDD"
    assert [i for _, i in calls][:8] == [0, 1, 0, 1, 2, 3, 2, 3]
    table = out.table(unit="ms", names=("early", "full"))
    assert table.loc["early", "mean (ms)"] == pytest.approx(3.0)
    assert table.loc["full", "p90 (ms)"] == pytest.approx(6.0)
    assert out.table().loc["full network (LiteRT)", "median (µs)"] == pytest.approx(5500.0)
    with pytest.raises(ValueError, match="repeats"):
        dynamic.compare_latency(FakeStaged(), b"full", x, repeats=0)
    with pytest.raises(ValueError, match="block"):
        dynamic.compare_latency(FakeStaged(), b"full", x, block=0)


def test_skip_gate_trains_and_its_table_adds_up():
    rng = np.random.default_rng(4)
    x = rng.random((96, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 96)
    mini = SimpleNamespace(x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    gate = dynamic.train_skip_gate(mini, epochs=1, train_size=48, batch_size=16, budget_target=0.3)
    assert isinstance(gate, dynamic.SkipGateResult)
    assert gate.gate_on.shape == (32,) and gate.gate_on.dtype == bool
    # the block: two 16->16 3x3 convolutions on 12x12 features, 'same' padding
    assert gate.block_macs == 2 * 12 * 12 * 3 * 3 * 16 * 16
    assert gate.always_macs == measure.macs(gate.gated) > gate.block_macs
    tab = gate.table
    assert list(tab.index) == ["learned gate", "gate forced on", "gate forced off", "random gate, same share"]
    assert tab.loc["learned gate", "share running the block"] == gate.share_on
    assert tab.loc["gate forced off", "mean MACs"] == gate.always_macs - gate.block_macs
    assert tab.loc["learned gate", "mean MACs"] == pytest.approx(
        gate.always_macs - (1 - gate.share_on) * gate.block_macs
    )
    assert tab.loc["learned gate", "test accuracy"] == gate.accuracy
    # the learned gate, imposed by hand, gives the probe's accuracy back
    assert dynamic.forced_accuracy(gate.gated, mini.x_test, mini.y_test, gate.gate_on) == pytest.approx(
        gate.accuracy
    )
    assert gate.gain_over_random == pytest.approx(tab.iloc[0, 2] - tab.iloc[3, 2])
    by_class = gate.share_by_class(np.arange(32) % 10)
    assert by_class.shape == (10,) and by_class[0] == gate.gate_on[np.arange(32) % 10 == 0].mean()
    with pytest.raises(ValueError, match="one gate value per input"):
        dynamic.forced_accuracy(gate.gated, mini.x_test, mini.y_test, np.ones(3))
    with pytest.raises(ValueError, match="budget_target"):
        dynamic.train_skip_gate(mini, epochs=1, train_size=8, budget_target=30)


# --- the notebook's exercise checks: fail on the placeholder and typical mistakes, pass on answers


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def good_exit_rule(exit_logits, rule, threshold):
    n, last = len(exit_logits[0]), len(exit_logits) - 1
    idx, undecided = np.full(n, last), np.ones(n, dtype=bool)
    for k, z in enumerate(exit_logits[:last]):
        z = np.asarray(z, dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        if rule == "confidence":
            passes = 1.0 / np.exp(z).sum(axis=1) > threshold
        else:
            passes = -(np.exp(log_p) * log_p).sum(axis=1) / np.log(z.shape[1]) < threshold
        leave = undecided & passes
        idx[leave], undecided = k, undecided & ~leave
    return np.stack(exit_logits)[idx, np.arange(n)].argmax(axis=1), idx


def test_check_exit_rule():
    checks.nb06.exit_rule(good_exit_rule)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.exit_rule(todo)
    with pytest.raises(checks.CheckFailed, match="tuple"):
        checks.nb06.exit_rule(lambda e, r, t: good_exit_rule(e, r, t)[1])

    def last_passing(exit_logits, rule, threshold):
        out = [good_exit_rule([z, exit_logits[-1]], rule, threshold) for z in exit_logits[:-1]]
        idx = np.full(len(exit_logits[0]), len(exit_logits) - 1)
        for k, (_, i) in enumerate(out):
            idx[i == 0] = k
        return np.stack(exit_logits)[idx, np.arange(len(idx))].argmax(axis=1), idx

    with pytest.raises(checks.CheckFailed, match="FIRST exit"):
        checks.nb06.exit_rule(last_passing)

    def not_strict(exit_logits, rule, threshold):
        nudge = 1e-12 if rule == "confidence" else -1e-12
        return good_exit_rule(
            exit_logits, rule, threshold - nudge if rule == "confidence" else threshold + 1e-12
        )

    with pytest.raises(checks.CheckFailed, match="strict"):
        checks.nb06.exit_rule(not_strict)

    def final_predictions(exit_logits, rule, threshold):
        return exit_logits[-1].argmax(axis=1), good_exit_rule(exit_logits, rule, threshold)[1]

    with pytest.raises(checks.CheckFailed, match="predictions"):
        checks.nb06.exit_rule(final_predictions)

    def unnormalised(exit_logits, rule, threshold):
        if rule == "confidence":
            return good_exit_rule(exit_logits, rule, threshold)
        return good_exit_rule(exit_logits, rule, threshold / np.log(10))

    with pytest.raises(checks.CheckFailed, match="log"):
        checks.nb06.exit_rule(unnormalised)


def test_check_operating_point():
    def good(table, reference, max_drop):
        ok = table[table["accuracy"] >= reference - max_drop]
        return ok.sort_values("mean_macs").iloc[0]["threshold"]

    checks.nb06.pick_operating_point(good)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.pick_operating_point(todo)
    with pytest.raises(checks.CheckFailed, match="most accurate"):
        checks.nb06.pick_operating_point(lambda t, r, d: t.sort_values("accuracy").iloc[-1]["threshold"])
    with pytest.raises(checks.CheckFailed, match="fraction"):
        checks.nb06.pick_operating_point(lambda t, r, d: good(t, r, d * 100))
    with pytest.raises(checks.CheckFailed, match="hard-code"):
        checks.nb06.pick_operating_point(lambda t, r, d: 0.9)


def test_check_threshold_under_budget():
    def good(table, stage_ms, budget_ms):
        cum = np.cumsum(stage_ms)
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ cum
        ok = table[pred <= budget_ms].assign(pred=pred[pred <= budget_ms])
        if ok.empty:
            return None
        return ok.sort_values(["accuracy", "pred"], ascending=[False, True]).iloc[0]["threshold"]

    checks.nb06.threshold_under_budget(good, JUDGEMENT)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.threshold_under_budget(todo, JUDGEMENT)
    with pytest.raises(checks.CheckFailed, match="never exit"):
        checks.nb06.threshold_under_budget(
            lambda t, s, b: t.sort_values("accuracy").iloc[-1]["threshold"], JUDGEMENT
        )
    with pytest.raises(checks.CheckFailed, match="most accurate"):
        checks.nb06.threshold_under_budget(lambda t, s, b: 0.5, JUDGEMENT)

    def own_stage_only(table, stage_ms, budget_ms):  # charges the exit's own stage, not the cumulative sum
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.asarray(stage_ms)
        return table[pred <= budget_ms].sort_values("accuracy").iloc[-1]["threshold"]

    with pytest.raises(checks.CheckFailed, match="cumulative"):
        checks.nb06.threshold_under_budget(own_stage_only, JUDGEMENT)

    def ties_to_the_dearer(table, stage_ms, budget_ms):
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.cumsum(stage_ms)
        ok = table[pred <= budget_ms]
        return ok[ok["accuracy"] == ok["accuracy"].max()]["threshold"].max()

    with pytest.raises(checks.CheckFailed, match="tie"):
        checks.nb06.threshold_under_budget(ties_to_the_dearer, JUDGEMENT)
    with pytest.raises(checks.CheckFailed, match="tie|fixed"):
        checks.nb06.threshold_under_budget(lambda t, s, b: 0.95, JUDGEMENT)  # hard-coded
    with pytest.raises(checks.CheckFailed, match="judgement"):
        checks.nb06.threshold_under_budget(todo)
    with pytest.raises(checks.CheckFailed, match="reason"):
        checks.nb06.threshold_under_budget(todo, "higher")

    def never_none(table, stage_ms, budget_ms):
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.cumsum(stage_ms)
        ok = table.assign(pred=pred)
        ok = ok[ok["pred"] <= budget_ms] if (ok["pred"] <= budget_ms).any() else ok
        return ok.sort_values(["accuracy", "pred"], ascending=[False, True]).iloc[0]["threshold"]

    with pytest.raises(checks.CheckFailed, match="None"):
        checks.nb06.threshold_under_budget(never_none, JUDGEMENT)
