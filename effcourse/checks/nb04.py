"""Self-checks for the exercises of notebook 04 (clustering, distillation, Deep Compression)."""

from __future__ import annotations

import numpy as np

from . import call, close, fail, one_pass_line_each, passed


def clustering_rate(fn) -> None:
    """Exercise 04.1: r = n b / (n log2 k + k b) (Han, Mao, Dally 2016, eq. 1)."""
    cases = [(235200, 16, 32), (30000, 4, 32), (1000, 64, 32), (500, 256, 8)]
    for n, k, b in cases:
        expected = n * b / (n * np.log2(k) + k * b)
        got = call(fn, n, k, b, name="clustering_rate")
        try:
            got = float(got)
        except (TypeError, ValueError):
            fail(f"clustering_rate should return a number, got {type(got).__name__}.")
        if np.isclose(got, b / np.log2(k)):
            fail(
                f"for n={n}, k={k}, b={b} you get {got:.3f}: the codebook is missing. The k shared "
                "values are stored too, k * b bits, in the denominator."
            )
        if np.isclose(got, n * b / (n * k + k * b)):
            fail("each weight's index takes log2(k) bits, not k bits (16 clusters -> 4-bit indices).")
        if not np.isclose(got, expected, rtol=1e-6):
            fail(
                f"for n={n}, k={k}, b={b} expected r = {expected:.4f}, got {got:.4f}. The numerator is "
                "the original n * b bits; the denominator n * log2(k) + k * b."
            )
    return passed(
        "r = n b / (n log2 k + k b); for large n the codebook vanishes and r -> b / log2 k "
        "(8x for 16 clusters of 32-bit weights, 16x for 4 clusters)."
    )


def _reference(labels, z, v, T, alpha):
    def log_softmax(a):
        a = a - a.max(axis=1, keepdims=True)
        return a - np.log(np.exp(a).sum(axis=1, keepdims=True))

    hard = -log_softmax(z)[np.arange(len(labels)), labels]
    log_p, log_q = log_softmax(v / T), log_softmax(z / T)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=1)
    return hard, kl


def distillation_loss(fn) -> None:
    """Exercise 04.2: (1 - alpha) CE + alpha T^2 KL(softmax(v/T) || softmax(z/T)), batch mean."""
    rng = np.random.default_rng(4)
    labels = np.array([0, 3, 1, 2])
    z = rng.normal(0, 2, (4, 5))
    v = rng.normal(0, 3, (4, 5))
    for T, alpha in [(4.0, 0.7), (1.0, 0.5), (10.0, 0.9)]:
        hard, kl = _reference(labels, z, v, T, alpha)
        expected = float(np.mean((1 - alpha) * hard + alpha * T**2 * kl))
        got = float(np.asarray(call(fn, labels, z.copy(), v.copy(), T, alpha, name="kd_loss")))
        if T != 1.0 and np.isclose(got, np.mean((1 - alpha) * hard + alpha * kl)):
            fail(
                "the soft term needs the factor T^2: its gradients shrink as 1/T^2, and T^2 "
                "restores their size (Hinton et al., section 2)."
            )
        if alpha != 0.5 and np.isclose(got, np.mean(alpha * hard + (1 - alpha) * T**2 * kl)):
            fail(
                "alpha weighs the soft-target (KL) term and 1 - alpha the label cross-entropy; "
                "you swapped them."
            )
        if np.isclose(got, np.sum((1 - alpha) * hard + alpha * T**2 * kl)):
            fail("average over the batch, do not sum.")
        close(
            got,
            expected,
            f"distillation loss at T = {T:g}, alpha = {alpha:g}",
            atol=1e-5,
            hint="Soft targets are softmax(v / T), the student's softened outputs softmax(z / T); "
            "KL(p || q) = sum p (log p - log q).",
        )
    big = np.array([[1000.0, 0.0, -1000.0]])
    got = float(np.asarray(call(fn, np.array([0]), big, big, 2.0, 0.5, name="kd_loss")))
    if not np.isfinite(got):
        fail(
            "the loss is not finite for logits like 1000: subtract the row maximum before exp "
            "(log-sum-exp), as in notebook 01."
        )
    return passed("the distillation loss matches Hinton et al.'s formula, T^2 factor included.")


def compression_ratio(fn, tflite_bytes: bytes, baseline_params: int) -> None:
    """Exercise 04.3: dense float32 bytes of the baseline / gzip bytes of the .tflite file."""
    from .. import measure

    gz = measure.compressed_size(tflite_bytes)
    expected = 4 * baseline_params / gz
    got = call(fn, baseline_params, tflite_bytes, name="course_ratio")
    got = float(got)
    if np.isclose(got, 4 * baseline_params / len(tflite_bytes)):
        fail(
            "you divided by the raw file size; the course's size is the file after gzip "
            "(measure.compressed_size)."
        )
    if np.isclose(got, baseline_params / gz):
        fail("the numerator is bytes, not parameters: a float32 parameter takes 4 bytes.")
    close(
        got,
        expected,
        "compression ratio",
        atol=1e-6 * expected,
        hint="4 * baseline_params / measure.compressed_size(tflite_bytes).",
    )
    return passed(f"ratio {got:.1f}x = {4 * baseline_params:,} dense float32 bytes / {gz:,} gzip bytes.")


def kernel_stats(fn, tflite_bytes: bytes) -> None:
    """Exercise 04.4: share of zeros and max distinct codes per output channel of stored kernels."""
    from .. import convert

    toy = np.array([[0, 1, 2, 0], [3, 4, 5, 0]], dtype=np.int8)  # 3 and 4 distinct per row, 6 in all
    got = call(fn, toy, name="kernel_stats")
    if got is None or len(got) != 2:
        fail("return a pair: (share of zeros, largest number of distinct values in one output channel).")
    zeros, per_channel = got
    if int(per_channel) == 6:
        fail(
            "count distinct values per output channel (per row of kernel.reshape(kernel.shape[0], -1)) "
            "and take the largest; you counted over the whole kernel."
        )
    if int(per_channel) != 4:
        fail(
            f"on [[0, 1, 2, 0], [3, 4, 5, 0]] the rows hold 3 and 4 distinct values: expected 4, got {per_channel}."
        )
    close(zeros, 3 / 8, "share of zeros of the toy kernel")
    checked = 0
    for t in convert.constant_tensors(tflite_bytes):
        if len(t["shape"]) not in (2, 4) or t["values"] is None:
            continue
        values = t["values"]
        rows = values.reshape(values.shape[0], -1)
        want = (float(np.mean(values == 0)), int(max(np.unique(r).size for r in rows)))
        got = call(fn, values, name="kernel_stats")
        if int(got[1]) != want[1] or not np.isclose(float(got[0]), want[0]):
            fail(f"for the stored kernel {t['name'].split(';')[0]} expected {want}, got {tuple(got)}.")
        checked += 1
    return passed(f"zeros and distinct codes per channel agree with the file on {checked} kernels.")


def clustered_size_ratio(predicted, sizes: dict) -> None:
    """Exercise 04.5: predicted range for the gzip bytes of the k=16 float32 file over the k=4 one, within 1.5x."""
    from .nb00 import prediction_range, score_range

    what = "gzip size ratio of the k=16 file to the k=4 file"
    low, high = prediction_range(predicted, what, 1.5, name="predicted_ratio")
    if 4 not in sizes or 16 not in sizes:
        fail("pass the sweep's float32 gzip bytes by cluster count; they must include k=4 and k=16.")
    measured = float(sizes[16]) / float(sizes[4])
    if any(np.isclose(end, measured, rtol=1e-6, atol=0) for end in (low, high)):
        fail(
            f"an end of your range is the measured {what} itself: that was computed from the sweep's table, "
            "not predicted. Reason from bits per weight and how evenly the weights use the shared values."
        )
    if low <= 1 / measured <= high and not low <= measured <= high:
        fail(
            "your range holds the ratio the other way round (the k=4 file over the k=16 one): more clusters "
            "means more bits per index, so the k=16 file is the larger one and the ratio is above 1."
        )
    score_range(low, high, measured, what)
    return passed(
        f"measured ratio {measured:.2f} ({sizes[16]:,.0f} / {sizes[4]:,.0f} gzip bytes), inside your range "
        f"[{low:.2f}, {high:.2f}]: log2(16) / log2(4) = 2 is the formula's ratio when every shared value is used "
        "equally often; a coder needs only the entropy of how the weights spread over the values, which is far "
        "below 2 bits per weight when most weights crowd onto one value, and each file's fixed parts shrink the ratio."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
