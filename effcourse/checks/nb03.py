"""Self-checks for the exercises of notebook 03 (quantization)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, close, fail, passed


def affine_params(fn) -> None:
    """Exercise 03.1: int8 scale and zero point for a real range [x_min, x_max]."""
    from .. import quantize

    for x_min, x_max in [(0.0, 1.0), (-1.0, 3.0), (-0.2, 0.0), (0.5, 2.0)]:
        got = call(fn, x_min, x_max, name="int8_affine_params")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail("return a pair (scale, zero_point).")
        scale, zero = (float(np.asarray(v)) for v in got)
        exp_scale, exp_zero = quantize.affine_params(x_min, x_max)
        if x_min > 0 and abs(scale - (x_max - x_min) / 255) < 1e-9:
            fail(
                f"for the range [{x_min}, {x_max}] widen it to include 0 first (x_min = min(x_min, 0)): "
                "the real 0 must be exactly representable, for zero padding and ReLU."
            )
        if abs(scale - (x_max - min(x_min, 0)) / 256) < 1e-9:
            fail("int8 has 256 values but 255 steps between -128 and 127: divide the range by 255.")
        close(
            scale,
            exp_scale,
            f"scale for [{x_min}, {x_max}]",
            atol=1e-9,
            hint="scale = (x_max - x_min) / (q_max - q_min) with q_min = -128, q_max = 127.",
        )
        if zero != round(zero):
            fail("the zero point is an integer: round it.")
        close(
            zero,
            exp_zero,
            f"zero point for [{x_min}, {x_max}]",
            atol=0,
            hint="zero_point = round(q_min - x_min / scale): the integer that stands for the real 0.",
        )
    return passed(
        "scale = range / 255 and zero_point = round(-128 - x_min / scale), range widened to include 0."
    )


def per_channel_weights(fn) -> None:
    """Exercise 03.2: symmetric per-output-channel int8 quantization of a Keras kernel."""
    from .. import quantize

    rng = np.random.default_rng(3)
    kernel = (rng.normal(size=(20, 5)) * np.array([0.02, 0.3, 1.0, 4.0, 0.0])).astype(np.float32)
    got = call(fn, kernel, name="quantize_kernel")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail("return a pair (q, scales): the int8 kernel and one scale per output channel.")
    q, scales = np.asarray(got[0]), np.asarray(got[1], dtype=float)
    if scales.size == 1:
        fail(
            "you used one scale for the whole kernel; TFLite uses one per output channel "
            "(the last axis of a Keras kernel): max over all other axes."
        )
    if scales.shape != (kernel.shape[-1],):
        fail(
            f"expected {kernel.shape[-1]} scales, one per output channel (last axis); got shape {scales.shape}."
        )
    if q.dtype != np.int8:
        fail(f"q should be int8 (cast with .astype(np.int8) after clipping); got {q.dtype}.")
    nonzero = np.abs(kernel).max(axis=0) > 0
    if np.allclose(scales[nonzero], np.abs(kernel).max(axis=0)[nonzero] / 128):
        fail(
            "weights use the narrow range [-127, 127]: scale = max|w| / 127, so that -w is representable too."
        )
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        fail("a channel of all zeros needs a positive scale too (use 1.0): dividing by 0 gives NaN.")
    exp_scales, zeros = quantize.symmetric_params(kernel, axis=-1)
    close(
        scales[nonzero],
        exp_scales[nonzero],
        "per-channel scales",
        atol=1e-7,
        hint="scale_c = max over the channel of |w| / 127.",
    )
    expected = quantize.quantize(kernel, exp_scales, zeros, narrow_range=True, axis=-1)
    close(
        q,
        expected,
        "int8 kernel",
        atol=0,
        hint="q = clip(round(w / scale_c), -127, 127), scale broadcast over the last axis.",
    )
    return passed("per-channel symmetric int8: zero point 0, scale max|w_c| / 127, values in [-127, 127].")


def sqnr(fn) -> None:
    """Exercise 03.3: signal-to-quantization-noise ratio in dB."""
    from .. import quantize

    rng = np.random.default_rng(4)
    ref = rng.normal(size=(50, 8))
    approx = ref + rng.normal(scale=0.05, size=ref.shape)
    got = float(np.asarray(call(fn, ref, approx, name="sqnr_db")))
    expected = quantize.sqnr_db(ref, approx)
    if abs(got - 2 * expected) < 1e-3:
        fail("you used 20 log10 on a ratio of powers (sums of squares); power ratios take 10 log10.")
    if abs(got - expected / 10) < 1e-3 or abs(got - 10 ** (expected / 10)) < 1e-2 * 10 ** (expected / 10):
        fail("express the ratio in decibels: 10 * log10(signal power / noise power).")
    if abs(got + expected) < 1e-3:
        fail("signal over noise, not noise over signal: a good approximation has a large positive SQNR.")
    return close(
        got, expected, "SQNR", atol=1e-6, hint="SQNR = 10 log10( sum ref^2 / sum (ref - approx)^2 )."
    )


def quantize_input(fn) -> None:
    """Exercise 03.4: quantize float images for a model with int8 inputs (mode int8_io)."""
    rng = np.random.default_rng(5)
    x = rng.random((3, 4, 4, 1), dtype=np.float32)
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 1.6, -0.7  # out of range: must be clipped, not wrapped
    scale, zero = 1 / 255, -128
    got = np.asarray(call(fn, x, scale, zero, name="to_int8_input"))
    if got.dtype != np.int8:
        fail(f"the interpreter expects an int8 array; got {got.dtype}. Clip to [-128, 127] and cast.")
    expected = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    if got.shape != expected.shape:
        fail(f"keep the shape of the images {expected.shape}; got {got.shape}.")
    if got[0, 0, 0, 0] != 127 or got[0, 0, 1, 0] != -128:
        fail(
            "values outside the calibrated range must saturate at -128 / 127; clip before casting "
            "(a bare astype(np.int8) wraps 1.6 around to a negative number)."
        )
    if np.array_equal(
        got, np.clip(np.floor(x / scale + zero), -128, 127).astype(np.int8)
    ) and not np.array_equal(got, expected):
        fail("round to the nearest integer (np.round), do not truncate.")
    close(got, expected, "int8 input", atol=0, hint="q = clip(round(x / scale + zero_point), -128, 127).")
    return passed("float images quantized with the input tensor's scale and zero point, saturating.")


def int8_ratio_prediction(predicted, float_blob: bytes, int8_blob: bytes) -> None:
    """Exercise 03.5: how many times smaller a model's gzip int8 file is than its float32 one, predicted."""
    from .. import measure
    from .nb00 import prediction_range, score_range

    low, high = prediction_range(
        predicted, "the float32 / int8 size ratio (gzip)", 1.25, name="predicted_ratio"
    )
    ratio = measure.compressed_size(float_blob) / measure.compressed_size(int8_blob)
    if low <= 4.0 <= high and not low <= ratio <= high:
        fail(
            "your range is built around 4 (4 bytes per float32 weight, 1 per int8): the files are compared "
            "after gzip, which shrinks one of them more than the other, and both hold more than the weights."
        )
    score_range(low, high, ratio, "size ratio")
    return passed(f"measured ratio {ratio:.2f}, inside your range [{low:.2f}, {high:.2f}].")


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
