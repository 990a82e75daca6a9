"""effcourse.precision and the notebook 05 checks: policies that always restore, loss scaling
that recovers underflowing gradients, clear errors for bad input."""

import numpy as np
import pytest

import effcourse
from effcourse import checks, models, precision

keras = effcourse.keras
mp = keras.mixed_precision


def build(name, policy):
    """A fresh course model under ``policy`` (float32 logits)."""
    return precision.with_policy(models.build(name), policy)


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and must end under the float32 global policy."""
    mp.set_global_policy("float32")
    yield
    assert mp.global_policy().name == "float32", "a test left a mixed global policy behind"
    mp.set_global_policy("float32")


# --- policies ----------------------------------------------------------------------------------


def test_use_policy_restores_even_when_the_body_raises():
    with precision.use_policy("mixed_float16") as pol:
        assert pol.name == mp.global_policy().name == "mixed_float16"
    assert mp.global_policy().name == "float32"
    with pytest.raises(RuntimeError, match="boom"):
        with precision.use_policy("mixed_bfloat16"):
            assert mp.global_policy().name == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert mp.global_policy().name == "float32"
    mp.set_global_policy("mixed_bfloat16")  # restores whatever was there, not always float32
    try:
        with pytest.raises(KeyError):
            with precision.use_policy("mixed_float16"):
                raise KeyError("x")
        assert mp.global_policy().name == "mixed_bfloat16"
    finally:
        mp.set_global_policy("float32")


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="mixed_float16.*mixed_bfloat16"):
        precision.get_policy("mixed_float8")
    with pytest.raises(ValueError, match="Unknown dtype policy"):
        with precision.use_policy("fp16"):
            pass
    assert mp.global_policy().name == "float32"
    with pytest.raises(ValueError):
        build("cnn", "float64")


def test_with_policy_keeps_weights_and_float32_logits(tiny_model):
    mixed = precision.with_policy(tiny_model, "mixed_float16")
    table = precision.layer_dtypes(mixed)
    computing = table[table["layer"] != precision.OUTPUT_LAYER]
    assert set(computing["compute dtype"]) == {"float16"} and set(computing["output dtype"]) == {"float16"}
    assert table.iloc[-1]["output dtype"] == "float32"
    assert set(table.loc[table["variable dtype"] != "-", "variable dtype"]) == {"float32"}
    for a, b in zip(mixed.get_weights(), tiny_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(mixed(x).numpy(), tiny_model(x).numpy(), atol=0.05)
    back = precision.with_policy(mixed, "float32")
    assert precision.OUTPUT_LAYER not in [layer.name for layer in back.layers]
    assert {type(layer.dtype_policy).__name__ and layer.dtype_policy.name for layer in back.layers} == {
        "float32"
    }
    np.testing.assert_allclose(back(x).numpy(), tiny_model(x).numpy(), atol=1e-6)
    assert mp.global_policy().name == "float32"


def test_policy_set_after_model_creation_is_explained():
    model = models.cnn()  # built under float32
    with pytest.raises(ValueError, match="created under the policy 'float32'.*reads the global policy once"):
        precision.compile_mixed(model, "mixed_float16")
    mp.set_global_policy("mixed_float16")  # the classic mistake: set the policy after building
    try:
        with pytest.raises(ValueError, match="global policy is 'mixed_float16'"):
            precision.compile_mixed(model)
    finally:
        mp.set_global_policy("float32")
    with precision.use_policy("mixed_float16"):
        f16_logits = models.cnn()
    with pytest.raises(ValueError, match="float16 logits.*dtype='float32'"):
        precision.check_policy(f16_logits, "mixed_float16")


def test_compile_mixed_wraps_only_float16():
    f16 = precision.compile_mixed(build("lenet_300_100", "mixed_float16"), "mixed_float16")
    assert isinstance(f16.optimizer, mp.LossScaleOptimizer)
    assert float(f16.optimizer.loss_scale) == precision.DEFAULT_LOSS_SCALE
    bf16 = precision.compile_mixed(build("lenet_300_100", "mixed_bfloat16"), "mixed_bfloat16")
    assert not isinstance(bf16.optimizer, mp.LossScaleOptimizer)


# --- loss scaling ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("inf"), float("nan")])
def test_bad_loss_scale_is_a_clear_error(bad, tiny_model):
    with pytest.raises(ValueError, match="loss scale must be a finite number > 0"):
        precision.loss_scale_optimizer(keras.optimizers.SGD(0.1), initial_scale=bad)
    with pytest.raises(ValueError, match="> 0"):
        precision.underflow_stats([1e-3], scale=bad)


def test_loss_scale_type_and_growth_errors():
    with pytest.raises(TypeError, match="number"):
        precision.loss_scale_optimizer(initial_scale="big")
    with pytest.raises(ValueError, match="growth_steps"):
        precision.loss_scale_optimizer(growth_steps=0)


def _tiny_underflow_model():
    """A float16 layer whose weight gradient is about 5.5e-9: below half of float16's smallest subnormal."""
    with precision.use_policy("mixed_float16"):
        inp = keras.Input((2,))
        z = keras.layers.Dense(2, use_bias=False, name="dense")(inp)
        out = keras.layers.Activation("linear", dtype="float32", name=precision.OUTPUT_LAYER)(z)
        model = keras.Model(inp, out)
    a = 2.0**-13  # a normal float16 input; logits +-5, so p(wrong class) ~ 4.5e-5
    model.set_weights([np.array([[5 / a, -5 / a], [0, 0]], np.float32)])
    return model, np.array([[a, 0.0]], np.float32), np.array([0])


def kernel_gradient(model, x, y, loss_scale=1.0):
    """The kernel's gradient with the loss scaled in the tape and divided out after (as notebook 05 does)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x))
        scaled = tf.cast(loss, tf.float32) * loss_scale
    g = tape.gradient(scaled, model.trainable_variables)[0]
    return (tf.cast(g, tf.float32) / loss_scale).numpy()


def test_loss_scaling_recovers_gradients_that_underflow():
    model, x, y = _tiny_underflow_model()
    exact = kernel_gradient(precision.with_policy(model, "float32"), x, y)
    assert 1e-9 < abs(exact[0, 1]) < 2.0**-25  # would flush to zero in float16
    plain = kernel_gradient(model, x, y)
    assert np.count_nonzero(plain) == 0, "without scaling the float16 backward pass flushes them"
    scaled = kernel_gradient(model, x, y, loss_scale=2**15)
    np.testing.assert_allclose(scaled, exact, rtol=2e-3, atol=0)
    assert np.count_nonzero(scaled) == np.count_nonzero(exact) == 2
    # The same numbers in underflow_stats: flushed at scale 1, recovered at 2**15.
    assert precision.underflow_stats(exact, "float16")["flushed"] == 1.0
    assert precision.underflow_stats(exact, "float16", 2**15)["flushed"] == 0.0


def test_underflow_stats_and_suggested_scale():
    values = np.array([0.0, 1e-9, 1e-6, 1e-3, 1e5])
    stats = precision.underflow_stats(values, "float16")
    assert stats["nonzero"] == 4
    assert stats["flushed"] == 0.25 and stats["subnormal"] == 0.25 and stats["overflow"] == 0.25
    assert precision.underflow_stats(values, "bfloat16")["flushed"] == 0.0
    with pytest.raises(ValueError, match="format"):
        precision.underflow_stats(values, "int8")


def test_check_reference_rule_is_keras_rule():
    import tensorflow as tf

    opt = precision.loss_scale_optimizer(keras.optimizers.SGD(0.0), initial_scale=4.0, growth_steps=3)
    var = tf.Variable([1.0])
    scale, good = 4.0, 0
    for finite in [True, False, False, False, False, True, True, True, True, False, True]:
        opt.get_scaled_loss(tf.constant(1.0))
        grads = opt.get_unscaled_gradients([tf.constant([1.0 if finite else np.inf])])
        opt.apply_gradients(zip(grads, [var]))
        scale, good, _ = checks.nb05.reference_update(scale, good, finite, 3)
        assert float(opt.loss_scale) == scale and int(opt.dynamic_counter) == good


# --- measurement and training ------------------------------------------------------------------


def test_activation_memory_is_measured_from_tensors():
    x = np.zeros((32, 28, 28, 1), np.float32)
    f32 = precision.activation_memory(build("cnn", "float32"), x)
    f16 = precision.activation_memory(build("cnn", "mixed_float16"), x)
    assert f32.loc[0, "bytes"] == 32 * 26 * 26 * 32 * 4 and f32.loc[0, "dtype"] == "float32"
    inner = f16[f16["layer"] != precision.OUTPUT_LAYER]
    np.testing.assert_array_equal(inner["bytes"].to_numpy() * 2, f32["bytes"].to_numpy())
    assert set(inner["dtype"]) == {"float16"}


def test_train_side_by_side_same_batches_and_timings(mnist):
    effcourse.env.seed_everything(0)
    base = models.lenet_300_100()
    runs = {
        "a": precision.compile_mixed(precision.with_policy(base, "float32"), "float32"),
        "b": precision.compile_mixed(precision.with_policy(base, "float32"), "float32"),
    }
    seen = []
    out = precision.train_side_by_side(
        runs,
        mnist.x_train[:640],
        mnist.y_train[:640],
        steps=7,
        chunk=3,
        batch_size=64,
        on_chunk=lambda n, m, s: seen.append((n, s)),
    )
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
    runs = {n: precision.compile_mixed(precision.with_policy(base, "float32"), "float32") for n in "ab"}
    precision.train_side_by_side(
        runs, mnist.x_train[:256], mnist.y_train[:256], steps=4, chunk=2, batch_size=64, desc="two models"
    )
    err = capsys.readouterr().err
    assert "two models" in err and "8/8" in err  # 2 models x 4 steps


# --- hardware ----------------------------------------------------------------------------------

CPU_WITH_BF16 = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
CPU_PLAIN = "processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2 avx2 f16c\n"


def test_hardware_detection_reads_flags_and_never_assumes():
    s = precision.hardware_support(CPU_WITH_BF16, gpus=[])
    assert s["cpu"] == "Test CPU" and s["cpu_flags"]["avx512_bf16"] is True
    assert s["bfloat16_units"] is True and s["float16_units"] is False  # f16c is conversion only
    s = precision.hardware_support(CPU_PLAIN, gpus=[])
    assert s["bfloat16_units"] is False and s["float16_units"] is False
    s = precision.hardware_support(None, gpus=[])  # no /proc/cpuinfo: unknown, not "no"
    assert s["float16_units"] is None and set(s["cpu_flags"].values()) == {None}
    volta = [{"device": "/physical_device:GPU:0", "name": "V100", "compute_capability": (7, 0)}]
    s = precision.hardware_support(CPU_PLAIN, gpus=volta)
    assert s["float16_units"] is True and s["gpu_bfloat16"] is False
    pascal = [{"device": "/physical_device:GPU:0", "name": "P100", "compute_capability": (6, 0)}]
    assert precision.hardware_support(CPU_PLAIN, gpus=pascal)["float16_units"] is False
    ampere = [{"device": "/physical_device:GPU:0", "name": "A100", "compute_capability": (8, 0)}]
    assert precision.hardware_support(None, gpus=ampere)["bfloat16_units"] is True
    assert (
        "native bfloat16 arithmetic"
        in precision.hardware_table(precision.hardware_support(CPU_PLAIN, gpus=[])).index
    )


# --- notebook 05 checks: fail on the placeholder and on typical mistakes, pass on answers -------


def limits_solution(e, m):
    bias = 2 ** (e - 1) - 1
    return {
        "eps": 2.0**-m,
        "largest": (2 - 2.0**-m) * 2.0**bias,
        "smallest_normal": 2.0 ** (1 - bias),
        "smallest_subnormal": 2.0 ** (1 - bias - m),
    }


def test_nb05_format_limits():
    checks.nb05.format_limits(limits_solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb05.format_limits(todo)
    with pytest.raises(checks.CheckFailed, match="reserved for inf"):
        checks.nb05.format_limits(lambda e, m: dict(limits_solution(e, m), largest=2.0 ** (2 ** (e - 1))))
    with pytest.raises(checks.CheckFailed, match="unit roundoff"):
        checks.nb05.format_limits(lambda e, m: dict(limits_solution(e, m), eps=2.0 ** -(m + 1)))


def test_nb05_flush_fraction():
    def solution(grads, scale):
        nz = grads[grads != 0]
        return float(np.mean((nz * scale).astype(np.float16) == 0))

    checks.nb05.flush_fraction(solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb05.flush_fraction(todo)
    with pytest.raises(checks.CheckFailed, match="non-zero"):
        checks.nb05.flush_fraction(lambda g, s: float(np.mean((g * s).astype(np.float16) == 0)))
    with pytest.raises(checks.CheckFailed, match="before"):
        checks.nb05.flush_fraction(lambda g, s: float(np.mean(g[g != 0].astype(np.float16) == 0)))


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
    def solution(policy):
        with precision.use_policy(policy):
            inp = keras.Input((28, 28, 1))
            h = keras.layers.Flatten()(inp)
            h = keras.layers.Dense(300, activation="relu")(h)
            h = keras.layers.Dense(100, activation="relu")(h)
            out = keras.layers.Activation("linear", dtype="float32")(keras.layers.Dense(10)(h))
        return keras.Model(inp, out)

    def float16_logits(policy):
        with precision.use_policy(policy):
            return models.lenet_300_100()

    def leaks_policy(policy):
        mp.set_global_policy(policy)
        return build("lenet_300_100", policy)

    checks.nb05.mixed_model(solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb05.mixed_model(todo)
    with pytest.raises(checks.CheckFailed, match="float32"):
        checks.nb05.mixed_model(float16_logits)
    with pytest.raises(checks.CheckFailed, match="global policy"):
        checks.nb05.mixed_model(leaks_policy)
    with pytest.raises(checks.CheckFailed, match="compute in"):
        checks.nb05.mixed_model(lambda p: build("lenet_300_100", "float32"))


# --- bounded side-by-side training and op timing: the arithmetic, with a fake clock ------------


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


def test_plan_side_by_side_exact_steps_minimum_and_ceiling():
    times = {"float32": 0.06, "mixed_float16": 4.2, "mixed_bfloat16": 0.05, "float32, other seed": 0.09}
    # 4.4 s per step of all four together: a 240 s budget affords floor(240 / 4.4) = 54 steps.
    plan = precision.plan_side_by_side(times, train_steps=500, budget_s=240, chunk=25, min_steps=20)
    assert plan.steps == 54 and plan.chunk == 25 and plan.requested == 500
    assert plan.slowest == "mixed_float16" and plan.ratio("mixed_float16") == pytest.approx(70)
    assert plan.expected_s == pytest.approx(54 * 4.4)
    text = plan.explain()
    assert "70.0x float32's step time" in text and "54 steps instead of 500" in text
    # A small budget: never below the stated minimum, and the sentence says it is over budget.
    plan = precision.plan_side_by_side(times, train_steps=30, budget_s=10, chunk=10, min_steps=4)
    assert plan.steps == 4 and plan.chunk == 2  # at least two rounds: round 0 is the warm-up
    assert "stated minimum" in plan.explain()
    # A fast machine: never above train_steps, the chunk unchanged.
    fast = {"float32": 0.06, "mixed_float16": 0.03}
    plan = precision.plan_side_by_side(fast, train_steps=500, budget_s=240, chunk=25, min_steps=20)
    assert (plan.steps, plan.chunk) == (500, 25) and "the 500 steps the profile asks for" in plan.explain()
    assert "within the budget of 4.0 min" in plan.explain()
    # The minimum never lifts the steps above train_steps either.
    assert precision.plan_side_by_side(times, train_steps=3, budget_s=1, chunk=10, min_steps=20).steps == 3
    with pytest.raises(ValueError, match="budget_s"):
        precision.plan_side_by_side(times, 30, 0, 10)
    with pytest.raises(KeyError, match="reference"):
        precision.plan_side_by_side({"a": 1.0}, 30, 10, 10)


def test_train_side_by_side_times_chunks_on_the_clock_without_on_chunk(mnist):
    clock = FakeClock()
    base = models.lenet_300_100()
    runs = {
        "slow": _fake_step(
            precision.compile_mixed(precision.with_policy(base, "float32"), "float32"), clock, 0.4
        ),
        "fast": _fake_step(
            precision.compile_mixed(precision.with_policy(base, "float32"), "float32"), clock, 0.1
        ),
    }

    def on_chunk(name, model, step):
        clock.now += 100.0  # e.g. collecting gradients: must not count as training time

    out = precision.train_side_by_side(
        runs,
        mnist.x_train[:640],
        mnist.y_train[:640],
        steps=7,
        chunk=3,
        batch_size=64,
        on_chunk=on_chunk,
        clock=clock,
    )
    # Chunks of 3, 3 and 1 steps; the short last chunk is scaled to a full one.
    np.testing.assert_allclose(out.chunk_seconds["slow"], [1.2, 1.2, 1.2])
    np.testing.assert_allclose(out.chunk_seconds["fast"], [0.3, 0.3, 0.3])
    assert out.step_ms() == pytest.approx({"slow": 400.0, "fast": 100.0})
    assert out.ratios("fast") == pytest.approx({"slow": 4.0, "fast": 1.0})
    assert out.losses["slow"] == [0.5] * 7


def test_probe_step_times_interleaves_one_step_per_round(mnist):
    clock = FakeClock()
    base = models.lenet_300_100()
    runs = {
        "a": _fake_step(
            precision.compile_mixed(precision.with_policy(base, "float32"), "float32"), clock, 0.2
        ),
        "b": _fake_step(
            precision.compile_mixed(precision.with_policy(base, "float32"), "float32"), clock, 3.0
        ),
    }
    probe = precision.probe_step_times(
        runs, mnist.x_train, mnist.y_train, batch_size=32, rounds=2, clock=clock
    )
    assert probe["a"].median == pytest.approx(0.2) and probe["b"].median == pytest.approx(3.0)
    assert probe.orders == [["a", "b"], ["b", "a"]] and probe.warmup == 1
    assert clock.now == pytest.approx(3 * 3.2)  # one warm-up step and two timed steps each


def test_op_table_ratios_are_medians_of_same_round_ratios():
    from effcourse import timing

    clock = FakeClock()
    # float32 takes 1, 2, 3 s in rounds 0-2 (the machine slows down); float16 10x that, except 30x in round 1.
    cost = {("conv", "float32"): [1.0, 2.0, 3.0], ("conv", "float16"): [10.0, 60.0, 30.0]}
    calls = {k: 0 for k in cost}

    def task(key):
        def run():
            clock.now += cost[key][calls[key] // 2]  # two runs per round
            calls[key] += 1

        return run

    timed = timing.interleaved({k: task(k) for k in cost}, rounds=3, runs=2, warmup=0, clock=clock)
    table = precision.op_table(timed)
    assert table.loc[("conv", "float32"), "ms"] == pytest.approx(2000.0)
    assert table.loc[("conv", "float16"), "ms"] == pytest.approx(30000.0)
    assert table.loc[("conv", "float16"), "time / float32"] == pytest.approx(10.0)  # median of 10, 30, 10
    assert table.loc[("conv", "float32"), "time / float32"] == 1.0


def test_time_ops_runs_every_operation_in_every_dtype():
    table = precision.time_ops(("float32", "bfloat16"), batch_size=4, rounds=1, runs=1, desc=None)
    assert len(table) == 10 and set(table.index.get_level_values("dtype")) == {"float32", "bfloat16"}
    assert "conv2d backward, filter gradient" in table.index.get_level_values("operation")
    assert (table["ms"] > 0).all()


def test_underflow_table_rows_from_snapshots():
    snaps = {
        "step 0": {
            "loss": 2.3,
            "weights": np.array([0.0, 2.0**-30, 2.0**-10, 4.0]),
            "activations": np.array([2.0**-26, 2.0**-20]),
        }
    }
    table = precision.underflow_table(snaps)
    assert list(table.index) == [("step 0", "weights"), ("step 0", "activations")]
    w = table.loc[("step 0", "weights")]
    assert w["loss"] == 2.3 and w["median log2 |g|"] == -10
    assert w["below 2^-24"] == pytest.approx(1 / 3) and w["flush to 0 in float16"] == pytest.approx(1 / 3)
    assert w["flush at scale 2^15"] == 0.0 and w["overflow at scale 2^15"] == pytest.approx(
        1 / 3
    )  # 4 * 2^15 > 65504
    a = table.loc[("step 0", "activations")]
    assert a["subnormal in float16"] == pytest.approx(0.5) and a["flush to 0 in float16"] == pytest.approx(
        0.5
    )


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


def test_train_seeds_same_batches_per_seed_and_one_row_per_run(mnist):
    runs, sides = precision.train_seeds(
        models.lenet_300_100,
        ("float32", "mixed_bfloat16"),
        mnist,
        seeds=(0, 1),
        steps=4,
        chunk=2,
        batch_size=32,
    )
    assert runs[["seed", "policy"]].values.tolist() == [
        [0, "float32"],
        [0, "mixed_bfloat16"],
        [1, "float32"],
        [1, "mixed_bfloat16"],
    ]
    assert runs["accuracy"].between(0, 1).all() and (runs["test_loss"] > 0).all()
    for side in sides.values():
        assert {n: len(v) for n, v in side.losses.items()} == {"float32": 4, "mixed_bfloat16": 4}
        # same start, same first batch: the first losses agree to bfloat16's precision
        assert side.losses["float32"][0] == pytest.approx(side.losses["mixed_bfloat16"][0], rel=0.02)
    assert sides[0].losses["float32"][0] != sides[1].losses["float32"][0]  # another seed, another start


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
