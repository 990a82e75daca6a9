"""Self-checks for the exercises of notebook 03 (quantization)."""

from __future__ import annotations

import numpy as np

from . import call, close, fail, one_pass_line_each, passed


def quantize_dequantize(quantize, dequantize) -> None:
    """Exercise 03.1: affine quantize (to int8, saturating) and dequantize, per tensor and per channel."""
    rng = np.random.default_rng(3)
    x = rng.normal(scale=2.0, size=200)
    x[:2] = 40.0, -40.0  # outside the range: must saturate, not wrap around
    scale, zero = 0.05, -7
    q = np.asarray(call(quantize, x, scale, zero, -128, 127, name="quantize"))
    if q.shape != x.shape or q.dtype != np.int8:
        fail(
            f"quantize should return int8 values in the shape of x {x.shape} (clip, then "
            f".astype(np.int8)); got {q.dtype} of shape {q.shape}."
        )
    if q[0] != 127 or q[1] != -128:
        fail(
            "values outside the range must saturate at q_min / q_max: clip before casting "
            "(a bare astype(np.int8) wraps 40 / 0.05 = 800 around to another number)."
        )
    for wrong, hint in [
        (
            np.round(x / scale) - zero,
            "the zero point is added after rounding: q = round(x / scale) + zero_point.",
        ),
        (np.floor(x / scale) + zero, "round to the nearest integer (np.round), do not truncate or floor."),
    ]:
        if np.array_equal(q, np.clip(wrong, -128, 127)):
            fail(hint)
    want = np.clip(np.round(x / scale) + zero, -128, 127)
    close(q, want, "int8 values", atol=0, hint="q = clip(round(x / scale) + zero_point, q_min, q_max).")
    narrow = np.asarray(call(quantize, np.array([-40.0, 40.0]), 0.1, 0, -127, 127, name="quantize"))
    if narrow.tolist() != [-127, 127]:
        fail(f"with q_min=-127 the result must stay in [-127, 127] (weights' narrow range); got {narrow}.")
    kernel = rng.normal(size=(30, 4)) * np.array([0.01, 0.1, 1.0, 3.0])  # Keras layout: channels last
    scales = np.abs(kernel).max(axis=0) / 127
    qk = np.asarray(call(quantize, kernel, scales, 0, -127, 127, name="quantize"))
    per_channel = "one scale per output channel: x / scale must broadcast scale over the last axis."
    close(qk, np.round(kernel / scales), "per-channel int8 kernel", atol=0, hint=per_channel)

    back = np.asarray(call(dequantize, q, scale, zero, name="dequantize"), dtype=float)
    expected = scale * (q.astype(np.float64) - zero)
    if back.shape != q.shape:
        fail(f"dequantize must keep the shape of q {q.shape}; got {back.shape}.")
    if np.allclose(back, scale * q):
        fail("subtract the zero point before scaling: x = scale * (q - zero_point).")
    if np.allclose(back, scale * (q - np.int8(zero))) and not np.allclose(back, expected):
        fail(
            "q - zero_point overflowed in int8 (127 - (-7) wraps around): convert q to float "
            "(q.astype(np.float64)) before subtracting."
        )
    close(back, expected, "dequantized values", atol=1e-9, hint="x = scale * (q - zero_point), in float.")
    worst = float(np.max(np.abs(back - x)[np.abs(x) < 5]))
    if worst > scale / 2 + 1e-9:
        fail(f"inside the range the round trip must stay within half a step ({scale / 2}); got {worst:.3g}.")
    back_k = np.asarray(call(dequantize, qk, scales, 0, name="dequantize"), dtype=float)
    close(
        back_k, scales * qk, "per-channel dequantized kernel", atol=1e-9, hint="x = scale * (q - zero_point)."
    )
    return passed(
        "q = clip(round(x / s) + z, q_min, q_max) as int8, and back s (q - z): within half a step, "
        "saturating outside, per channel by broadcasting."
    )


def representative_dataset(fn) -> None:
    """Exercise 03.2: the representative dataset generator the TFLite converter calibrates with."""
    rng = np.random.default_rng(5)
    images = rng.random((6, 5, 5, 1), dtype=np.float32)
    produced = call(lambda: list(fn(images)), name="representative_dataset")
    if len(produced) == 1 and len(images) > 1:
        fail("yield one image at a time (a batch of one), not the whole array at once.")
    if len(produced) != len(images):
        fail(f"yield once per image: {len(images)} images gave {len(produced)} items.")
    for i, item in enumerate(produced):
        if isinstance(item, np.ndarray):
            fail(
                "each item is a list with one array per model input: yield [image_batch], not the bare array."
            )
        if not isinstance(item, (list, tuple)) or len(item) != 1:
            fail(
                f"each item is a list holding one array (the model has one input); item {i} is {item!r:.60}."
            )
        arr = np.asarray(item[0])
        if arr.shape == images.shape[1:]:
            fail("keep a batch dimension of 1: images[i:i + 1] (or image[None]) has shape (1, 28, 28, 1).")
        if arr.shape != (1, *images.shape[1:]):
            fail(f"each array should have shape {(1, *images.shape[1:])}; item {i} has {arr.shape}.")
        if arr.dtype != np.float32:
            fail(f"the model's input is float32; item {i} is {arr.dtype}.")
        if not np.array_equal(arr[0], images[i]):
            fail(
                "yield the images themselves, in their order, unchanged (the converter measures their range)."
            )
    return passed(
        "one [float32 batch of one] per image, in order: what TFLiteConverter.representative_dataset calls."
    )


def int8_ratio_prediction(predicted, float_blob: bytes, int8_blob: bytes) -> None:
    """Exercise 03.3: how many times smaller a model's gzip int8 file is than its float32 one, predicted."""
    from .. import measure
    from .nb00 import prediction_range, score_range

    low, high = prediction_range(
        predicted, "the float32 / int8 size ratio (gzip)", 1.2, name="predicted_ratio"
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
