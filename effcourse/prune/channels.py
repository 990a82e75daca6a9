"""Channel (filter) pruning: remove whole filters/units and build a physically narrower model (notebook 02).

It does fewer MACs on any hardware. tfmot does not do this; it is written out here.
"""

from __future__ import annotations

import numpy as np

from ..models import check_model

CHANNEL_PASS_THROUGH = (
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dropout",
    "SpatialDropout2D",
    "ZeroPadding2D",
    "Cropping2D",
    "GaussianNoise",
    "GaussianDropout",
)
CHANNEL_MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _prunable_unit_layer(layer) -> bool:
    import tf_keras

    return type(layer) in (tf_keras.layers.Conv2D, tf_keras.layers.Dense)


def channel_norms(model, ord: int = 2) -> dict:
    """Norm of each output filter/unit of every Conv2D/Dense layer, {layer: array}, notebook 02.

    The L1 (``ord=1``) or L2 norm of the weights feeding each output channel (Li et al. 2017
    rank filters by L1); small-norm channels contribute least and are removed first.

    Introduced in notebook 02.
    """
    check_model(model, what="prune.channel_norms")
    if ord not in (1, 2):
        raise ValueError(f"ord must be 1 or 2, got {ord}.")
    out = {}
    for layer in model.layers:
        if _prunable_unit_layer(layer):
            k = layer.kernel.numpy()
            flat = k.reshape(-1, k.shape[-1])
            out[layer.name] = np.abs(flat).sum(0) if ord == 1 else np.sqrt((flat**2).sum(0))
    return out


def _output_layer_names(model) -> set:
    return {t._keras_history.layer.name for t in model.outputs}


def kept_channels(model, keep: dict, ord: int = 2) -> dict:
    """Indices of the channels each layer keeps, {layer: sorted array}: the largest-norm ``keep[layer]``, notebook 02.

    ``keep`` maps a Conv2D/Dense layer name to a number of channels (int >= 1) or a
    fraction (float in (0, 1]). Output layers cannot lose units (the classes).

    Introduced in notebook 02.
    """
    check_model(model, what="prune.kept_channels")
    if not isinstance(keep, dict) or not keep:
        raise TypeError(
            "keep must be a non-empty dict {layer name: channels to keep (int) or fraction (float)}."
        )
    norms = channel_norms(model, ord)
    outputs = _output_layer_names(model)
    names = [layer.name for layer in model.layers]
    plan = {}
    for name, amount in keep.items():
        if name not in names:
            raise ValueError(f"keep names {name!r}, which is not a layer of this model; layers: {names}.")
        layer = model.get_layer(name)
        if not _prunable_unit_layer(layer):
            raise ValueError(
                f"channel pruning removes filters of Conv2D and units of Dense layers; "
                f"{name!r} is a {type(layer).__name__}."
            )
        if name in outputs:
            raise ValueError(
                f"{name!r} produces the model's output: its units are the classes and "
                "cannot be removed. Prune the hidden layers."
            )
        width = len(norms[name])
        if isinstance(amount, (bool, np.bool_)) or not isinstance(
            amount, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"keep[{name!r}] must be an int (channels) or a float (fraction), got {amount!r}."
            )
        if isinstance(amount, (float, np.floating)):
            if not 0 < amount <= 1:
                raise ValueError(f"keep[{name!r}] = {amount}: a fraction must be in (0, 1].")
            count = max(1, int(round(amount * width)))
        else:
            count = int(amount)
            if not 1 <= count <= width:
                raise ValueError(
                    f"keep[{name!r}] = {count}: must be between 1 and the layer's {width} channels."
                )
        plan[name] = np.sort(np.argsort(-norms[name], kind="stable")[:count])
    return plan


def _feature_flow(model, kept: dict) -> dict:
    """For every layer: (input feature indices kept, output feature indices kept); None = all."""
    import tensorflow as tf

    feat = {t.ref(): None for t in model.inputs}
    flow = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if len(layer._inbound_nodes) != 1:
            raise ValueError(
                f"layer {layer.name!r} is used {len(layer._inbound_nodes)} times; channel "
                "pruning needs each layer called once (rebuild the model from its config)."
            )
        inputs = tf.nest.flatten(layer.input)
        ins = [feat[t.ref()] for t in inputs]
        idx = ins[0]
        if _prunable_unit_layer(layer):
            if (
                getattr(layer, "groups", 1) != 1
                or getattr(layer, "data_format", "channels_last") != "channels_last"
            ):
                raise ValueError(
                    f"{layer.name!r}: channel pruning handles channels_last, ungrouped Conv2D only."
                )
            out = kept.get(layer.name)
        elif kind == "Flatten":
            if idx is None:
                out = None
            else:
                shape = inputs[0].shape
                positions, channels = int(np.prod(shape[1:-1])), int(shape[-1])
                out = (np.arange(positions)[:, None] * channels + idx[None, :]).ravel()
        elif kind in CHANNEL_PASS_THROUGH or (
            kind == "BatchNormalization" and layer.axis in ([-1], [3], -1, 3)
        ):
            out = idx
        elif kind in CHANNEL_MERGE:
            same = all(
                (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
                for a, b in zip(ins, ins[1:])
            )
            if not same:
                raise ValueError(
                    f"{layer.name!r} ({kind}) merges tensors whose kept channels differ; "
                    "keep the same channels in every branch feeding it, or do not prune them."
                )
            out = idx
        elif all(i is None for i in ins):
            out = None  # no pruned channels reach this layer: it is copied unchanged
        else:
            raise ValueError(
                f"channel pruning cannot pass pruned channels through layer {layer.name!r} ({kind}). "
                f"It handles Conv2D, Dense, Flatten, BatchNormalization, {', '.join(CHANNEL_MERGE)} and "
                f"the pass-through layers {', '.join(CHANNEL_PASS_THROUGH)}. "
                "Do not prune the layers that feed it."
            )
        flow[layer.name] = (idx, out)
        feat[layer.output.ref()] = out
    return flow


def channel_mask(model, keep: dict, ord: int = 2):
    """A same-shape copy of ``model`` in which the channels ``channel_prune`` removes are zeroed, notebook 02.

    The removed filters (and their biases) and the weights that read them in the next
    layer are set to zero, so this wide model computes exactly what the narrow model does.

    Introduced in notebook 02.
    """
    from .. import models

    kept = kept_channels(model, keep, ord)
    flow = _feature_flow(model, kept)
    wide = models.clone(model, compile_like=False)
    for name, (in_idx, out_idx) in flow.items():
        layer = wide.get_layer(name)
        if not _prunable_unit_layer(layer):
            continue
        kernel, *rest = layer.get_weights()
        if in_idx is not None:
            drop = np.setdiff1d(np.arange(kernel.shape[-2]), in_idx)
            kernel[..., drop, :] = 0.0
        if name in kept:
            drop = np.setdiff1d(np.arange(kernel.shape[-1]), out_idx)
            kernel[..., drop] = 0.0
            rest = [r.copy() for r in rest]
            for r in rest:
                r[drop] = 0.0
        layer.set_weights([kernel, *rest])
    return wide


def channel_prune(model, keep: dict, ord: int = 2):
    """A physically narrower copy of ``model``: the largest-norm filters/units of each layer in ``keep``, notebook 02.

    For Sequential/Functional models of Conv2D and Dense layers (with Flatten, pooling,
    activations, dropout, BatchNormalization and elementwise merges between them). Each
    kept filter keeps its weights; the next layer keeps only the input weights of kept
    channels. Before fine-tuning, the result computes what ``channel_mask`` computes.
    Returns a compiled model with fewer parameters and MACs; fine-tune it with ``finetune``.

    Introduced in notebook 02.
    """
    import tf_keras

    from .. import models

    check_model(model, what="prune.channel_prune")
    kept = kept_channels(model, keep, ord)
    flow = _feature_flow(model, kept)

    def narrower(layer):
        config = layer.get_config()
        if layer.name in kept:
            config["filters" if "filters" in config else "units"] = int(len(kept[layer.name]))
        return type(layer).from_config(config)

    narrow = tf_keras.models.clone_model(model, clone_function=narrower)
    for layer in model.layers:
        if layer.name not in flow or not layer.weights:
            continue
        in_idx, out_idx = flow[layer.name]
        weights = layer.get_weights()
        if _prunable_unit_layer(layer):
            kernel, *rest = weights
            if in_idx is not None:
                kernel = np.take(kernel, in_idx, axis=-2)
            if layer.name in kept:
                kernel = kernel[..., out_idx]
                rest = [r[out_idx] for r in rest]
            weights = [kernel, *rest]
        elif in_idx is not None:  # BatchNormalization: every vector is per channel
            weights = [w[in_idx] for w in weights]
        narrow.get_layer(layer.name).set_weights(weights)
    return models.compile_classifier(narrow)
