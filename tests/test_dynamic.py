"""effcourse.dynamic (notebook 06): early exits, exit rules, MAC accounting, staged TFLite,
bad input; and the notebook's exercise checks."""

from types import SimpleNamespace

import numpy as np
import pytest

import effcourse
from effcourse import checks, dynamic, measure, models

keras = effcourse.keras


def backbone():
    """8x8 input -> conv 2@3x3 -> flatten -> dense 4 -> dense 3 (logits), fixed random weights."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, activation="relu", name="c1"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(4, activation="relu", name="d1"),
            keras.layers.Dense(3, name="out"),
        ],
        name="tiny",
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def net3():
    """Exits after c1 and after d1, plus the final one; head weights random too."""
    net = dynamic.build_early_exit(backbone(), ["c1", "d1"])
    rng = np.random.default_rng(1)
    net.model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in net.model.get_weights()])
    return net


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(2).random((64, 8, 8, 1)).astype("float32")


def test_macs_match_a_hand_count(net3):
    # stage 1: conv 6*6 positions * 3*3*1 * 2 = 648, its head Dense 72 -> 3 = 216
    # stage 2: Dense 72 -> 4 = 288, its head Dense 4 -> 3 = 12
    # stage 3: Dense 4 -> 3 = 12
    assert net3.stage_macs == [648 + 216, 288 + 12, 12]
    assert list(net3.cumulative_macs) == [864, 1164, 1176]
    assert measure.macs(net3.full) == 648 + 288 + 12
    # 3 inputs leave at exit 1, 2 at exit 2, 1 at the end
    exit_index = np.array([0, 1, 0, 2, 1, 0])
    assert dynamic.mean_macs(exit_index, net3.cumulative_macs) == (3 * 864 + 2 * 1164 + 1176) / 6


def test_mean_macs_on_constructed_logits():
    sure = [10.0, 0.0, 0.0]  # confidence ~0.9999
    unsure = [0.1, 0.0, 0.0]  # confidence ~0.36
    exit1 = np.array([sure, unsure, sure, unsure])
    exit2 = np.array([sure, sure, unsure, unsure])
    final = np.array([[0.0, 1.0, 0.0]] * 4)
    idx = dynamic.route([exit1, exit2, final], "confidence", 0.9)
    assert list(idx) == [0, 1, 0, 2]
    assert dynamic.mean_macs(idx, [100, 300, 1000]) == (100 + 300 + 100 + 1000) / 4
    assert list(dynamic.exit_shares(idx, 3)) == [0.5, 0.25, 0.25]
    pred, _ = dynamic.dynamic_predict([exit1, exit2, final], "confidence", 0.9)
    assert list(pred) == [0, 0, 0, 1]
    table = dynamic.sweep([exit1, exit2, final], np.array([0, 0, 0, 1]), [100, 300, 1000], [0.0, 0.9, 1.0])
    assert list(table["accuracy"]) == [0.75, 1.0, 0.25]  # exit 1 alone says 0 for all
    assert list(table["mean_macs"]) == [100.0, 375.0, 1000.0]
    assert dynamic.operating_point(table, reference_accuracy=0.25, max_drop=0.001)["threshold"] == 0.0
    assert dynamic.operating_point(table, reference_accuracy=1.0, max_drop=0.001)["threshold"] == 0.9
    # against the final exit (right only on the last input): t=0 harms 1 and helps 3 inputs
    assert list(table["harm"]) == [1, 0, 0] and list(table["help"]) == [3, 3, 0]
    assert list(table["samples"]) == [4, 4, 4]


def test_operating_point_margin_of_standard_errors():
    """The drop plus z * sqrt(harm + help) / samples must stay within max_drop."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "threshold": [0.5, 0.8, 0.9, 1.0],
            "accuracy": [0.990, 0.995, 0.995, 0.995],
            "mean_macs": [100.0, 200.0, 300.0, 1000.0],
            "harm": [60, 50, 2, 0],
            "help": [10, 50, 2, 0],
            "samples": [10000] * 4,
        }
    )
    # no margin: 0.8 is as accurate as never exiting and cheaper than 0.9
    assert dynamic.operating_point(table, 0.995, 0.0005)["threshold"] == 0.8
    # one standard error: 0.8 changed 100 answers (sqrt(100)/10000 = 0.1 points), 0.9 only 4 (0.02)
    assert dynamic.operating_point(table, 0.995, 0.0005, z=1.0)["threshold"] == 0.9
    assert dynamic.operating_point(table, 0.995, 0.0001, z=1.0)["threshold"] == 1.0
    with pytest.raises(ValueError, match="change counts"):
        dynamic.operating_point(table.drop(columns=["harm"]), 0.995, 0.0005, z=1.0)
    with pytest.raises(ValueError, match="z"):
        dynamic.operating_point(table, 0.995, 0.0005, z=-1.0)
    with pytest.raises(ValueError, match="margin of 3 standard errors"):
        dynamic.operating_point(table.iloc[:3], 0.995, 0.0001, z=3.0)


def test_never_exit_equals_full_model_and_always_exit_the_first_head(net3, images):
    logits = net3.exit_logits(images)
    full_pred = net3.full.predict(images, verbose=0).argmax(1)
    np.testing.assert_allclose(logits[-1], net3.full.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    for rule, t in dynamic.NEVER_EXIT.items():
        pred, idx = dynamic.dynamic_predict(logits, rule, t)
        assert np.all(idx == 2)
        np.testing.assert_array_equal(pred, full_pred)
    pred, idx = dynamic.dynamic_predict(logits, "confidence", dynamic.ALWAYS_EXIT["confidence"])
    assert np.all(idx == 0)
    np.testing.assert_array_equal(pred, logits[0].argmax(1))


def test_the_backbone_is_copied_and_shares_nothing():
    bb = backbone()
    before = [w.copy() for w in bb.get_weights()]
    net = dynamic.build_early_exit(bb, ["c1"])
    net.full.get_layer("c1").set_weights([w * 0 for w in net.full.get_layer("c1").get_weights()])
    for a, b in zip(before, bb.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert net.model.get_layer("c1") is net.stages[0].get_layer("c1") is net.full.get_layer("c1")


def test_rules():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    conf = dynamic.confidence(logits)
    p = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    np.testing.assert_allclose(conf, [1.0, 1 / 3, p.max()])
    np.testing.assert_allclose(
        dynamic.entropy(logits), [0.0, 1.0, -(p * np.log(p)).sum() / np.log(3)], atol=1e-12
    )
    assert list(dynamic.exit_mask(logits, "confidence", 0.5)) == [True, False, True]
    assert list(dynamic.exit_mask(logits, "entropy", 0.5)) == [True, False, False]


def test_staged_tflite_gives_the_keras_predictions(net3, images):
    logits = net3.exit_logits(images)
    t = float(np.median(dynamic.confidence(logits[0])))  # about half leave at exit 1
    staged = dynamic.StagedTFLite(net3, "confidence", t)
    pred, idx = staged.predict(images)
    want_pred, want_idx = dynamic.dynamic_predict(logits, "confidence", t)
    assert len(set(idx)) >= 2
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(pred, want_pred)
    staged_e = dynamic.StagedTFLite(net3, "entropy", 0.9)
    np.testing.assert_array_equal(staged_e.predict(images)[1], dynamic.route(logits, "entropy", 0.9))
    assert staged.size_bytes == sum(measure.compressed_size(b) for b in staged.blobs)
    from effcourse import convert

    report = dynamic.compare_latency(staged, convert.to_tflite(net3.full), images[:6], repeats=2, warmup=2)
    np.testing.assert_array_equal(report.exits, want_idx[:6])
    assert report.dynamic_ms.shape == (6,) and report.full_p90_ms > 0
    assert list(report.table().columns) == ["mean (µs)", "median (µs)", "p90 (µs)"]


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


def test_joint_training_runs_and_checks_weights():
    net = dynamic.build_early_exit(backbone(), ["c1"])
    rng = np.random.default_rng(3)
    x = rng.random((64, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    mini = SimpleNamespace(x_train=x, y_train=y, x_val=x[:16], y_val=y[:16])
    hist = dynamic.train_joint(net, mini, epochs=1, loss_weights=[0.5, 1.0], batch_size=32, shift=0.1)
    assert any(k.endswith("accuracy") for k in hist.history) and len(hist.history["loss"]) == 1
    x_b, y_b = next(iter(dynamic.train_batches(mini, 16, shift=0.2, outputs=2)))
    assert x_b.shape == (16, 8, 8, 1) and len(y_b) == 2 and np.array_equal(y_b[0], y_b[1])
    assert not any(np.allclose(x_b[0], img) for img in x)  # moved, not a training image as is
    with pytest.raises(ValueError, match="shift"):
        dynamic.train_batches(mini, 16, shift=0.6)
    with pytest.raises(ValueError, match="one per exit"):
        dynamic.train_joint(net, mini, epochs=1, loss_weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        dynamic.train_joint(net, mini, epochs=1, loss_weights=[1.0, -1.0])


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


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.5", None, True])
def test_threshold_outside_its_range(bad):
    logits = [np.zeros((2, 3)), np.zeros((2, 3))]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dynamic.route(logits, "confidence", bad)


def test_bad_input_is_explained(net3):
    with pytest.raises(ValueError, match="Unknown exit rule"):
        dynamic.exit_mask(np.zeros((2, 3)), "margin", 0.5)
    with pytest.raises(ValueError, match="different numbers of classes"):
        dynamic.route([np.zeros((4, 10)), np.zeros((4, 5))], "confidence", 0.5)
    with pytest.raises(ValueError, match="one threshold per early exit"):
        dynamic.route([np.zeros((4, 3))] * 3, "confidence", [0.5])
    with pytest.raises(ValueError, match="no layer 'conv9'.*'c1'"):
        dynamic.build_early_exit(backbone(), ["conv9"])
    with pytest.raises(ValueError, match="last layer"):
        dynamic.build_early_exit(backbone(), ["out"])
    with pytest.raises(ValueError, match="forward order"):
        dynamic.build_early_exit(backbone(), ["d1", "c1"])
    wrong = [lambda shape, classes, i: [keras.layers.Flatten(name="f9"), keras.layers.Dense(5, name="h9")]]
    with pytest.raises(ValueError, match="Exit head 1.*3 class logits"):
        dynamic.build_early_exit(backbone(), ["c1"], heads=wrong)
    with pytest.raises(ValueError, match="one cumulative MAC count per exit"):
        dynamic.mean_macs(np.array([0, 3]), [1, 2, 3])
    with pytest.raises(ValueError, match="within"):
        dynamic.operating_point(
            dynamic.sweep([np.eye(3)[[0, 1]], np.eye(3)[[1, 1]]], np.array([1, 0]), [1, 2], [0.0]), 1.0, 0.001
        )


def test_backbones_it_cannot_split():
    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(2, 3, padding="same", name="a")(inp)
    b = keras.layers.Add(name="skip")([inp, a])
    residual = keras.Model(inp, keras.layers.Dense(3, name="o")(keras.layers.Flatten(name="f")(b)))
    with pytest.raises(ValueError, match="one chain"):
        dynamic.build_early_exit(residual, ["a"])

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(models.ModelError):
        dynamic.build_early_exit(Sub(), ["a"])


# --- the notebook's exercise checks: fail on the placeholder and typical mistakes, pass on answers


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def test_check_confidence():
    def good(z):
        z = z - z.max(axis=1, keepdims=True)
        return 1.0 / np.exp(z).sum(axis=1)

    checks.nb06.exit_confidence(good)
    checks.nb06.exit_confidence(dynamic.confidence)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.exit_confidence(todo)
    with pytest.raises(checks.CheckFailed, match="argmax"):
        checks.nb06.exit_confidence(lambda z: z.argmax(axis=1))
    with pytest.raises(checks.CheckFailed, match="finite|maximum"):
        checks.nb06.exit_confidence(lambda z: (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).max(axis=1))
    with pytest.raises(checks.CheckFailed, match="axis"):
        checks.nb06.exit_confidence(lambda z: good(z.T))


def test_check_mean_macs():
    checks.nb06.mean_macs(lambda idx, macs: np.cumsum(macs)[idx].mean())
    checks.nb06.mean_macs(lambda i, m: dynamic.mean_macs(i, np.cumsum(m)))
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.mean_macs(todo)
    with pytest.raises(checks.CheckFailed, match="cumulative"):
        checks.nb06.mean_macs(lambda idx, macs: np.asarray(macs)[idx].mean())


def test_check_operating_point():
    def good(table, reference, max_drop):
        ok = table[table["accuracy"] >= reference - max_drop]
        return ok.sort_values("mean_macs").iloc[0]["threshold"]

    checks.nb06.pick_operating_point(good)
    checks.nb06.pick_operating_point(lambda t, r, d: dynamic.operating_point(t, r, d)["threshold"])
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.pick_operating_point(todo)
    with pytest.raises(checks.CheckFailed, match="most accurate"):
        checks.nb06.pick_operating_point(lambda t, r, d: t.sort_values("accuracy").iloc[-1]["threshold"])
    with pytest.raises(checks.CheckFailed, match="fraction"):
        checks.nb06.pick_operating_point(lambda t, r, d: good(t, r, d * 100))
    with pytest.raises(checks.CheckFailed, match="hard-code"):
        checks.nb06.pick_operating_point(lambda t, r, d: 0.9)


def test_sweep_figures_label_every_variant():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from effcourse import plots

    exit1 = np.array([[10.0, 0.0, 0.0], [0.1, 0.0, 0.0], [10.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    exits = [exit1, exit1[[0, 0, 1, 1]], np.array([[0.0, 1.0, 0.0]] * 4)]
    labels = np.array([0, 0, 0, 1])
    sweeps = {
        r: dynamic.sweep(exits, labels, [100, 300, 1000], ts, rule=r)
        for r, ts in {"confidence": [0.0, 0.5, 0.9, 1.0], "entropy": [0.0, 0.1, 0.5, 1.0]}.items()
    }
    fig, ax = plt.subplots()
    plots.exit_sweep(
        ax,
        sweeps,
        "confidence",
        0.9,
        375.0,
        1.0,
        1000.0,
        0.25,
        0.001,
        extra=[(200.0, 0.5, dict(marker="D"), "static")],
    )
    names = ax.get_legend_handles_labels()[1]
    assert names[:2] == ["early exit, confidence rule (test sweep)", "early exit, entropy rule (test sweep)"]
    assert "operating point (confidence > 0.9, chosen on validation)" in names and "static" in names
    assert ax.get_xscale() == "log" and "MACs" in ax.get_xlabel()
    fig2, ax2 = plt.subplots()
    plots.exit_share_bars(ax2, sweeps["confidence"], ["exit 1", "exit 2", "final"], 0.9, "confidence")
    assert ax2.get_legend_handles_labels()[1] == ["operating point", "exit 1", "exit 2", "final"]
    heights = np.array([[p.get_height() for p in c] for c in ax2.containers])
    np.testing.assert_allclose(heights.sum(axis=0), 100.0)
    plt.close(fig)
    plt.close(fig2)


def test_static_rival_widths_and_bisection_on_macs():
    assert dynamic.scaled_widths(0.5) == [10, 25, 250]
    assert dynamic.scaled_widths(0.001) == [1, 1, 1]
    # a fake cost: MACs = 1000 * alpha, found by bisection to within 2^-12 of the range
    alpha = dynamic.alpha_for_macs(400.0, build=lambda a: a, macs=lambda a: 1000 * a)
    assert 0.4 - (1.0 - 0.02) / 2**12 <= alpha <= 0.4
    with pytest.raises(ValueError, match="over the budget"):
        dynamic.alpha_for_macs(1.0, build=lambda a: a, macs=lambda a: 1000 * a)
    model = dynamic.lenet5_scaled(0.5)
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [10, 25]


def test_check_threshold_under_budget():
    def good(table, stage_ms, budget_ms):
        cum = np.cumsum(stage_ms)
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ cum
        ok = table[pred <= budget_ms].assign(pred=pred[pred <= budget_ms])
        return ok.sort_values(["accuracy", "pred"], ascending=[False, True]).iloc[0]["threshold"]

    checks.nb06.threshold_under_budget(good)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.threshold_under_budget(todo)
    with pytest.raises(checks.CheckFailed, match="never exit"):
        checks.nb06.threshold_under_budget(lambda t, s, b: t.sort_values("accuracy").iloc[-1]["threshold"])
    with pytest.raises(checks.CheckFailed, match="most accurate"):
        checks.nb06.threshold_under_budget(lambda t, s, b: 0.5)

    def own_stage_only(table, stage_ms, budget_ms):  # charges the exit's own stage, not the cumulative sum
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.asarray(stage_ms)
        return table[pred <= budget_ms].sort_values("accuracy").iloc[-1]["threshold"]

    with pytest.raises(checks.CheckFailed, match="cumulative"):
        checks.nb06.threshold_under_budget(own_stage_only)

    def ties_to_the_dearer(table, stage_ms, budget_ms):
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.cumsum(stage_ms)
        ok = table[pred <= budget_ms]
        return ok[ok["accuracy"] == ok["accuracy"].max()]["threshold"].max()

    with pytest.raises(checks.CheckFailed, match="tie"):
        checks.nb06.threshold_under_budget(ties_to_the_dearer)
    with pytest.raises(checks.CheckFailed, match="tie|fixed"):
        checks.nb06.threshold_under_budget(lambda t, s, b: 0.95)  # hard-coded
