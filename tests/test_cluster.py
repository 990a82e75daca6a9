"""effcourse.cluster: k-means weight sharing, sparsity kept through clustering, collaborative QAT
and conversion, and the checks of notebook 04's exercises."""

import numpy as np
import pytest

import effcourse
from effcourse import cluster, convert, data


def tiny_data(n=96, seed=0):
    """An effcourse MNIST of random 8x8 images with labels a tiny model can learn a little."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.int32) + (
        x[:, :, :4].mean(axis=(1, 2, 3)) > 0.5
    ).astype(np.int32)
    return data.MNIST(x, y, x[:32], y[:32], x[:32], y[:32], "test")


def sparse_copy(model, share=0.6):
    """A copy of ``model`` whose kernels have the smallest ``share`` of their weights set to zero."""
    copy = effcourse.models.clone(model, compile_like=False)
    for layer in copy.layers:
        weights = layer.get_weights()
        if weights:
            kernel = weights[0]
            kernel[np.abs(kernel) <= np.quantile(np.abs(kernel), share)] = 0.0
            layer.set_weights([kernel] + weights[1:])
    return copy


def unique_values(model):
    """{layer name: number of distinct values in its kernel}."""
    return {
        layer.name: np.unique(layer.get_weights()[0]).size for layer in model.layers if layer.get_weights()
    }


def layer_row(table, name):
    """The row of ``cluster.tflite_kernels`` for Keras layer ``name`` (QAT names it quant_<name>)."""
    rows = table[[name in t.split("/") or f"quant_{name}" in t.split("/") for t in table["tensor"]]]
    assert len(rows) == 1, (name, list(table["tensor"]))
    return rows.iloc[0]


def test_clustered_kernels_hold_at_most_k_values(tiny_model):
    before = [w.copy() for w in tiny_model.get_weights()]
    for k in (2, 5):
        clustered = cluster.cluster_and_finetune(tiny_model, tiny_data(), k, epochs=1, batch_size=32)
        counts = unique_values(clustered)
        assert set(counts) == {"conv", "fc", "out"}
        assert all(2 <= c <= k for c in counts.values()), counts
        assert clustered.optimizer is not None  # compiled, ready to evaluate
    for a, b in zip(before, tiny_model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the caller's model is never changed
    plain = cluster.cluster_and_finetune(tiny_model, tiny_data(), 4, epochs=0, per_layer={"conv": 0})
    counts = unique_values(plain)
    assert counts["conv"] == 36 and counts["fc"] <= 4 and counts["out"] <= 4  # conv left dense


@pytest.mark.parametrize("init", sorted(cluster.INITS))
def test_every_centroid_initialisation_works(tiny_model, init):
    stripped = cluster.cluster_and_finetune(tiny_model, tiny_data(), 3, epochs=0, init=init)
    assert max(unique_values(stripped).values()) <= 3


def test_bad_cluster_counts_are_clear_errors(tiny_model):
    import tensorflow_model_optimization as tfmot

    def clustered(model, k, **kwargs):
        return cluster.cluster_and_finetune(model, tiny_data(), k, 0, **kwargs)

    with pytest.raises(ValueError, match="at least 2"):
        clustered(tiny_model, 1)
    with pytest.raises(ValueError, match="at most 36 .its kernel weights"):
        clustered(tiny_model, 37)  # the conv kernel is 3x3x1x4
    with pytest.raises(TypeError, match="must be an int"):
        clustered(tiny_model, 8.0)
    with pytest.raises(ValueError, match="no kernel to cluster"):
        clustered(tiny_model, 4, per_layer={"flatten": 4})
    with pytest.raises(ValueError, match="Unknown centroid initialisation"):
        clustered(tiny_model, 4, init="kmeans")
    with pytest.raises(ValueError, match="at most 5 .its non-zero weights"):  # 4 non-zeros + the zero
        clustered(sparse_copy(tiny_model, 0.9), 8, preserve_sparsity=True, per_layer={"fc": 0, "out": 0})
    with pytest.raises(ValueError, match="preserve must be one of"):
        cluster.collaborative_qat(tiny_model, tiny_data(), 1, preserve="zeros")
    with pytest.raises(TypeError, match="MNIST"):
        cluster.cluster_and_finetune(tiny_model, (np.zeros((4, 8, 8, 1)), np.zeros(4)), 4, 1)
    wrapped = tfmot.clustering.keras.cluster_weights(
        effcourse.models.clone(tiny_model, compile_like=False), number_of_clusters=4
    )
    with pytest.raises(ValueError, match="already holds clustering wrappers"):
        clustered(wrapped, 4)


def test_sparsity_and_clusters_survive_pcqat_and_conversion(tiny_model):
    sparse = sparse_copy(tiny_model, 0.6)
    zeros_before = {layer.name: layer.get_weights()[0] == 0 for layer in sparse.layers if layer.get_weights()}
    k = 4
    clustered = cluster.cluster_and_finetune(
        sparse, tiny_data(), k, epochs=2, batch_size=32, preserve_sparsity=True, learning_rate=1e-2
    )
    for layer in clustered.layers:
        if layer.name in zeros_before:
            kernel = layer.get_weights()[0]
            assert np.all(kernel[zeros_before[layer.name]] == 0), f"{layer.name} lost zeros in clustering"
            assert np.unique(kernel).size <= k
    q = cluster.collaborative_qat(
        clustered, tiny_data(), 2, preserve="both", batch_size=32, learning_rate=1e-2
    )
    blob = convert.to_tflite(q, "int8", representative=tiny_data().x_train[:16])
    table = cluster.tflite_kernels(blob)
    assert len(table) == 3 and set(table["dtype"]) == {"int8"}
    for name, mask in zeros_before.items():
        row = layer_row(table, name)
        assert row["zeros"] >= mask.mean() - 1e-9, f"{name}: zeros lost after PCQAT and conversion"
        assert row["unique per channel (max)"] <= k, f"{name}: more than {k} codes in a channel"
    stored = {t["name"]: t["values"] for t in convert.constant_tensors(blob) if len(t["shape"]) == 2}
    out_kernel = next(v for n, v in stored.items() if "quant_out" in n.split(";")[0].split("/"))
    assert np.all(out_kernel[zeros_before["out"].T] == 0)  # the very same positions, (out, in) layout


def test_prune_preserving_qat_keeps_the_zeros(tiny_model):
    sparse = sparse_copy(tiny_model, 0.7)
    share = {
        layer.name: float(np.mean(layer.get_weights()[0] == 0))
        for layer in sparse.layers
        if layer.get_weights()
    }
    q = cluster.collaborative_qat(
        sparse, tiny_data(), 1, preserve="sparsity", batch_size=32, learning_rate=1e-2
    )
    table = cluster.tflite_kernels(convert.to_tflite(q, "int8", tiny_data().x_train[:16]))
    for name, zeros in share.items():
        assert layer_row(table, name)["zeros"] >= zeros - 1e-9, (name, table)


# --- notebook 04 exercise checks: placeholder and typical mistakes fail, the answer passes ---


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def test_check_nearest_centroid():
    from effcourse import checks

    checks.nb04.nearest_centroid(
        lambda w, c: np.abs(np.asarray(w)[..., None] - np.asarray(c)).argmin(axis=-1)
    )
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb04.nearest_centroid(todo)
    with pytest.raises(checks.CheckFailed, match="not its value"):
        checks.nb04.nearest_centroid(lambda w, c: c[np.abs(w[..., None] - c).argmin(axis=-1)])
    with pytest.raises(checks.CheckFailed, match="one index per weight"):
        checks.nb04.nearest_centroid(lambda w, c: np.abs(w.ravel()[:, None] - c).argmin(axis=-1))
    with pytest.raises(checks.CheckFailed, match="not sorted"):
        checks.nb04.nearest_centroid(lambda w, c: np.abs(w[..., None] - np.sort(c)).argmin(axis=-1))
    with pytest.raises(checks.CheckFailed, match="nearest one"):
        checks.nb04.nearest_centroid(lambda w, c: np.abs(w[..., None] - c).argmax(axis=-1))


def test_check_kernel_stats(tiny_model):
    from effcourse import checks

    blob = convert.to_tflite(tiny_model, "int8", representative=tiny_data().x_train[:16])

    def stats(kernel):
        rows = kernel.reshape(kernel.shape[0], -1)
        return float(np.mean(kernel == 0)), int(max(np.unique(r).size for r in rows))

    checks.nb04.kernel_stats(stats, blob)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb04.kernel_stats(todo, blob)
    with pytest.raises(checks.CheckFailed, match="whole kernel"):
        checks.nb04.kernel_stats(lambda k: (float(np.mean(k == 0)), int(np.unique(k).size)), blob)


def test_pcqat_does_not_warn_about_layers_left_unclustered():
    """A plan that leaves a big kernel unclustered (like LeNet-5's int8-only convolutions) makes tfmot's
    cluster-preserving scheme warn "No clustering performed"; collaborative_qat keeps that expected
    warning out of the learner's output."""
    import warnings

    keras = effcourse.keras
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(32, activation="relu", name="wide")(x)  # 2,048 distinct weights: > 1,024 centroids
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(x))
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    clustered = cluster.cluster_and_finetune(
        sparse_copy(model, 0.3), tiny_data(), 4, epochs=0, preserve_sparsity=True, per_layer={"wide": 0}
    )
    assert unique_values(clustered)["wide"] > 1024 and unique_values(clustered)["out"] <= 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster.collaborative_qat(clustered, tiny_data(), 1, preserve="both", batch_size=32)
    assert not [w for w in caught if "No clustering performed" in str(w.message)]


def test_check_clustered_size_ratio(capsys):
    """Exercise 04.4: the reference range passes; placeholder, tie, copy, reversed, too wide fail."""
    from effcourse import checks

    sizes = {4: 68_364.0, 16: 168_872.0}  # a quick run's float32 gzip bytes (ratio 2.47)
    measured = sizes[16] / sizes[4]
    ideal = 2.81  # the notebook's reference: the ratio of the kernels' entropies in a quick run
    checks.nb04.clustered_size_ratio((0.75 * ideal, 1.05 * ideal), sizes)
    out = capsys.readouterr().out
    assert out.count("PASS") == 1 and "2.47" in out
    for guess, hint in [
        (..., "not written yet"),
        ((2.4, 2.4), "single value"),  # a tie
        ((measured, measured), "single value"),  # the measured value, zero width
        ((2.6, 2.2), "reversed"),
        ((1.0, 4.0), "not a prediction"),  # too wide to miss
        ((measured, 1.3 * measured), "not predicted"),  # copied from the table
        ((0.8 * measured, measured + 1e-9), "not predicted"),
        ((0.35, 0.5), "other way round"),  # k=4 over k=16
        ((1.8, 2.6), "equally often"),  # log2(16) / log2(4): the naive index widths
        ((1.2, 1.7), "above your whole range"),
        ((3.0, 4.0), "below your whole range"),
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb04.clustered_size_ratio(guess, sizes)
    with pytest.raises(checks.CheckFailed, match="k=4 and k=16"):
        checks.nb04.clustered_size_ratio((2.0, 2.5), {8: 1.0, 16: 2.0})
