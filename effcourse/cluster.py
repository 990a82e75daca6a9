"""Weight clustering and collaborative quantization-aware training with tfmot (notebook 04, reused by 08).

Notebook 04 shows both in plain tfmot calls (``cluster_weights``, ``strip_clustering``,
``quantize_apply`` with a collaborative scheme) and then uses these two helpers, which
notebook 08's search runs in every trial: ``cluster_and_finetune`` (per-layer cluster
counts, sparsity-preserving clustering, checked arguments) and ``collaborative_qat``
(PQAT, CQAT or PCQAT). ``tflite_kernels`` reads what a ``.tflite`` file stores for each
kernel (notebooks 04 and 09).

The entry point that accepts ``preserve_sparsity`` lives in tfmot 0.8.1's
``tensorflow_model_optimization.python.core.clustering.keras.experimental.cluster`` (the
documented ``tfmot.clustering.keras.experimental.cluster_weights`` raises
``AttributeError``); ``_tfmot_cluster`` is the only place that imports it.
"""

from __future__ import annotations

import warnings

import numpy as np

from .models import check_model
from .validate import mnist_like, positive_int

INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}
PRESERVE = ("sparsity", "clusters", "both")


def _tfmot_cluster():
    """tfmot's working clustering entry point (see the module docstring for why this path)."""
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    return cluster


def _init(init: str):
    from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import (
        CentroidInitialization,
    )

    if init not in INITS:
        raise ValueError(f"Unknown centroid initialisation {init!r}; choose one of {', '.join(INITS)}.")
    return getattr(CentroidInitialization, INITS[init])


def _kernel(layer):
    """The kernel array of a Dense/Conv layer (looking through tfmot wrappers), or None."""
    inner = getattr(layer, "layer", layer)
    for name in ("kernel", "depthwise_kernel"):
        var = getattr(inner, name, None)
        if var is not None:
            return np.asarray(var.numpy())
    return None


def _sizes(model) -> dict:
    """{layer name: number of kernel weights} for the Dense/Conv layers clustering acts on."""
    return {layer.name: int(_kernel(layer).size) for layer in model.layers if _kernel(layer) is not None}


def _check_clusters(value, layer: str, size: int, nonzero: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"the number of clusters for layer {layer!r} must be an int, got {value!r}.")
    value = int(value)
    if value < 2:
        raise ValueError(
            f"clustering layer {layer!r} into {value} cluster(s) is meaningless: use at "
            "least 2 (2 clusters = 1 bit per weight; 16 = 4 bits is a common start)."
        )
    if value > size:
        raise ValueError(
            f"layer {layer!r} has only {size} kernel weights, fewer than the {value} "
            "clusters asked for; use fewer clusters or leave the layer out (per_layer)."
        )
    if nonzero is not None and value > nonzero + 1:
        raise ValueError(
            f"layer {layer!r} has only {nonzero} non-zero weights to share {value - 1} "
            "non-zero centroids with sparsity preserved; use fewer clusters."
        )
    return value


def _plan(model, clusters, per_layer, preserve_sparsity) -> dict:
    sizes = _sizes(model)
    per_layer = dict(per_layer or {})
    unknown = sorted(set(per_layer) - set(sizes))
    if unknown:
        raise ValueError(
            f"per_layer names layers that have no kernel to cluster: {unknown}. "
            f"Clusterable layers: {list(sizes)}."
        )
    plan = {}
    for layer in model.layers:
        if layer.name not in sizes:
            continue
        k = per_layer.get(layer.name, clusters)
        if per_layer and (k is None or k == 0):
            continue  # with per_layer, 0 or None leaves a layer unclustered
        nonzero = int(np.count_nonzero(_kernel(layer))) if preserve_sparsity else None
        plan[layer.name] = _check_clusters(k, layer.name, sizes[layer.name], nonzero)
    if not plan:
        raise ValueError(
            "no layer left to cluster: per_layer sets every layer to 0; name at least "
            "one layer with a cluster count >= 2."
        )
    return plan


def _wrap(
    model,
    clusters: int,
    init: str = "kmeans++",
    preserve_sparsity: bool = False,
    per_channel: bool = False,
    per_layer: dict | None = None,
):
    """Wrap a copy of ``model`` for clustering with tfmot's ``cluster_weights``.

    Every Dense/Conv kernel gets ``clusters`` centroids, initialised by ``init`` (one of
    ``INITS``); ``per_layer`` ({layer name: k}) overrides ``clusters``, and 0 or None there
    leaves a layer unclustered (with ``per_layer`` given, ``clusters=0`` clusters only the
    named layers). ``preserve_sparsity=True`` keeps the zeros of a pruned kernel at
    zero (one of the ``k`` centroids is pinned to 0). ``per_channel`` clusters each Conv2D
    output channel separately (matches int8's per-channel scales). The caller's model is
    cloned first and never changed; train the result, then strip it.
    """
    import tf_keras

    from . import models

    check_model(model, what="cluster.cluster_and_finetune")
    if any(type(layer).__name__ == "ClusterWeights" for layer in model.layers):
        raise ValueError(
            "this model already holds clustering wrappers; pass the original model or "
            "tfmot.clustering.keras.strip_clustering(model) first."
        )
    plan = _plan(model, clusters, per_layer, preserve_sparsity)
    centroid_init = _init(init)
    api = _tfmot_cluster()
    base = models.clone(model, compile_like=False)  # tfmot shares layers: never wrap the caller's

    def wrap_layer(layer):
        if layer.name not in plan:
            return layer
        return api.cluster_weights(
            layer,
            number_of_clusters=plan[layer.name],
            cluster_centroids_init=centroid_init,
            preserve_sparsity=preserve_sparsity,
            cluster_per_channel=per_channel,
        )

    return tf_keras.models.clone_model(base, clone_function=wrap_layer)


def _check_data(data, epochs, batch_size, what, min_epochs: int = 0):
    """(epochs, batch_size) as ints once ``data`` is an ``effcourse.data.MNIST`` and both are whole numbers."""
    mnist_like(data, f"cluster.{what}")
    return (
        positive_int(epochs, f"{what}: epochs", minimum=min_epochs),
        positive_int(batch_size, f"{what}: batch_size"),
    )


def cluster_and_finetune(
    model,
    data,
    clusters: int,
    epochs: int,
    batch_size: int = 128,
    init: str = "kmeans++",
    preserve_sparsity: bool = False,
    per_channel: bool = False,
    per_layer: dict | None = None,
    learning_rate: float = 1e-4,
    seed: int = 0,
    verbose: int = 0,
):
    """Cluster a copy of ``model`` and fine-tune the centroids on ``data``; return it stripped and compiled.

    Introduced in notebook 04. ``clusters`` shared values per Dense/Conv kernel, initialised by
    ``init`` (one of ``INITS``); ``per_layer`` ({layer name: k}) overrides ``clusters``, and 0 or
    None there leaves a layer unclustered; ``preserve_sparsity`` pins one centroid to 0 and
    keeps a pruned kernel's zeros; ``per_channel`` clusters each Conv2D output channel apart. ``epochs=0`` clusters without
    fine-tuning (to see what clustering alone costs). Fine-tuning trains the centroids
    (Adam at a small, cosine-decayed ``learning_rate``): each centroid's gradient is the
    sum of its weights' gradients, and the weights are re-assigned to their nearest
    centroid at every step. The input model is never changed.
    """

    from . import env, models, train

    check_model(model, what="cluster.cluster_and_finetune")
    epochs, batch_size = _check_data(data, epochs, batch_size, "cluster_and_finetune")
    env.seed_everything(seed)
    wrapped = _wrap(
        model,
        clusters,
        init=init,
        preserve_sparsity=preserve_sparsity,
        per_channel=per_channel,
        per_layer=per_layer,
    )
    if epochs > 0:
        optimizer = train.finetune_optimizer(learning_rate, len(data.x_train), batch_size, epochs)
        models.compile_classifier(wrapped, optimizer=optimizer)
        train.fit(
            wrapped,
            data,
            epochs=epochs,
            batch_size=batch_size,
            verbose=verbose,
            seed=seed,
            desc=f"fine-tuning the centroids of {model.name}",
        )
    import tensorflow_model_optimization as tfmot

    return models.compile_classifier(tfmot.clustering.keras.strip_clustering(wrapped))


def tflite_kernels(blob: bytes):
    """What a .tflite file stores for each kernel (DataFrame), read from the flatbuffer, notebook 04.

    One row per weight tensor of rank 2 or 4: dtype, shape, the share of exact zeros, the
    number of distinct stored values over the whole tensor and the most in any one output
    channel (int8 kernels with per-channel scales map ``k`` centroids to up to ``k``
    codes per channel).

    Introduced in notebook 04.
    """
    import pandas as pd

    from . import convert

    rows = []
    for t in convert.constant_tensors(blob):
        if len(t["shape"]) not in (2, 4) or t["values"] is None:
            continue
        values = t["values"]
        per_channel = values.reshape(values.shape[0], -1)
        rows.append(
            {
                "tensor": t["name"].split(";")[0],
                "dtype": t["dtype"],
                "shape": t["shape"],
                "zeros": float(np.mean(values == 0)),
                "unique": int(np.unique(values).size),
                "unique per channel (max)": int(max(np.unique(row).size for row in per_channel)),
            }
        )
    return pd.DataFrame(
        rows, columns=["tensor", "dtype", "shape", "zeros", "unique", "unique per channel (max)"]
    )


def _scheme(preserve: str):
    if preserve not in PRESERVE:
        raise ValueError(
            f"preserve must be one of {PRESERVE} (what quantization-aware training keeps: "
            f"the zeros, the shared values, or both), got {preserve!r}."
        )
    if preserve == "sparsity":
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as mod,
        )

        return mod.Default8BitPrunePreserveQuantizeScheme()
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        default_8bit_cluster_preserve_quantize_scheme as mod,
    )

    return mod.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve == "both")


def collaborative_qat(
    model,
    data,
    epochs: int,
    preserve: str = "both",
    batch_size: int = 128,
    learning_rate: float = 1e-4,
    seed: int = 0,
    verbose: int = 0,
):
    """Quantization-aware training that keeps what pruning and clustering made, notebook 04.

    tfmot's collaborative schemes passed to ``quantize_apply``: ``preserve="sparsity"`` is
    prune-preserving QAT (PQAT), ``"clusters"`` cluster-preserving QAT (CQAT), ``"both"``
    sparsity- and cluster-preserving QAT (PCQAT). ``model`` is a stripped pruned and/or
    clustered model (never changed); returns the trained quantization-aware model, ready
    for ``convert.to_tflite(q, "int8", ..)``. Plain QAT is ``effcourse.quantize.qat``.

    Introduced in notebook 04.
    """
    import tensorflow_model_optimization as tfmot

    from . import env, models, train

    check_model(model, what="cluster.collaborative_qat")
    scheme = _scheme(preserve)
    epochs, batch_size = _check_data(data, epochs, batch_size, "collaborative_qat", min_epochs=1)
    qk = tfmot.quantization.keras
    what = {"sparsity": "PQAT", "clusters": "CQAT", "both": "PCQAT"}[preserve]
    with warnings.catch_warnings():
        # The cluster-preserving scheme warns "No clustering performed on layer ..." for every
        # kernel with more than 1024 distinct values: the layers a plan deliberately leaves
        # unclustered (e.g. LeNet-5's int8-only convolutions). Expected here, so not shown.
        warnings.filterwarnings("ignore", message="No clustering performed on layer", category=UserWarning)
        annotated = qk.quantize_annotate_model(models.clone(model, compile_like=False))
        q_model = qk.quantize_apply(annotated, scheme)
        env.seed_everything(seed)
        models.compile_classifier(q_model, learning_rate=learning_rate)
        train.fit(
            q_model,
            data,
            epochs=epochs,
            batch_size=batch_size,
            verbose=verbose,
            seed=seed,
            desc=f"{what} of {model.name}",
        )
    return q_model
