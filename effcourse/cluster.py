"""Weight clustering and collaborative QAT with tfmot (notebook 04; reused by 08 and 09).

Notebook 04 shows both in plain tfmot calls, then uses ``cluster_and_finetune`` and
``collaborative_qat``, which notebook 08's search runs in every trial; ``tflite_kernels`` reads
what a ``.tflite`` file stores for each kernel (04 and 09). tfmot 0.8.1 accepts
``preserve_sparsity`` only in its ``python.core.clustering.keras.experimental.cluster`` module
(the documented ``tfmot.clustering.keras.experimental.cluster_weights`` raises AttributeError).
"""

from __future__ import annotations

import warnings

import numpy as np

from . import env, models, train
from .validate import mnist_like, positive_int

INITS = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}
PRESERVE = {"sparsity": "PQAT", "clusters": "CQAT", "both": "PCQAT"}


def _kernel(layer):
    """The kernel of a Dense/Conv layer (looking through tfmot wrappers) as an array, or None."""
    var = getattr(getattr(layer, "layer", layer), "kernel", None)
    return None if var is None else np.asarray(var.numpy())


def _plan(model, clusters, per_layer, preserve_sparsity) -> dict:
    """{layer name: k} for the layers to cluster, each k checked against the layer's weights."""
    kernels = {layer.name: _kernel(layer) for layer in model.layers if _kernel(layer) is not None}
    per_layer = dict(per_layer or {})
    if set(per_layer) - set(kernels):
        raise ValueError(
            f"per_layer names layers that have no kernel to cluster: {sorted(set(per_layer) - set(kernels))}."
            f" Clusterable layers: {list(kernels)}."
        )
    plan = {}
    for name, kernel in kernels.items():
        k = per_layer.get(name, clusters)
        if per_layer and not k:
            continue  # with per_layer, 0 or None leaves a layer unclustered
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"the number of clusters for layer {name!r} must be an int, got {k!r}.")
        room = int(np.count_nonzero(kernel)) + 1 if preserve_sparsity else kernel.size
        if not 2 <= k <= room:
            raise ValueError(
                f"layer {name!r} cannot be clustered into {k} values: use at least 2 (1 bit per weight) "
                f"and at most {room} ({'its non-zero weights and the zero' if preserve_sparsity else 'its kernel weights'}),"
                " or leave the layer out with per_layer."
            )
        plan[name] = int(k)
    if not plan:
        raise ValueError("no layer left to cluster: give at least one layer a cluster count >= 2.")
    return plan


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
    """Cluster a copy of ``model``, fine-tune the centroids on ``data``; return it stripped, compiled.

    ``clusters`` shared values per Dense/Conv kernel, initialised by ``init`` (one of ``INITS``);
    ``per_layer`` ({layer name: k}) overrides it, 0 or None there leaving a layer unclustered;
    ``preserve_sparsity`` pins one centroid to 0; ``per_channel`` clusters each Conv2D output
    channel apart; ``epochs=0`` clusters without fine-tuning the centroids.

    Introduced in notebook 04.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster

    models.check_model(model, what="cluster.cluster_and_finetune")
    mnist_like(data, "cluster.cluster_and_finetune")
    epochs = positive_int(epochs, "cluster_and_finetune: epochs", minimum=0)
    if init not in INITS:
        raise ValueError(f"Unknown centroid initialisation {init!r}; choose one of {', '.join(INITS)}.")
    if any(type(layer).__name__ == "ClusterWeights" for layer in model.layers):
        raise ValueError(
            "this model already holds clustering wrappers; pass the original model or "
            "tfmot.clustering.keras.strip_clustering(model) first."
        )
    plan = _plan(model, clusters, per_layer, preserve_sparsity)
    env.seed_everything(seed)
    options = dict(
        cluster_centroids_init=getattr(tfmot.clustering.keras.CentroidInitialization, INITS[init]),
        preserve_sparsity=preserve_sparsity,
        cluster_per_channel=per_channel,
    )
    wrapped = tf_keras.models.clone_model(  # tfmot shares layers: never wrap the caller's
        models.clone(model, compile_like=False),
        clone_function=lambda layer: (
            cluster.cluster_weights(layer, number_of_clusters=plan[layer.name], **options)
            if layer.name in plan
            else layer
        ),
    )
    if epochs > 0:
        optimizer = train.finetune_optimizer(learning_rate, len(data.x_train), batch_size, epochs)
        models.compile_classifier(wrapped, optimizer=optimizer)
        train.fit(
            wrapped,
            data,
            epochs,
            batch_size,
            verbose=verbose,
            seed=seed,
            desc=f"fine-tuning the centroids of {model.name}",
        )
    return models.compile_classifier(tfmot.clustering.keras.strip_clustering(wrapped))


def tflite_kernels(blob: bytes):
    """What a .tflite file stores for each kernel (a DataFrame read from the flatbuffer).

    One row per weight tensor of rank 2 or 4: dtype, shape, the share of exact zeros, the
    number of distinct stored values over the whole tensor and the most in any one output
    channel (int8 kernels with per-channel scales map ``k`` centroids to up to ``k`` codes
    per channel).

    Introduced in notebook 04.
    """
    import pandas as pd

    from . import convert

    rows = []
    for t in convert.constant_tensors(blob):
        if len(t["shape"]) in (2, 4) and t["values"] is not None:
            values = t["values"]
            rows.append(
                {
                    "tensor": t["name"].split(";")[0],
                    "dtype": t["dtype"],
                    "shape": t["shape"],
                    "zeros": float(np.mean(values == 0)),
                    "unique": int(np.unique(values).size),
                    "unique per channel (max)": max(
                        len(np.unique(r)) for r in values.reshape(len(values), -1)
                    ),
                }
            )
    return pd.DataFrame(rows)


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
    """Quantization-aware training that keeps what pruning and clustering made.

    ``preserve``: ``"sparsity"`` (PQAT), ``"clusters"`` (CQAT) or ``"both"`` (PCQAT), tfmot's
    collaborative schemes for ``quantize_apply``, on a copy of a stripped pruned and/or clustered
    ``model``. Plain QAT is ``quantize.qat``.

    Introduced in notebook 04.
    """
    import tensorflow_model_optimization as tfmot

    models.check_model(model, what="cluster.collaborative_qat")
    if preserve not in PRESERVE:
        raise ValueError(
            f"preserve must be one of {tuple(PRESERVE)} (what quantization-aware training keeps: "
            f"the zeros, the shared values, or both), got {preserve!r}."
        )
    mnist_like(data, "cluster.collaborative_qat")
    combine = tfmot.experimental.combine
    if preserve == "sparsity":
        scheme = combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve == "both")
    qk = tfmot.quantization.keras
    with warnings.catch_warnings():
        # The cluster-preserving scheme warns "No clustering performed on layer ..." for every kernel
        # with more than 1024 distinct values: the layers a plan leaves unclustered on purpose.
        warnings.filterwarnings("ignore", message="No clustering performed on layer", category=UserWarning)
        q_model = qk.quantize_apply(
            qk.quantize_annotate_model(models.clone(model, compile_like=False)), scheme
        )
        env.seed_everything(seed)
        models.compile_classifier(q_model, learning_rate=learning_rate)
        train.fit(
            q_model,
            data,
            positive_int(epochs, "collaborative_qat: epochs"),
            batch_size,
            verbose=verbose,
            seed=seed,
            desc=f"{PRESERVE[preserve]} of {model.name}",
        )
    return q_model
