"""Self-checks for the exercises of notebook 01 (SGD and the loss)."""

from __future__ import annotations

import numpy as np

from . import call, fail, one_pass_line_each, passed


def cross_entropy(fn) -> None:
    """Exercise 01.1: the mean cross-entropy of integer labels under softmax(logits), in TensorFlow ops:
    finite for large logits, a mean over the batch, and differentiable (section 2's SGD step needs it)."""
    import tensorflow as tf

    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    labels = np.array([0, 1, 0])
    probs = tf.nn.softmax(logits).numpy().astype(np.float64)
    expected = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        got = call(fn, labels, variable, name="cross_entropy")
    try:
        value = float(np.asarray(got))
    except (TypeError, ValueError):
        fail("return one number (a scalar tensor): the mean loss over the batch, not one loss per example.")
    if not np.isfinite(value):
        fail(
            "the loss is not finite on logits like 1000: exp(1000) overflows. Subtract the row maximum "
            "before exp, or use tf.reduce_logsumexp (the log-sum-exp trick)."
        )
    if abs(value - 3 * expected) < 1e-3:
        fail("you summed over the batch; the empirical risk is the mean over examples.")
    if abs(value - expected) > 1e-4:
        fail(
            f"on a 3-example batch the loss is {value:.5f}, expected {expected:.5f}. "
            "Use -log softmax(z)_y = -z_y + log sum_k exp(z_k), averaged over the batch."
        )
    grad = tape.gradient(got, variable) if tf.is_tensor(got) else None
    if grad is None:
        fail(
            "TensorFlow cannot differentiate your loss: write it with TensorFlow ops (tf.reduce_logsumexp, "
            "tf.gather, tf.reduce_mean), not NumPy, because section 2's SGD step takes its gradient."
        )
    if np.max(np.abs(grad.numpy() - (probs - np.eye(3)[labels]) / 3)) > 1e-5:
        fail("the loss has the right value but not the right gradient: avoid tf.stop_gradient and rounding.")
    return passed(
        f"cross-entropy on a 3-example batch: {value:.5f} (finite at logits of 1000), with the gradient "
        "(softmax - one-hot) / batch size."
    )


def layer_macs(fn) -> None:
    """Exercise 01.3: multiply-accumulates per sample of a Dense or Conv2D layer, from its shapes."""
    import tf_keras

    from .. import measure

    model = tf_keras.Sequential(
        [
            tf_keras.Input((12, 12, 3)),
            tf_keras.layers.Conv2D(4, 3, name="valid_3x3"),
            tf_keras.layers.Conv2D(5, 3, strides=2, padding="same", name="strided_same"),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(7, name="dense"),
        ]
    )
    expected = dict(zip(*measure.macs_table(model)[["layer", "macs"]].T.values))
    for layer in model.layers:
        if layer.name not in expected:
            continue
        got, want = call(fn, layer, name="layer_macs"), int(expected[layer.name])
        kernel, outputs = int(np.prod(layer.kernel.shape)), int(np.prod(layer.output_shape[1:]))
        if got == want:
            continue
        if got in (kernel + int(np.prod(layer.bias.shape)), want + outputs):
            fail(f"{layer.name}: you counted the biases; a bias is an addition, not a multiply-accumulate.")
        if got == kernel:
            fail(
                f"{layer.name}: {got:,} is the size of the kernel. A convolution applies its whole kernel "
                "once at every output position: multiply by the output's height and width."
            )
        fail(
            f"{layer.name} ({type(layer).__name__}, output {layer.output_shape[1:]}): expected {want:,} "
            f"MACs, got {got!r}. Count the output positions (stride and padding decide them) times the "
            "multiply-accumulates of one output channel's kernel, times the output channels."
        )
    return passed(
        "MACs per sample: one per kernel weight for a Dense layer, times every output position for a "
        "convolution."
    )


def final_loss(losses) -> tuple[float, float]:
    """Mean and standard error of a loss curve's last tenth (at least 10 steps); inf when it diverged."""
    tail = np.asarray(losses, dtype=float)[-max(10, len(losses) // 10) :]
    if not np.all(np.isfinite(tail)) or tail.mean() > 2 * np.log(10):  # above twice chance: diverged
        return float("inf"), 0.0
    return float(tail.mean()), float(tail.std(ddof=1) / np.sqrt(len(tail)))


def learning_rate_choice(choice, curves: dict) -> None:
    """Exercise 01.4: the learning rate predicted for a model the sweep did not use, scored on its curves.

    ``curves`` maps each swept rate to its training losses per step. A choice passes when its
    final loss is the lowest or within noise of it (twice the standard error of the difference,
    at least 5 %): every rate tied with the best is a right answer.
    """
    if choice is None or choice is Ellipsis:
        fail("predicted_lr is not written yet: choose one of the swept rates before running the sweep.")
    if isinstance(choice, (list, tuple, set, dict, np.ndarray)):
        fail("choose one rate, not several: a prediction commits to one answer.")
    try:
        choice = float(choice)
    except (TypeError, ValueError):
        fail(f"predicted_lr should be a number, one of the swept rates; got {choice!r}.")
    finals = {float(r): final_loss(c) for r, c in curves.items()}
    mine = [v for r, v in finals.items() if np.isclose(r, choice, rtol=1e-9, atol=0)]
    if not mine:
        fail(f"choose one of the rates the sweep measures: {', '.join(f'{r:g}' for r in sorted(finals))}.")
    (mine, mine_se), best_rate = mine[0], min(finals, key=lambda r: finals[r][0])
    best, best_se = finals[best_rate]
    if not np.isfinite(best):
        fail("every rate diverged: the curves given to the check are not a real sweep.")
    if not np.isfinite(mine):
        fail(
            f"at eta = {choice:g} the loss diverged (non-finite, or above twice the untrained loss): "
            "the steps overshoot. A rate that is safe for one model can be too large for another."
        )
    if mine - best > max(0.05 * best, 2 * np.hypot(mine_se, best_se)):
        side = "larger" if choice < best_rate else "smaller"
        fail(
            f"at eta = {choice:g} the final loss is {mine:.3f}, clearly above the lowest of the sweep "
            f"(a {side} step would have made more progress in this many steps). Look at the table below "
            "and ask why this model's best rate differs from LeNet-300-100's, or why it does not."
        )
    return passed(
        f"eta = {choice:g} ends at a loss of {mine:.3f}, the lowest of the sweep or within noise of it "
        f"(lowest {best:.3f}, at eta = {best_rate:g})."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
