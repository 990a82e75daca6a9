"""Self-checks for the exercises of notebook 05 (mixed precision)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, fail, passed

# (exponent bits, mantissa bits) -> ml_dtypes / NumPy type name
_FORMATS = {(5, 10): "float16", (8, 7): "bfloat16", (8, 23): "float32", (5, 2): "float8_e5m2"}
_KEYS = ("eps", "largest", "smallest_normal", "smallest_subnormal")


def _finfo(name):
    import ml_dtypes

    return ml_dtypes.finfo(getattr(ml_dtypes, name) if hasattr(ml_dtypes, name) else np.dtype(name))


def format_limits(fn) -> None:
    """Exercise 05.2: epsilon and range of an IEEE-style float from its exponent and mantissa bits."""
    for (e, m), name in _FORMATS.items():
        got = call(fn, e, m, name="format_limits")
        if not isinstance(got, dict) or any(k not in got for k in _KEYS):
            fail(f"return a dict with the keys {list(_KEYS)}; got {got!r}.")
        info = _finfo(name)
        want = {
            "eps": float(info.eps),
            "largest": float(info.max),
            "smallest_normal": float(info.smallest_normal),
            "smallest_subnormal": float(info.smallest_subnormal),
        }
        bias = 2 ** (e - 1) - 1
        for key in _KEYS:
            value = float(got[key])
            if np.isclose(value, want[key], rtol=1e-12, atol=0):
                continue
            if key == "eps" and np.isclose(value, want[key] / 2):
                fail(
                    f"{name}: {value:g} is half of epsilon (the unit roundoff). Epsilon is the gap "
                    "between 1 and the next float: one unit in the last of the m mantissa bits, 2**-m."
                )
            if key == "largest" and np.isclose(value, 2.0 ** (bias + 1)):
                fail(
                    f"{name}: 2**(bias+1) is not a float of this format. The all-ones exponent is "
                    "reserved for inf/NaN, so the top exponent is the bias; the largest mantissa "
                    "is 1.11...1 = 2 - 2**-m: largest = (2 - 2**-m) * 2**bias."
                )
            fail(
                f"{name} (exponent {e} bits, mantissa {m} bits): {key} should be {want[key]:.6g}, "
                f"got {value:.6g}. With bias = 2**(e-1) - 1 = {bias}: eps = 2**-m, largest = "
                "(2 - 2**-m) * 2**bias, smallest normal = 2**(1 - bias), smallest subnormal = "
                "2**(1 - bias - m)."
            )
    return passed("epsilon and limits match finfo for float16, bfloat16, float32 and float8_e5m2.")


def flush_fraction(fn) -> None:
    """Exercise 05.3: fraction of non-zero gradients that become zero in float16 after scaling."""
    from ..precision import underflow_stats

    rng = np.random.default_rng(5)
    grads = (10.0 ** rng.uniform(-12, -2, size=2000)).astype(np.float32)
    grads[::7] = 0.0  # exact zeros (ReLU): zero in any format, not an underflow
    grads *= np.where(rng.random(grads.size) < 0.5, -1, 1).astype(np.float32)
    for scale in (1.0, 2.0**10, 2.0**15):
        want = underflow_stats(grads, "float16", scale)["flushed"]
        got = call(fn, grads.copy(), scale, name="flush_fraction")
        try:
            got = float(got)
        except (TypeError, ValueError):
            fail(f"return one number (a fraction between 0 and 1); got {type(got).__name__}.")
        if abs(got - want) <= 1e-9:
            continue
        nonzero = grads != 0
        all_zero = float(np.mean((grads * scale).astype(np.float16) == 0))
        if abs(got - all_zero) < 1e-9:
            fail(
                "count only the values that were non-zero to begin with: exact zeros (from ReLU) "
                "are zero in every format and are not an underflow. Divide by the number of "
                "non-zero values."
            )
        unscaled = float(np.mean(grads[nonzero].astype(np.float16) == 0))
        if scale != 1.0 and abs(got - unscaled) < 1e-9:
            fail(
                f"with scale {scale:g} you got the unscaled fraction: multiply by the scale "
                "*before* storing in float16; that is what loss scaling does."
            )
        cast_first = float(np.mean((grads[nonzero].astype(np.float16) * scale) == 0))
        if scale != 1.0 and abs(got - cast_first) < 1e-9:
            fail(
                "you cast to float16 first and scaled after: the small values are already zero "
                "by then. Scale in float32, then cast."
            )
        fail(
            f"with scale {scale:g} expected a flushed fraction of {want:.4f}, got {got:.4f}. "
            "Take the non-zero values, multiply by the scale, cast with .astype(np.float16) and "
            "count those that became 0."
        )
    return passed("flushed fractions match for scales 1, 2**10 and 2**15.")


def reference_update(scale, good_steps, finite, growth_steps):
    """Keras' dynamic loss-scale rule (the reference the check compares with)."""
    if not finite:
        return max(scale / 2, 1.0), 0, False
    if good_steps + 1 >= growth_steps:
        return scale * 2, 0, True
    return scale, good_steps + 1, True


def update_loss_scale(fn) -> None:
    """Exercise 05.1: one update of the dynamic loss scale, as Keras' LossScaleOptimizer does it."""
    pattern = [True, True, False, True, True, True, True, False, False, True] + [False] * 16 + [True] * 4
    growth = 3
    scale, good = 8.0, 0
    for i, finite in enumerate(pattern):
        want = reference_update(scale, good, finite, growth)
        got = call(fn, scale, good, finite, growth, name="update_loss_scale")
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            fail("return a tuple (new_scale, new_good_steps, apply_step).")
        new_scale, new_good, apply = float(got[0]), int(got[1]), bool(got[2])
        where = (
            f"step {i} (scale {scale:g}, good steps {good}, gradients {'finite' if finite else 'inf/NaN'})"
        )
        if apply != want[2]:
            fail(
                f"{where}: apply_step should be {want[2]}. A step with inf/NaN gradients is "
                "skipped: applying it would write inf into the weights."
            )
        if not finite and new_scale == scale / 2 and want[0] != new_scale:
            fail(f"{where}: the scale never goes below 1 (Keras keeps max(scale / 2, 1)).")
        if (new_scale, new_good) != want[:2]:
            fail(
                f"{where}: expected (scale, good steps) = {want[:2]}, got {(new_scale, new_good)}. "
                "On overflow: halve the scale (not below 1) and reset the count to 0. On a finite "
                "step: count it; when the count reaches growth_steps, double the scale and reset "
                "the count to 0."
            )
        scale, good = want[0], want[1]
    return passed(
        "your update follows Keras' dynamic loss scaling over 30 steps (skip and halve, "
        "grow after growth_steps good steps, never below 1)."
    )


def mixed_model(fn) -> None:
    """Exercise 05.4: a model that computes in a mixed policy, outputs float32 logits, and leaves the global policy alone."""
    import tf_keras

    from ..models import check_model
    from ..precision import layer_dtypes

    mp = tf_keras.mixed_precision
    for policy, low in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
        before = mp.global_policy().name
        model = call(fn, policy, name="mixed_model")
        after = mp.global_policy().name
        if after != before:
            mp.set_global_policy(before)
            fail(
                f"after your function the global policy is {after!r} instead of {before!r}: every "
                "model built later in the notebook would be mixed too. Build inside "
                "`with precision.use_policy(policy):`, which restores it."
            )
        try:
            check_model(model, what="this exercise")
        except TypeError as err:
            fail(str(err))
        table = layer_dtypes(model)
        dense = table[table["type"] == "Dense"]
        if dense.empty:
            fail("the model has no Dense layer; build Flatten -> Dense(300) -> Dense(100) -> Dense(10).")
        if (dense["compute dtype"] != low).any():
            fail(
                f"under {policy!r} the Dense layers should compute in {low}, but they compute in "
                f"{sorted(set(dense['compute dtype']))}: create the layers while the policy is set "
                "(a layer reads the policy when it is created)."
            )
        if (dense["variable dtype"] != "float32").any():
            fail(
                "the weights should stay float32 under a mixed policy; did you use the pure "
                f"{low!r} policy instead of {policy!r}?"
            )
        out = model(np.zeros((2, 28, 28, 1), np.float32))
        if out.dtype.name != "float32":
            fail(
                f"the model outputs {out.dtype.name} logits; add a last layer that computes in "
                "float32, e.g. keras.layers.Activation('linear', dtype='float32')."
            )
        if tuple(out.shape) != (2, 10):
            fail(f"the model should output 10 logits per image, got shape {tuple(out.shape)}.")
    return passed(
        "hidden layers compute in float16 / bfloat16, weights and logits are float32, "
        "and the global policy is unchanged."
    )


_DIRECTIONS = ("faster", "slower")


def speed_direction(predicted, ratios, noise: tuple = (0.9, 1.1)) -> None:
    """Exercise 05.5: predicted direction ("faster"/"slower" than float32) of each mixed policy's training step.

    ``ratios`` maps each policy to the step-time ratio this run measured (policy / float32).
    A ratio inside ``noise`` is within timing noise of 1, and either answer is right there.
    """
    policies = ("mixed_float16", "mixed_bfloat16")
    if predicted is None or predicted is Ellipsis:
        fail(
            "prediction is not written yet: replace the placeholder with a dict "
            '{"mixed_float16": "faster" or "slower", "mixed_bfloat16": ...}, written from the hardware '
            "report before you look at the measured step times."
        )
    if not isinstance(predicted, dict):
        fail(
            f"prediction should be a dict mapping each mixed policy to 'faster' or 'slower'; got {predicted!r}."
        )
    low, high = noise
    for policy in policies:
        if policy not in predicted:
            fail(f"prediction has no entry for {policy!r}: predict a direction for both mixed policies.")
        word = predicted[policy]
        if word is None or word is Ellipsis:
            fail(f"prediction[{policy!r}] is not written yet: write 'faster' or 'slower'.")
        if not isinstance(word, str) or word.strip().lower() not in _DIRECTIONS:
            fail(f"prediction[{policy!r}] should be 'faster' or 'slower' (than float32); got {word!r}.")
    measured = {policy: float(ratios[policy]) for policy in policies}
    for policy in policies:
        r, word = measured[policy], predicted[policy].strip().lower()
        if low <= r <= high:
            continue  # within noise of float32: either direction is right
        if word != ("faster" if r < 1 else "slower"):
            dtype = policy.split("_")[1]
            fail(
                f"your direction for {policy} is not what this run measured. Read the hardware report at "
                f"the top (does this machine have native {dtype} units, and does TensorFlow reach them?) and "
                f"the per-operation table of section 5: a training step is the forward pass plus both "
                f"backward convolutions, so one slow {dtype} kernel can outweigh several fast ones."
            )

    def said(policy):
        r = measured[policy]
        where = (
            "within noise of float32, either answer counts"
            if low <= r <= high
            else ("faster" if r < 1 else "slower")
        )
        return f"{policy} {r:.2f}x float32 ({where})"

    return passed(f"measured {said('mixed_float16')}, {said('mixed_bfloat16')}: your predictions agree.")


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
