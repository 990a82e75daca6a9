"""Building an early-exit network: exit heads on a backbone, joint training (notebook 06).

``build_early_exit`` splits a chain-shaped Keras backbone after named layers and attaches an
exit head at each split. It returns an ``EarlyExitNet``: the joint Keras model (one output
per exit, for training) and one Keras model per *stage* (a backbone segment and its head),
which are what runs at inference. ``train_joint`` trains all exits together on
``sum_k w_k * CE(y, exit_k)`` (batches from ``train_batches``, optionally with random shifts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import measure, progress, train
from ..models import check_model
from ..validate import positive_int


def _chain(model):
    """The layers of a single-path model in order (InputLayer excluded), or a ValueError."""
    import tf_keras

    check_model(model, what="build_early_exit")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "build_early_exit needs a backbone with one input and one output; got "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    if not isinstance(model, tf_keras.Sequential):
        previous = model.inputs[0]
        for layer in layers:
            if len(layer._inbound_nodes) != 1 or layer.input is not previous:
                raise ValueError(
                    f"build_early_exit needs a backbone whose layers form one chain (each layer "
                    f"feeds the next); layer {layer.name!r} does not take the previous layer's "
                    "output. Split a Sequential model, or a Functional model without branches."
                )
            previous = layer.output
    return layers


def default_head(features_shape, num_classes: int, index: int, max_features: int = 1024, hidden: int = 0):
    """A small exit head (notebook 06): max-pool until at most ``max_features`` values, flatten,
    an optional hidden Dense layer with ReLU, and a Dense layer giving ``num_classes`` logits.

    Returns the list of (unbuilt) layers, named ``exit<index>_..``.

    Introduced in notebook 06.
    """
    import tf_keras

    shape = [int(d) for d in features_shape]
    layers = []
    if len(shape) == 3:
        h, w, c = shape
        pools = 0
        while h * w * c > max_features and min(h, w) >= 2:
            h, w, pools = h // 2, w // 2, pools + 1
        if pools:
            layers.append(tf_keras.layers.MaxPooling2D(2**pools, name=f"exit{index}_pool"))
    if len(shape) > 1:
        layers.append(tf_keras.layers.Flatten(name=f"exit{index}_flatten"))
    if hidden:
        layers.append(tf_keras.layers.Dense(hidden, activation="relu", name=f"exit{index}_hidden"))
    layers.append(tf_keras.layers.Dense(num_classes, name=f"exit{index}_logits"))
    return layers


def _head_layers(spec, features_shape, num_classes, index):
    import tf_keras

    if spec is None:
        return default_head(features_shape, num_classes, index)
    if isinstance(spec, tf_keras.Sequential):
        return list(spec.layers)
    if isinstance(spec, tf_keras.layers.Layer) and not isinstance(spec, tf_keras.Model):
        return [spec]
    if isinstance(spec, (list, tuple)) and all(isinstance(s, tf_keras.layers.Layer) for s in spec):
        return list(spec)
    if callable(spec) and not isinstance(spec, tf_keras.Model):
        return _head_layers(spec(features_shape, num_classes, index), features_shape, num_classes, index)
    raise TypeError(
        f"Exit head {index}: expected None (the default head), a keras.Sequential, a list of "
        "Keras layers, or a function (features_shape, num_classes, index) returning one of "
        f"those; got {type(spec).__name__}."
    )


@dataclass
class EarlyExitNet:
    """A backbone with exit heads (notebook 06): the joint model, its stages and their MACs.

    ``model`` maps an image to the logits of every exit, earliest first, the backbone's own
    output last (train it with ``train_joint``). ``stages[k]`` maps stage k's input (the image,
    or the features where stage k-1 stopped) to ``[features, logits]``; the last stage maps to
    logits. ``full`` is the backbone alone, without heads. All share the same layers.

    Introduced in notebook 06.
    """

    model: object
    stages: list
    full: object
    split_after: tuple
    num_classes: int
    stage_macs: list = field(default_factory=list)

    @property
    def n_exits(self) -> int:
        return len(self.stages)

    @property
    def exit_names(self) -> list[str]:
        return [f"exit {k + 1} (after {name})" for k, name in enumerate(self.split_after)] + ["final"]

    @property
    def cumulative_macs(self) -> np.ndarray:
        """MACs spent by an input that leaves at exit k: every stage and head up to k."""
        return np.cumsum(self.stage_macs)

    def exit_logits(self, x, batch_size: int = 512) -> list[np.ndarray]:
        """The logits of every exit on ``x`` (earliest first), from the joint Keras model."""
        out = self.model.predict(x, batch_size=batch_size, verbose=0)
        return [np.asarray(o) for o in out]


def build_early_exit(backbone, split_after, heads=None, copy: bool = True, name: str | None = None):
    """Split a backbone after the named layers and attach an exit head at each split.

    ``split_after``: layer names in forward order (not the last layer). ``heads``: None for
    ``default_head`` everywhere, or one spec per split (see ``_head_layers``). Every head must
    give as many logits as the backbone. ``copy=True`` works on a clone with the same weights,
    so the backbone you pass is never changed. Returns an ``EarlyExitNet``.

    Introduced in notebook 06.
    """
    import tf_keras

    from ..models import clone

    if isinstance(split_after, str):
        split_after = [split_after]
    split_after = list(split_after)
    layers = _chain(backbone)
    names = [layer.name for layer in layers]
    if not split_after:
        raise ValueError(f"Give at least one layer to split after; candidates: {names[:-1]}.")
    for split in split_after:
        if split not in names:
            raise ValueError(
                f"The backbone has no layer {split!r}; its layers are {names}. "
                "Pass names from that list to split_after."
            )
        if split == names[-1]:
            raise ValueError(
                f"Cannot split after {split!r}: it is the backbone's last layer, "
                "nothing would be left for the next stage."
            )
    positions = [names.index(s) for s in split_after]
    if len(set(positions)) != len(positions) or positions != sorted(positions):
        raise ValueError(
            f"split_after must name distinct layers in forward order; got {split_after} "
            f"(the backbone's order is {names})."
        )
    if heads is None:
        heads = [None] * len(split_after)
    elif not isinstance(heads, (list, tuple)) or len(heads) != len(split_after):
        raise ValueError(
            f"Give one head per split ({len(split_after)}), or heads=None for the "
            "default head at every split."
        )
    if copy:
        backbone = clone(backbone, compile_like=False)
        layers = _chain(backbone)
    num_classes = int(backbone.output_shape[-1])
    input_shape = tuple(backbone.input_shape[1:])

    # Segments of the backbone: layers up to and including each split, then the rest.
    cuts = [p + 1 for p in positions]
    segments = [layers[a:b] for a, b in zip([0] + cuts, cuts + [len(layers)])]

    inp = tf_keras.Input(input_shape, name="image")
    x, outputs, head_layers, seg_inputs = inp, [], [], []
    for k, segment in enumerate(segments):
        seg_inputs.append(tuple(int(d) for d in x.shape[1:]))
        for layer in segment:
            x = layer(x)
        if k < len(split_after):
            hl = _head_layers(heads[k], x.shape[1:], num_classes, k + 1)
            h = x
            for layer in hl:
                h = layer(h)
            if len(h.shape) != 2 or int(h.shape[-1]) != num_classes:
                raise ValueError(
                    f"Exit head {k + 1} (after {split_after[k]!r}) gives outputs of shape "
                    f"{tuple(h.shape[1:])}, the backbone gives {num_classes} class logits. End every "
                    f"head in Dense({num_classes}) on flat features."
                )
            head_layers.append(hl)
            outputs.append(h)
    outputs.append(x)
    joint = tf_keras.Model(inp, outputs, name=name or f"{backbone.name}_early_exit")

    stages = []
    for k, segment in enumerate(segments):
        s_in = tf_keras.Input(seg_inputs[k], name=f"stage{k + 1}_input")
        x = s_in
        for layer in segment:
            x = layer(x)
        if k < len(split_after):
            h = x
            for layer in head_layers[k]:
                h = layer(h)
            stages.append(tf_keras.Model(s_in, [x, h], name=f"stage{k + 1}"))
        else:
            stages.append(tf_keras.Model(s_in, x, name=f"stage{k + 1}"))
    f_in = tf_keras.Input(input_shape, name="image")
    x = f_in
    for layer in layers:
        x = layer(x)
    full = tf_keras.Model(f_in, x, name=f"{backbone.name}_full")
    net = EarlyExitNet(joint, stages, full, tuple(split_after), num_classes)
    net.stage_macs = [measure.macs(s) for s in stages]
    return net


def train_batches(data, batch_size: int = 128, shift: float = 0.0, seed: int = 0, outputs: int = 1):
    """Shuffled training batches of a ``data.MNIST``, optionally shifted at random.

    ``shift`` > 0 moves each image by up to that fraction of its height and width (Keras
    ``RandomTranslation``, empty border), a fresh shift every epoch: cheap augmentation that
    helps small early-exit heads generalise to new writers. ``outputs`` > 1 repeats the label
    once per model output (for the joint early-exit model).

    Introduced in notebook 06.
    """
    import tf_keras

    from .. import data as _data

    if not 0 <= shift < 0.5:
        raise ValueError(f"shift is a fraction of the image size in [0, 0.5); got {shift}.")
    outputs = positive_int(outputs, "outputs")
    ds = _data.pipeline(data.x_train, data.y_train, batch_size, shuffle=True, seed=seed)
    if shift:
        move = tf_keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
        ds = ds.map(lambda x, y: (move(x, training=True), y))
    if outputs > 1:
        ds = ds.map(lambda x, y: (x, tuple(y for _ in range(outputs))))
    return ds


def train_joint(
    net: EarlyExitNet,
    data,
    epochs: int,
    loss_weights=None,
    learning_rate: float = 1e-3,
    batch_size: int = 128,
    shift: float = 0.0,
    seed: int = 0,
    verbose: int = 0,
):
    """Train every exit at once on sum_k w_k * CE(y, exit_k), Adam with cosine decay.

    ``data`` is a ``data.MNIST``; ``loss_weights`` one non-negative weight per exit, earliest
    first (default all 1); ``shift`` the random-shift augmentation of ``train_batches``.
    Returns the Keras History (per-exit losses and accuracies).

    Introduced in notebook 06.
    """
    import tensorflow as tf
    import tf_keras

    from .. import data as _data

    n = net.n_exits
    weights = [1.0] * n if loss_weights is None else [float(w) for w in loss_weights]
    if len(weights) != n or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError(
            f"loss_weights needs {n} finite, non-negative numbers (one per exit, "
            f"earliest first), not all zero; got {loss_weights}."
        )
    epochs = positive_int(epochs, "epochs")
    schedule = train.cosine_schedule(learning_rate, len(data.x_train), batch_size, epochs, alpha=0.01)
    net.model.compile(
        optimizer=tf_keras.optimizers.Adam(schedule),
        loss=[tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True) for _ in range(n)],
        loss_weights=weights,
        metrics=["accuracy"],
    )
    tf.random.set_seed(seed)
    train_ds = train_batches(data, batch_size, shift=shift, seed=seed, outputs=n)
    val_ds = _data.pipeline(data.x_val, data.y_val, 512).map(lambda x, y: (x, tuple(y for _ in range(n))))
    return net.model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        verbose=verbose,
        callbacks=progress.with_bar([], f"joint training of {n} exits", verbose),
    )
