"""A learned per-input skip gate over one residual block, SkipNet-style (notebook 06, section 8).

A small network: conv 16@5x5, pool, one residual block of two 3x3 convolutions, pool, dense
10. A gate ``g(x)`` in {0, 1}, computed from cheap pooled features, decides per input
whether the block's output is added: ``y = x + g(x) F(x)``. The hard 0/1 gate has no
gradient, so training uses the straight-through estimator (``HardGate``): forward the 0/1
value, backpropagate as if it were the sigmoid ``p(x)``. A budget term
``weight * (mean(p) - target)^2`` pulls the batch's mean gate probability towards the share
``target`` of inputs that run the block. As in SkipNet, training has two phases: the block
always on, then the gate switched in and everything fine-tuned with the budget.

The gated model still computes the block for the whole batch and multiplies it by 0; the
MAC accounting assumes the block is really skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import measure, models, progress


def _hard_gate_class():
    import tensorflow as tf
    import tf_keras

    class HardGate(tf_keras.layers.Layer):
        """0/1 in the forward pass, the identity's gradient in the backward pass (straight-through)."""

        def call(self, p):
            return p + tf.stop_gradient(tf.round(p) - p)

    return HardGate


def gated_net(
    input_shape=models.INPUT_SHAPE,
    num_classes: int = models.NUM_CLASSES,
    budget_weight: float = 1.0,
    budget_target: float = 0.3,
):
    """The skip-gate network's three views, sharing their layers.

    conv 16@5x5, pool, residual block (two conv 16@3x3), pool, dense ``num_classes``. Returns
    ``(always_on, gated, probe)``: the block-always-on model (phase 1), the gated model with
    the budget loss (phase 2), and a probe mapping an image to ``[logits, gate]``.

    Introduced in notebook 06.
    """
    import tensorflow as tf
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input(tuple(input_shape))
    x = L.MaxPooling2D(2, name="pool1")(L.Conv2D(16, 5, activation="relu", name="conv1")(inp))
    p = L.Dense(1, activation="sigmoid", name="gate")(
        L.Flatten(name="gate_flatten")(L.MaxPooling2D(4, name="gate_pool")(x))
    )
    g = _hard_gate_class()(name="hard_gate")(p)
    f = L.Conv2D(16, 3, padding="same", name="block_b")(
        L.Conv2D(16, 3, padding="same", activation="relu", name="block_a")(x)
    )
    tail = [
        L.ReLU(name="relu"),
        L.MaxPooling2D(2, name="pool2"),
        L.Flatten(name="flatten"),
        L.Dense(num_classes, name="logits"),
    ]

    def finish(y):
        for layer in tail:
            y = layer(y)
        return y

    always_on = keras.Model(inp, finish(L.Add(name="residual_on")([x, f])), name="block_always_on")
    out = finish(
        L.Add(name="residual")([x, L.Multiply(name="gated")([f, L.Reshape((1, 1, 1), name="gate_shape")(g)])])
    )
    gated = keras.Model(inp, out, name="skip_gate_net")
    gated.add_loss(budget_weight * tf.square(tf.reduce_mean(p) - budget_target))
    return always_on, gated, keras.Model(inp, [out, g])


def forced_accuracy(gated, x, y, on, batch_size: int = 512) -> float:
    """Accuracy of a trained gated network with its gate replaced by ``on`` (one 0/1 value per input).

    Introduced in notebook 06.
    """
    import tf_keras as keras

    on = np.asarray(on, dtype=np.float32)
    if on.shape != (len(x),):
        raise ValueError(f"Give one gate value per input ({len(x)}); got shape {on.shape}.")
    pool1 = keras.Model(gated.input, gated.get_layer("pool1").output).predict(
        x, batch_size=batch_size, verbose=0
    )
    block = gated.get_layer("block_b")(gated.get_layer("block_a")(pool1)).numpy()
    out = pool1 + on[:, None, None, None] * block
    for name in ("relu", "pool2", "flatten", "logits"):
        out = gated.get_layer(name)(out)
    return float(np.mean(np.asarray(out).argmax(1) == np.asarray(y)))


@dataclass
class SkipGateResult:
    """What ``train_skip_gate`` trained and measured on the test set.

    ``gate_on``: per test image, whether the learned gate ran the block. ``table``: one row per
    gate (learned, forced on, forced off, random at the same share) with the share running
    the block, mean MACs and test accuracy. ``block_macs`` of ``always_macs`` (every layer,
    block and gate included) are skipped when the gate is off.

    Introduced in notebook 06.
    """

    gated: object
    always_on: object
    gate_on: np.ndarray
    accuracy: float
    block_macs: int
    always_macs: int
    table: object
    seconds: float
    epochs: int
    train_size: int
    budget_target: float

    @property
    def share_on(self) -> float:
        """The share of test images for which the learned gate ran the block."""
        return float(np.mean(self.gate_on))

    @property
    def gain_over_random(self) -> float:
        """Test accuracy of the learned gate minus a random gate at the same share (fraction)."""
        return float(
            self.table.loc["learned gate", "test accuracy"]
            - self.table.loc["random gate, same share", "test accuracy"]
        )

    def share_by_class(self, labels, classes: int = models.NUM_CLASSES) -> np.ndarray:
        """The share of test images of each true class for which the gate ran the block."""
        labels = np.asarray(labels)
        return np.array([self.gate_on[labels == c].mean() for c in range(classes)])


def train_skip_gate(
    data,
    epochs: int,
    train_size: int,
    batch_size: int = 128,
    budget_weight: float = 1.0,
    budget_target: float = 0.3,
    seed: int = 7,
) -> SkipGateResult:
    """Train the skip-gate network in two phases and measure its gate on the test set.

    ``data`` is a ``data.MNIST`` (or anything with ``x_train``, ``y_train``, ``x_test``,
    ``y_test``); each phase trains ``epochs`` epochs on the first ``train_size`` training
    images, with a progress bar. Then, on the test set: the learned gate's accuracy and share,
    and, for comparison, the same network with the gate forced on, forced off, and replaced
    by a random gate running the block for the same share of images. Returns a ``SkipGateResult``.

    Introduced in notebook 06.
    """
    import pandas as pd

    from .. import env

    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
    if isinstance(train_size, bool) or not isinstance(train_size, (int, np.integer)) or train_size < 1:
        raise ValueError(f"train_size must be a whole number >= 1, got {train_size!r}")
    if not 0 <= budget_target <= 1:
        raise ValueError(f"budget_target is a share of inputs in [0, 1], got {budget_target}")
    env.seed_everything(seed)
    always_on, gated, probe = gated_net(
        tuple(data.x_train.shape[1:]), budget_weight=budget_weight, budget_target=budget_target
    )
    t0 = time.perf_counter()
    for phase, what in ((always_on, "phase 1: block always on"), (gated, "phase 2: gated, with the budget")):
        models.compile_classifier(phase)
        phase.fit(
            data.x_train[:train_size],
            data.y_train[:train_size],
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            callbacks=progress.with_bar([], what),
        )
    seconds = time.perf_counter() - t0
    logits, on = probe.predict(data.x_test, batch_size=512, verbose=0)
    on = on.ravel() > 0.5
    block_macs = int(measure.macs_table(gated).set_index("layer").loc[["block_a", "block_b"], "macs"].sum())
    always_macs = measure.macs(gated)
    accuracy = float(np.mean(logits.argmax(1) == data.y_test))
    share = on.mean()
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "share running the block": [share, 1.0, 0.0, share],
            "mean MACs": [
                always_macs - (1 - share) * block_macs,
                always_macs,
                always_macs - block_macs,
                always_macs - (1 - share) * block_macs,
            ],
            "test accuracy": [
                accuracy,
                forced_accuracy(gated, data.x_test, data.y_test, np.ones(len(on))),
                forced_accuracy(gated, data.x_test, data.y_test, np.zeros(len(on))),
                forced_accuracy(gated, data.x_test, data.y_test, rng.permutation(on).astype(float)),
            ],
        },
        index=["learned gate", "gate forced on", "gate forced off", "random gate, same share"],
    )
    return SkipGateResult(
        gated=gated,
        always_on=always_on,
        gate_on=on,
        accuracy=accuracy,
        block_macs=block_macs,
        always_macs=always_macs,
        table=table,
        seconds=seconds,
        epochs=epochs,
        train_size=train_size,
        budget_target=budget_target,
    )
