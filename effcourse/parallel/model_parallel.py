"""Model parallelism: consecutive layers of a Sequential model on different devices (notebook 07).

``split_sequential`` rebuilds a model as ``Stage``s whose variables live on their own
device; ``forward_across`` runs a batch through them and reports what crosses between
devices; ``balanced_mlp`` is the model with identical blocks used for pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data_parallel import _per_example_loss
from .local_devices import devices


@dataclass
class Stage:
    """Consecutive layers of a model placed on one device, their variables there.

    Introduced in notebook 07.
    """

    index: int
    device: str
    model: object  # a tf_keras Sequential
    layers: list
    _graphs: dict = field(default_factory=dict, repr=False)

    def __call__(self, x, training: bool = False):
        import tensorflow as tf

        with tf.device(self.device):
            return self.model(x, training=training)

    def graph(self, with_loss: bool):
        """This stage's training forward pass as a ``tf.function`` (traced once; with the loss if last)."""
        import tensorflow as tf

        if with_loss not in self._graphs:
            spec = tf.TensorSpec([None, *self.model.input_shape[1:]], tf.float32)
            if with_loss:

                def forward(h, labels, global_batch):
                    logits = self.model(h, training=True)
                    return tf.reduce_sum(_per_example_loss(labels, logits)) / global_batch

                signature = [spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32)]
            else:

                def forward(h):
                    return self.model(h, training=True)

                signature = [spec]
            self._graphs[with_loss] = tf.function(forward, input_signature=signature)
        return self._graphs[with_loss]


def balanced_mlp(blocks: int, width: int = 784, name: str = "balanced_mlp"):
    """An MLP of ``blocks`` identical Dense(width) ReLU blocks and a Dense(10) head.

    Used for pipelines: with ``width`` 784 every block does the same work (784 x 784 MACs
    per sample), so one block per stage gives balanced stages.

    Introduced in notebook 07.
    """
    import tf_keras

    from .. import models

    if blocks < 1 or width < 1:
        raise ValueError("blocks and width must be >= 1")
    layers = [tf_keras.layers.Input(models.INPUT_SHAPE), tf_keras.layers.Flatten(name="flatten")]
    layers += [tf_keras.layers.Dense(width, activation="relu", name=f"block{i}") for i in range(blocks)]
    layers.append(tf_keras.layers.Dense(models.NUM_CLASSES, name="logits"))
    return tf_keras.Sequential(layers, name=name)


def split_sequential(model, boundaries, device_list=None) -> list:
    """Split a Sequential model into stages of consecutive layers, each on its own device.

    ``boundaries`` are the layer indices (into ``model.layers``) where stages 1, 2, ..
    start, e.g. ``[2]`` puts layers 0-1 on the first device and the rest on the second.
    Each stage is a new Sequential whose variables are created on its device and hold
    the model's current weights; the original model is left untouched.

    Introduced in notebook 07.
    """
    import tensorflow as tf
    import tf_keras

    from .. import models

    models.check_model(model, what="split_sequential")
    if not isinstance(model, tf_keras.Sequential):
        raise TypeError("split_sequential needs a Sequential model (a plain stack of layers).")
    layers = list(model.layers)
    cuts = [0, *sorted(int(b) for b in boundaries), len(layers)]
    if len(set(cuts)) != len(cuts) or cuts[1] <= 0 or cuts[-2] >= len(layers):
        raise ValueError(
            f"boundaries {list(boundaries)} must be distinct layer indices in "
            f"1..{len(layers) - 1} (the model has {len(layers)} layers), so that "
            "every stage gets at least one layer."
        )
    n_stages = len(cuts) - 1
    device_list = list(device_list) if device_list is not None else devices(n_stages)
    if len(device_list) < n_stages:
        raise ValueError(f"{n_stages} stages need {n_stages} devices, got {len(device_list)}")
    stages = []
    for k in range(n_stages):
        part = layers[cuts[k] : cuts[k + 1]]
        with tf.device(device_list[k]):
            seq = tf_keras.Sequential(
                [tf_keras.layers.Input(part[0].input_shape[1:])]
                + [type(layer).from_config(layer.get_config()) for layer in part],
                name=f"stage{k}",
            )
        seq.set_weights([w for layer in part for w in layer.get_weights()])
        stages.append(Stage(k, device_list[k], seq, [layer.name for layer in part]))
    return stages


def forward_across(stages, x, training: bool = False):
    """Run ``x`` through the stages in order; return the output and what crossed devices.

    Each crossing is a dict: from and to device, the activation's shape and its bytes
    (what an interconnect would carry per step).

    Introduced in notebook 07.
    """
    import tensorflow as tf

    h = tf.convert_to_tensor(x)
    crossings = []
    for k, stage in enumerate(stages):
        if k:
            crossings.append(
                {
                    "from": stages[k - 1].device,
                    "to": stage.device,
                    "shape": tuple(h.shape),
                    "bytes": int(np.prod(h.shape)) * h.dtype.size,
                    "bytes_per_sample": int(np.prod(h.shape[1:])) * h.dtype.size,
                }
            )
        h = stage(h, training=training)
    return h, crossings
