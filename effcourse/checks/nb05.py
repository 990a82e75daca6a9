"""Self-checks for the exercises of notebook 05 (mixed precision)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, fail, passed


def _fate(grads, scale):
    """What storing the non-zero |grads| * scale in float16 does (the check's own computation)."""
    g = np.abs(np.asarray(grads, dtype=np.float64)).ravel()
    with np.errstate(over="ignore"):
        stored = (g[g > 0] * scale).astype(np.float16).astype(np.float64)
    tiny = float(np.finfo(np.float16).smallest_normal)
    return {
        "flushed": float(np.mean(stored == 0)),
        "subnormal": float(np.mean((stored > 0) & (stored < tiny))),
        "overflow": float(np.mean(np.isinf(stored))),
    }


def float16_fate(fn) -> None:
    """Exercise 05.1: fractions of the non-zero gradients float16 flushes, keeps subnormal, overflows."""
    rng = np.random.default_rng(5)
    grads = (10.0 ** rng.uniform(-12, 2, size=3000)).astype(np.float32)
    grads[::7] = 0.0  # exact zeros (ReLU): zero in any format, not an underflow
    grads *= np.where(rng.random(grads.size) < 0.5, -1, 1).astype(np.float32)
    nonzero = grads[grads != 0].astype(np.float64)
    for scale in (1.0, 2.0**10, 2.0**15):
        want = _fate(grads, scale)
        got = call(fn, grads.copy(), scale, name="float16_fate")
        if not isinstance(got, dict) or set(want) - set(got):
            fail(f"return a dict with the keys {sorted(want)} (fractions between 0 and 1); got {got!r}.")
        for key in want:
            value = float(got[key])
            if abs(value - want[key]) <= 1e-9:
                continue
            with np.errstate(over="ignore"):
                cast_first = float(np.mean((nonzero.astype(np.float16) * scale) == 0))
                all_values = float(np.mean((np.abs(grads) * scale).astype(np.float16) == 0))
            if key == "flushed" and scale != 1 and abs(value - cast_first) < 1e-9:
                fail(
                    "you stored in float16 first and scaled after: the small values are already zero "
                    "by then. Multiply by the scale before the cast; that is what loss scaling does."
                )
            if key == "flushed" and abs(value - all_values) < 1e-9:
                fail(
                    "count only the values that were non-zero to begin with: exact zeros (from ReLU) "
                    "are zero in every format and are not an underflow."
                )
            if key == "subnormal" and value == 0 and want[key] > 0:
                fail(
                    "no value is subnormal in your answer: the gradients are negative as well as "
                    "positive, so compare magnitudes (np.abs), and a subnormal is non-zero but below "
                    "np.finfo(np.float16).smallest_normal."
                )
            fail(
                f"at scale {scale:g} the {key} fraction should be {want[key]:.4f}, got {value:.4f}. "
                "Take the non-zero values, multiply by the scale, store with .astype(np.float16), then "
                "count: exactly 0, non-zero but below finfo's smallest_normal, and inf."
            )
    return passed("flushed, subnormal and overflow fractions match at scales 1, 2**10 and 2**15.")


def reference_update(scale, good_steps, finite, growth_steps):
    """Keras' dynamic loss-scale rule (the reference the check compares with)."""
    if not finite:
        return max(scale / 2, 1.0), 0, False
    if good_steps + 1 >= growth_steps:
        return scale * 2, 0, True
    return scale, good_steps + 1, True


def update_loss_scale(fn) -> None:
    """Exercise 05.2: one update of the dynamic loss scale, as Keras' LossScaleOptimizer does it."""
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
    """Exercise 05.4: a mixed-policy model with float32 logits that leaves the global policy alone."""
    import tf_keras

    from ..models import check_model

    mp = tf_keras.mixed_precision
    for policy, low in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
        before = mp.global_policy().name
        model = call(fn, policy, name="mixed_model")
        after = mp.global_policy().name
        if after != before:
            mp.set_global_policy(before)
            fail(
                f"after your function the global policy is {after!r} instead of {before!r}: every "
                "model built later in the notebook would be mixed too. Set it back in a `finally:`."
            )
        try:
            check_model(model, what="this exercise")
        except TypeError as err:
            fail(str(err))
        dense = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.Dense)]
        if not dense:
            fail("the model has no Dense layer; build Flatten -> Dense(300) -> Dense(100) -> Dense(10).")
        computes = sorted({layer.compute_dtype for layer in dense})
        if computes != [low]:
            fail(
                f"under {policy!r} the Dense layers should compute in {low}, but they compute in "
                f"{computes}: create the layers while the policy is set (a layer reads the policy "
                "when it is created)."
            )
        if any(layer.variable_dtype != "float32" for layer in dense):
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


_POLICIES = ("mixed_float16", "mixed_bfloat16")


def _directions(predicted) -> dict:
    """The learner's {policy: "faster" | "slower"}, or a hint for a placeholder or a malformed answer."""
    if predicted is None or predicted is Ellipsis:
        fail(
            "prediction is not written yet: replace the placeholder with a dict "
            '{"mixed_float16": "faster" or "slower", "mixed_bfloat16": ...}, written from the hardware '
            "report before anything is timed."
        )
    if not isinstance(predicted, dict):
        fail(
            f"prediction should be a dict mapping each mixed policy to 'faster' or 'slower'; got {predicted!r}."
        )
    for policy in _POLICIES:
        if policy not in predicted:
            fail(f"prediction has no entry for {policy!r}: predict a direction for both mixed policies.")
        word = predicted[policy]
        if word is None or word is Ellipsis:
            fail(f"prediction[{policy!r}] is not written yet: write 'faster' or 'slower'.")
        if not isinstance(word, str) or word.strip().lower() not in ("faster", "slower"):
            fail(f"prediction[{policy!r}] should be 'faster' or 'slower' (than float32); got {word!r}.")
    return {policy: predicted[policy].strip().lower() for policy in _POLICIES}


def speed_prediction(predicted) -> None:
    """Exercise 05.3, before the measurement: the prediction is well formed, and recorded."""
    said = _directions(predicted)
    return passed(
        f"recorded: mixed_float16 {said['mixed_float16']}, mixed_bfloat16 {said['mixed_bfloat16']} than "
        "float32. The check after the training compares it with this run's step times."
    )


def speed_direction(predicted, ratios, noise: tuple = (0.8, 1.25)) -> None:
    """Exercise 05.3, after the measurement: the predicted directions against this run's step-time ratios.

    ``ratios`` maps each policy to the step-time ratio this run measured (policy / float32).
    A ratio inside ``noise`` is within the timing noise of a short run on a shared machine (a
    few timed rounds), and either answer is right there.
    """
    said, (low, high) = _directions(predicted), noise
    measured = {policy: float(ratios[policy]) for policy in _POLICIES}
    for policy, r in measured.items():
        if not low <= r <= high and said[policy] != ("faster" if r < 1 else "slower"):
            dtype = policy.split("_")[1]
            fail(
                f"your direction for {policy} is not what this run measured. Look again at the hardware "
                f"report at the top (native {dtype} units? oneDNN on?) and read "
                "section 5: it times a step's operations one by one, forward and both backward "
                f"convolutions, and one slow {dtype} kernel can outweigh several fast ones."
            )

    def verdict(policy):
        r = measured[policy]
        where = "within noise of float32, either answer counts" if low <= r <= high else said[policy]
        return f"{policy} {r:.2f}x float32 ({where})"

    return passed(f"measured {verdict('mixed_float16')}, {verdict('mixed_bfloat16')}: your prediction holds.")


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
