"""Self-checks for the exercises of notebook 04 (clustering, distillation, Deep Compression)."""

from __future__ import annotations

import numpy as np

from . import call, close, fail, one_pass_line_each, passed


def nearest_centroid(fn) -> None:
    """Exercise 04.1: the assignment step of k-means, the index of each weight's nearest centroid."""
    rng = np.random.default_rng(4)
    centroids = np.array([0.3, -0.5, 0.05, 1.2, -0.1])  # not sorted, on purpose
    weights = rng.normal(0, 0.5, (6, 7)).astype(np.float32)
    expected = np.abs(weights[..., None] - centroids).argmin(axis=-1)
    got = call(fn, weights.copy(), centroids.copy(), name="nearest_centroid")
    got = np.asarray(got)
    if got.shape != weights.shape:
        fail(
            f"return one index per weight, in the weights' shape {weights.shape}; got shape {got.shape}. "
            "Compare every weight with every centroid (broadcast a new last axis) and pick along that axis."
        )
    if np.allclose(got, centroids[expected]):
        fail("return the index of the nearest centroid, not its value (centroids[index] gives the value).")
    if not np.issubdtype(got.dtype, np.integer):
        fail(f"the indices should be integers, got {got.dtype}.")
    if np.array_equal(got, np.abs(weights[..., None] - np.sort(centroids)).argmin(axis=-1)):
        fail("index into the centroids as given, not sorted: the i-th centroid is centroids[i].")
    wrong = int(np.sum(got != expected))
    if wrong:
        fail(
            f"{wrong} of {weights.size} weights got another centroid than the nearest one (smallest "
            "absolute difference |w - c|)."
        )
    return passed("every weight goes to its nearest centroid: the assignment step of k-means.")


def distillation_loss(fn) -> None:
    """Exercise 04.2: (1 - alpha) CE + alpha T^2 KL(softmax(v/T) || softmax(z/T)), batch mean, in TensorFlow."""
    import tensorflow as tf

    from .. import distill

    rng = np.random.default_rng(4)
    labels = np.array([0, 3, 1, 2])
    z = rng.normal(0, 2, (4, 5)).astype(np.float32)
    v = rng.normal(0, 3, (4, 5)).astype(np.float32)
    packed = tf.constant(labels.astype(np.float32))  # Keras hands the labels over as floats
    hard = float(distill.distillation_loss(labels, z, v, 1.0, 0.0))  # the mean label cross-entropy
    for T, alpha in [(4.0, 0.7), (1.0, 0.5), (10.0, 0.9)]:
        soft = float(distill.distillation_loss(labels, z, v, T, 1.0))
        expected = (1 - alpha) * hard + alpha * soft
        got = float(np.asarray(call(fn, packed, tf.constant(z), tf.constant(v), T, alpha, name="kd_loss")))
        if T != 1.0 and np.isclose(got, (1 - alpha) * hard + alpha * soft / T**2):
            fail(
                "the soft term needs the factor T^2: its gradients shrink as 1/T^2, and T^2 "
                "restores their size (Hinton et al., section 2)."
            )
        if alpha != 0.5 and np.isclose(got, alpha * hard + (1 - alpha) * soft):
            fail(
                "alpha weighs the soft-target (KL) term and 1 - alpha the label cross-entropy; you swapped them."
            )
        if np.isclose(got, len(labels) * expected):
            fail("average over the batch, do not sum.")
        close(
            got,
            expected,
            f"distillation loss at T = {T:g}, alpha = {alpha:g}",
            atol=1e-5,
            hint="Soft targets are softmax(v / T), the student's softened outputs softmax(z / T); "
            "KL(p || q) = sum p (log p - log q).",
        )
    big = tf.constant([[1000.0, 0.0, -1000.0]])
    got = float(np.asarray(call(fn, tf.constant([0.0]), big, big, 2.0, 0.5, name="kd_loss")))
    if not np.isfinite(got):
        fail(
            "the loss is not finite for logits like 1000: use tf.nn.log_softmax (it subtracts the row "
            "maximum) rather than log(softmax)."
        )
    student = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = call(
            fn, tf.constant(labels.astype(np.float32)), student, tf.constant(v), 4.0, 0.7, name="kd_loss"
        )
    if not isinstance(loss, tf.Tensor) or tape.gradient(loss, student) is None:
        fail(
            "Keras cannot differentiate your loss: write it with TensorFlow operations (tf.nn.log_softmax, "
            "tf.reduce_sum, tf.reduce_mean), not NumPy, and return a tensor."
        )
    return passed(
        "the distillation loss matches Hinton et al.'s formula, T^2 factor included, and has gradients."
    )


def kernel_stats(fn, tflite_bytes: bytes) -> None:
    """Exercise 04.3: share of zeros and max distinct codes per output channel of stored kernels."""
    from .. import cluster, convert

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
    stored = {t["name"].split(";")[0]: t["values"] for t in convert.constant_tensors(tflite_bytes)}
    table = cluster.tflite_kernels(tflite_bytes)
    for name, zeros, per_channel in zip(table["tensor"], table["zeros"], table["unique per channel (max)"]):
        got = call(fn, stored[name], name="kernel_stats")
        if int(got[1]) != per_channel or not np.isclose(float(got[0]), zeros):
            fail(f"for the stored kernel {name} expected {(zeros, per_channel)}, got {tuple(got)}.")
    checked = len(table)
    return passed(f"zeros and distinct codes per channel agree with the file on {checked} kernels.")


def clustered_size_ratio(predicted, sizes: dict) -> None:
    """Exercise 04.4: predicted range for the gzip bytes of the k=16 float32 file over the k=4 one, within 1.5x."""
    from .nb00 import prediction_range, score_range

    what = "gzip size ratio of the k=16 file to the k=4 file"
    low, high = prediction_range(predicted, what, 1.5, name="predicted_ratio")
    if 4 not in sizes or 16 not in sizes:
        fail("pass the sweep's float32 gzip bytes by cluster count; they must include k=4 and k=16.")
    measured = float(sizes[16]) / float(sizes[4])
    if np.isclose([low, high], measured, rtol=1e-6, atol=0).any():
        score_range(low, high, measured, what)  # copied from the table: says so
    if low <= 1 / measured <= high and not low <= measured <= high:
        fail(
            "your range holds the ratio the other way round (the k=4 file over the k=16 one): more clusters "
            "means more bits per index, so the k=16 file is the larger one and the ratio is above 1."
        )
    naive = np.log2(16) / np.log2(4)  # index bits if every shared value were used equally often
    if low <= naive <= high and not 0.9 * naive <= measured <= 1.1 * naive:
        fail(
            "your range holds 2 = log2(16) / log2(4), the ratio of the index widths, which holds only if every "
            "shared value is used equally often. Count how the clustered kernels in clustered_models use their "
            "values (np.unique(..., return_counts=True)): a coder needs only the entropy of those frequencies."
        )
    score_range(low, high, measured, what)
    return passed(
        f"measured ratio {measured:.2f} ({sizes[16]:,.0f} / {sizes[4]:,.0f} gzip bytes), inside your range "
        f"[{low:.2f}, {high:.2f}]: log2(16) / log2(4) = 2 is the formula's ratio when every shared value is used "
        "equally often; a coder needs only the entropy of how the weights spread over the values, which is far "
        "below 2 bits per weight when most weights crowd onto one value, and each file's fixed parts shrink the ratio."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
