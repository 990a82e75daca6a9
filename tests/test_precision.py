"""effcourse.precision (side-by-side training, op timing, the parity test), hardware detection,
and the notebook 05 checks: they fail on placeholders and typical mistakes and pass on answers."""

import numpy as np
import pytest

import effcourse
from effcourse import checks, hardware, models, precision

keras = effcourse.keras
mp = keras.mixed_precision


def compiled_copy(model):
    """A compiled copy of ``model`` with its weights (Adam, cross-entropy on logits)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return models.compile_classifier(clone)


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and must end under the float32 global policy."""
    mp.set_global_policy("float32")
    yield
    assert mp.global_policy().name == "float32", "a test left a mixed global policy behind"
    mp.set_global_policy("float32")


# --- measurement: side-by-side training and op timing ---------------------------------------------


def seven_steps(runs, mnist, **kwargs):
    """Seven steps of 64 images side by side, in chunks of 3: rounds of 3, 3 and 1 steps."""
    x, y = mnist.x_train[:640], mnist.y_train[:640]
    return precision.train_side_by_side(runs, x, y, steps=7, chunk=3, batch_size=64, **kwargs)


def test_train_side_by_side_same_batches_and_timings(mnist):
    effcourse.env.seed_everything(0)
    base = models.lenet_300_100()
    runs = {"a": compiled_copy(base), "b": compiled_copy(base)}
    seen = []
    out = seven_steps(runs, mnist, on_chunk=lambda n, m, s: seen.append((n, s)))
    assert len(out.losses["a"]) == 7 and out.losses["a"] == out.losses["b"]  # same batches, same model
    assert [len(s) for s in out.chunk_seconds.values()] == [3, 3]
    assert seen[:4] == [("a", 3), ("b", 3), ("b", 6), ("a", 6)]  # the order rotates every round
    assert out.ratios("a")["a"] == 1.0 and set(out.step_ms()) == {"a", "b"}
    with pytest.raises(ValueError, match="not compiled"):
        precision.train_side_by_side(
            {"c": models.lenet_300_100()}, mnist.x_train[:64], mnist.y_train[:64], 1, 1
        )


def test_train_side_by_side_shows_one_bar_over_every_step(mnist, monkeypatch, capsys):
    monkeypatch.setenv("EFFCOURSE_PROGRESS", "1")
    effcourse.env.seed_everything(0)
    base = models.lenet_300_100()
    runs = {n: compiled_copy(base) for n in "ab"}
    precision.train_side_by_side(
        runs, mnist.x_train[:256], mnist.y_train[:256], steps=4, chunk=2, batch_size=64, desc="two models"
    )
    err = capsys.readouterr().err
    assert "two models" in err and "8/8" in err  # 2 models x 4 steps


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _fake_step(model, clock, seconds):
    """Make ``model.train_on_batch`` advance the fake clock by ``seconds`` and return a loss."""

    def train_on_batch(x, y):
        clock.now += seconds
        return 0.5

    model.train_on_batch = train_on_batch
    return model


def test_train_side_by_side_times_chunks_on_the_clock_without_on_chunk(mnist):
    clock = FakeClock()
    base = models.lenet_300_100()
    runs = {
        "slow": _fake_step(compiled_copy(base), clock, 0.4),
        "fast": _fake_step(compiled_copy(base), clock, 0.1),
    }

    def on_chunk(name, model, step):
        clock.now += 100.0  # e.g. collecting gradients: must not count as training time

    out = seven_steps(runs, mnist, on_chunk=on_chunk, clock=clock)
    # Chunks of 3, 3 and 1 steps; the short last chunk is scaled to a full one.
    np.testing.assert_allclose(out.chunk_seconds["slow"], [1.2, 1.2, 1.2])
    np.testing.assert_allclose(out.chunk_seconds["fast"], [0.3, 0.3, 0.3])
    assert out.step_ms() == pytest.approx({"slow": 400.0, "fast": 100.0})
    assert out.ratios("fast") == pytest.approx({"slow": 4.0, "fast": 1.0})
    assert out.losses["slow"] == [0.5] * 7


def test_time_ops_runs_every_operation_in_every_dtype():
    table = precision.time_ops(("float32", "bfloat16"), batch_size=4, rounds=1, runs=1, desc=None)
    assert len(table) == 10 and set(table.index.get_level_values("dtype")) == {"float32", "bfloat16"}
    assert "conv2d backward, filter gradient" in table.index.get_level_values("operation")
    assert (table["ms"] > 0).all()


# --- hardware detection -----------------------------------------------------------------------

CPU_WITH_BF16 = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
CPU_PLAIN = "processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2 avx2 f16c\n"


def test_hardware_detection_reads_flags_and_never_assumes():
    s = hardware.support(CPU_WITH_BF16, gpus=[])
    assert s["cpu"] == "Test CPU" and s["cpu_flags"]["avx512_bf16"] is True
    assert s["bfloat16_units"] is True and s["float16_units"] is False  # f16c is conversion only
    s = hardware.support(CPU_PLAIN, gpus=[])
    assert s["bfloat16_units"] is False and s["float16_units"] is False
    s = hardware.support(None, gpus=[])  # no /proc/cpuinfo: unknown, not "no"
    assert s["float16_units"] is None and set(s["cpu_flags"].values()) == {None}
    volta = [{"device": "/physical_device:GPU:0", "name": "V100", "compute_capability": (7, 0)}]
    s = hardware.support(CPU_PLAIN, gpus=volta)
    assert s["float16_units"] is True and s["gpu_bfloat16"] is False
    pascal = [{"device": "/physical_device:GPU:0", "name": "P100", "compute_capability": (6, 0)}]
    assert hardware.support(CPU_PLAIN, gpus=pascal)["float16_units"] is False
    ampere = [{"device": "/physical_device:GPU:0", "name": "A100", "compute_capability": (8, 0)}]
    assert hardware.support(None, gpus=ampere)["bfloat16_units"] is True
    assert "native bfloat16 arithmetic" in hardware.support_table(hardware.support(CPU_PLAIN, gpus=[])).index


# --- notebook 05 checks: fail on the placeholder and on typical mistakes, pass on answers -------


def fate_solution(grads, scale=1.0):
    g = np.abs(np.asarray(grads, dtype=np.float64)).ravel()
    with np.errstate(over="ignore"):
        stored = (g[g > 0] * scale).astype(np.float16).astype(np.float64)
    tiny = np.finfo(np.float16).smallest_normal
    return {
        "flushed": np.mean(stored == 0),
        "subnormal": np.mean((stored > 0) & (stored < tiny)),
        "overflow": np.mean(np.isinf(stored)),
    }


def test_nb05_float16_fate_passes_the_answer_and_catches_the_typical_mistakes():
    checks.nb05.float16_fate(fate_solution)
    values = np.array([0.0, 1e-9, -1e-6, 1e-3, 1e5])  # one each: zero, flushed, subnormal, normal, inf
    assert fate_solution(values) == {"flushed": 0.25, "subnormal": 0.25, "overflow": 0.25}
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb05.float16_fate(todo)
    with pytest.raises(checks.CheckFailed, match="before the cast"):

        def cast_first(g, s=1.0):
            nz = np.abs(g[g != 0]).astype(np.float64)
            with np.errstate(over="ignore"):
                flushed = float(np.mean(nz.astype(np.float16) * s == 0))
            return dict(fate_solution(g, s), flushed=flushed)

        checks.nb05.float16_fate(cast_first)
    with pytest.raises(checks.CheckFailed, match="non-zero to begin with"):
        checks.nb05.float16_fate(
            lambda g, s=1.0: dict(
                fate_solution(g, s), flushed=float(np.mean((np.abs(g) * s).astype(np.float16) == 0))
            )
        )
    with pytest.raises(checks.CheckFailed, match="np.abs"):  # negatives compared without abs
        checks.nb05.float16_fate(lambda g, s=1.0: dict(fate_solution(g, s), subnormal=0.0))
    with pytest.raises(checks.CheckFailed, match="keys"):
        checks.nb05.float16_fate(lambda g, s=1.0: fate_solution(g, s)["flushed"])
    with pytest.raises(checks.CheckFailed, match="overflow fraction"):
        checks.nb05.float16_fate(lambda g, s=1.0: dict(fate_solution(g, s), overflow=0.5))


def test_nb05_update_loss_scale():
    checks.nb05.update_loss_scale(checks.nb05.reference_update)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb05.update_loss_scale(todo)

    def no_floor(scale, good, finite, growth):
        if not finite:
            return scale / 2, 0, False
        return (scale * 2, 0, True) if good + 1 >= growth else (scale, good + 1, True)

    with pytest.raises(checks.CheckFailed, match="below 1"):
        checks.nb05.update_loss_scale(no_floor)
    with pytest.raises(checks.CheckFailed, match="skipped"):
        checks.nb05.update_loss_scale(
            lambda s, g, f, n: checks.nb05.reference_update(s, g, f, n)[:2] + (True,)
        )


def test_nb05_mixed_model():
    def under(policy, build):
        before = mp.global_policy()
        mp.set_global_policy(policy)
        try:
            return build()
        finally:
            mp.set_global_policy(before)

    def solution(policy):
        def build():
            inp = keras.Input((28, 28, 1))
            h = keras.layers.Flatten()(inp)
            h = keras.layers.Dense(300, activation="relu")(h)
            h = keras.layers.Dense(100, activation="relu")(h)
            out = keras.layers.Activation("linear", dtype="float32")(keras.layers.Dense(10)(h))
            return keras.Model(inp, out)

        return under(policy, build)

    def leaks_policy(policy):
        model = solution(policy)
        mp.set_global_policy(policy)
        return model

    checks.nb05.mixed_model(solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb05.mixed_model(todo)
    with pytest.raises(checks.CheckFailed, match="float32"):
        checks.nb05.mixed_model(lambda p: under(p, models.lenet_300_100))  # float16 logits
    with pytest.raises(checks.CheckFailed, match="global policy"):
        checks.nb05.mixed_model(leaks_policy)
    with pytest.raises(checks.CheckFailed, match="compute in"):
        checks.nb05.mixed_model(lambda p: solution("float32"))
    with pytest.raises(checks.CheckFailed, match="weights should stay float32"):
        checks.nb05.mixed_model(lambda p: solution(p.split("_")[1]))


def test_check_reference_rule_is_keras_rule():
    import tensorflow as tf

    opt = mp.LossScaleOptimizer(keras.optimizers.SGD(0.0), initial_scale=4.0, dynamic_growth_steps=3)
    var = tf.Variable([1.0])
    scale, good = 4.0, 0
    for finite in [True, False, False, False, False, True, True, True, True, False, True]:
        opt.get_scaled_loss(tf.constant(1.0))
        grads = opt.get_unscaled_gradients([tf.constant([1.0 if finite else np.inf])])
        opt.apply_gradients(zip(grads, [var]))
        scale, good, _ = checks.nb05.reference_update(scale, good, finite, 3)
        assert float(opt.loss_scale) == scale and int(opt.dynamic_counter) == good


# --- parity over seeds ------------------------------------------------------------------------


def test_parity_table_arithmetic_on_constructed_numbers():
    """float32 losses 0.10, 0.12, 0.14: mean 0.12, sd 0.02 (ddof=1), limit 0.04; accuracies
    98.0, 98.2, 98.4 %: mean 98.2, sd 0.2 points, limit 0.4 points."""
    runs = [
        {"policy": "float32", "test_loss": 0.10, "accuracy": 0.980},
        {"policy": "float32", "test_loss": 0.12, "accuracy": 0.982},
        {"policy": "float32", "test_loss": 0.14, "accuracy": 0.984},
        # inside on both: loss mean 0.15 (+0.03), accuracy mean 98.0 (-0.2)
        {"policy": "mixed_float16", "test_loss": 0.14, "accuracy": 0.979},
        {"policy": "mixed_float16", "test_loss": 0.16, "accuracy": 0.981},
        # loss inside (+0.039) but accuracy outside (-0.5 points)
        {"policy": "mixed_bfloat16", "test_loss": 0.159, "accuracy": 0.977},
        {"policy": "mixed_bfloat16", "test_loss": 0.159, "accuracy": 0.977},
        # accuracy equal, loss just outside (+0.041)
        {"policy": "other", "test_loss": 0.161, "accuracy": 0.982},
        {"policy": "other", "test_loss": 0.161, "accuracy": 0.982},
    ]
    par = precision.parity_table(runs)
    ref = par.loc["float32"]
    assert ref["seeds"] == 3
    assert ref["test loss"] == pytest.approx(0.12) and ref["test loss sd"] == pytest.approx(0.02)
    assert ref["accuracy (%)"] == pytest.approx(98.2) and ref["accuracy sd (points)"] == pytest.approx(0.2)
    assert par["loss limit"].tolist() == pytest.approx([0.04] * 4)
    assert par["accuracy limit (points)"].tolist() == pytest.approx([0.4] * 4)
    f16 = par.loc["mixed_float16"]
    assert f16["test loss - float32"] == pytest.approx(0.03)
    assert f16["accuracy - float32 (points)"] == pytest.approx(-0.2)
    assert par["at parity"].to_dict() == {
        "float32": True,
        "mixed_float16": True,
        "mixed_bfloat16": False,
        "other": False,
    }
    assert bool(precision.parity_table(runs, k=3.0).loc["mixed_bfloat16", "at parity"])  # 0.5 <= 3 x 0.2
    with pytest.raises(ValueError, match="at least two"):
        precision.parity_table([r for r in runs if r["policy"] != "float32"][:2] + runs[:1])
    with pytest.raises(ValueError, match="missing"):
        precision.parity_table([{"policy": "float32", "test_loss": 0.1}])


def test_targets_row_reads_the_seed_parity_rows(tmp_root):
    """notebook 08's mixed-precision target: the parity test on the logged per-seed results."""
    from effcourse import report, results

    seeds = {
        "float32": ([0.10, 0.12, 0.14], [0.980, 0.982, 0.984]),
        "mixed_float16": ([0.14, 0.16], [0.979, 0.981]),  # within 2 sd on both
        "mixed_bfloat16": ([0.159, 0.159], [0.977, 0.977]),  # accuracy 0.5 points off, limit 0.4
    }
    for policy, (loss, acc) in seeds.items():
        results.record(
            "05_mixed_precision",
            "mixed precision",
            "cnn",
            policy,
            setting=policy,
            accuracy=0.98,
            test_loss=0.1,
            profile="quick",
        )  # the CNN timing rows: one seed, ignored by the test
        results.record(
            "05_mixed_precision",
            "mixed precision",
            "lenet_300_100",
            f"{policy} seeds",
            setting=policy,
            accuracy=float(np.mean(acc)),
            test_loss=float(np.mean(loss)),
            seed_test_loss=loss,
            seed_accuracy=acc,
            profile="quick",
        )
    row = (
        report.targets(results.load("quick"))
        .set_index("target")
        .filter(like="mixed precision", axis=0)
        .iloc[0]
    )
    assert row["reached"] == "no"
    assert "float32 loss 0.1200 (sd 0.0200), accuracy 98.20% (sd 0.20)" in row["measured here"]
    assert (
        "mixed_float16: loss +0.0300 (limit 0.0400), accuracy -0.20 points (limit 0.40);"
        in row["measured here"]
    )
    assert (
        "mixed_bfloat16: loss +0.0390 (limit 0.0400), accuracy -0.50 points (limit 0.40), outside"
        in row["measured here"]
    )
    results.record(
        "05_mixed_precision",
        "mixed precision",
        "lenet_300_100",
        "mixed_bfloat16 seeds",
        setting="mixed_bfloat16",
        accuracy=0.981,
        test_loss=0.13,
        seed_test_loss=[0.12, 0.14],
        seed_accuracy=[0.981, 0.981],
        profile="quick",
    )  # a re-run replaces the row
    row = (
        report.targets(results.load("quick"))
        .set_index("target")
        .filter(like="mixed precision", axis=0)
        .iloc[0]
    )
    assert row["reached"] == "yes", row["measured here"]
