"""Channel pruning: remove whole filters/units and build a physically narrower model (notebook 02).

It does fewer MACs on any hardware. tfmot does not do this; notebook 02 writes it out for
LeNet-5 with the learner's ranking and checks that ``channel_prune`` (kept for notebook 08's
latency search) builds the same model.
"""

from __future__ import annotations

import numpy as np

from ..models import check_model

PASS_THROUGH = ("InputLayer", "Activation", "ReLU", "MaxPooling2D", "AveragePooling2D", "Dropout")


def channel_norms(model) -> dict:
    """L2 norm of each output filter/unit of every Conv2D/Dense layer, {layer: array}.

    Introduced in notebook 02.
    """
    check_model(model, what="prune.channel_norms")
    out = {}
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "Dense"):
            kernel = layer.kernel.numpy()
            out[layer.name] = np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(0))
    return out


def _kept(model, norms: dict, name: str, amount) -> np.ndarray:
    """The ``amount`` (int: channels, float: fraction) largest-norm channels of layer ``name``, sorted."""
    if name not in norms:
        raise ValueError(f"keep names {name!r}; channel pruning narrows these layers: {list(norms)}.")
    if name == model.layers[-1].name:
        raise ValueError(f"{name!r} produces the model's output (the classes): prune the hidden layers.")
    width = len(norms[name])
    count = max(1, int(round(amount * width))) if isinstance(amount, float) else int(amount)
    if not (0 < amount <= 1 if isinstance(amount, float) else 1 <= count <= width):
        raise ValueError(f"keep[{name!r}] = {amount}: give 1 to {width} channels or a fraction in (0, 1].")
    return np.sort(np.argsort(-norms[name], kind="stable")[:count])


def channel_prune(model, keep: dict):
    """A physically narrower copy of ``model``: the largest-norm filters/units of each layer in ``keep``.

    ``keep`` maps a hidden Conv2D/Dense layer to the channels it keeps (int) or a fraction
    (float). For a chain of Conv2D, Dense, Flatten and weight-free layers that keep the channel
    axis (pooling, activations, dropout), as LeNet-5. Each kept filter keeps its weights; the
    next layer keeps only the input weights that read kept channels (through a Flatten, at
    every position). Returns the compiled narrow model, untrained; the input is not changed.

    Introduced in notebook 02.
    """
    import tf_keras

    from .. import models

    check_model(model, what="prune.channel_prune")
    norms = channel_norms(model)
    kept = {name: _kept(model, norms, name, amount) for name, amount in keep.items()}
    idx, previous, new_weights = None, model.inputs[0], {}  # idx: channels kept so far (None: all)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind != "InputLayer" and layer.input is not previous:
            raise ValueError(f"channel pruning needs a chain of layers; {layer.name!r} branches.")
        previous, weights = layer.output, layer.get_weights()
        if kind in ("Conv2D", "Dense"):
            kernel, *bias = weights
            kernel = kernel if idx is None else np.take(kernel, idx, axis=-2)
            idx = kept.get(layer.name)
            weights = [kernel, *bias] if idx is None else [kernel[..., idx], *(b[idx] for b in bias)]
        elif kind == "Flatten" and idx is not None:  # channel c at every position p: p * channels + c
            positions, channels = int(np.prod(layer.input.shape[1:-1])), layer.input.shape[-1]
            idx = (np.arange(positions)[:, None] * channels + idx).ravel()
        elif idx is not None and kind not in PASS_THROUGH:
            raise ValueError(
                f"channel pruning passes kept channels through Conv2D, Dense, Flatten and "
                f"{', '.join(PASS_THROUGH)}; {layer.name!r} is a {kind}: do not prune the layers before it."
            )
        new_weights[layer.name] = weights

    def narrower(layer):
        config = layer.get_config()
        if layer.name in kept:
            config["filters" if "filters" in config else "units"] = len(kept[layer.name])
        return type(layer).from_config(config)

    narrow = tf_keras.models.clone_model(model, clone_function=narrower)
    for name, weights in new_weights.items():
        narrow.get_layer(name).set_weights(weights)
    return models.compile_classifier(narrow)
