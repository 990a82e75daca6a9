"""Self-checks for the exercises of notebook 01 (SGD and the loss)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, close, fail, passed


def softmax_cross_entropy(fn) -> None:
    """Exercise 01.1: mean cross-entropy from logits and integer labels, numerically stable."""
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    labels = np.array([0, 1, 0])
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -logp[np.arange(3), labels].mean()
    got = call(fn, logits, labels, name="cross_entropy")
    got = float(np.asarray(got))
    if not np.isfinite(got):
        fail(
            "the loss is not finite on logits like 1000: subtract the row maximum before exp "
            "(log-sum-exp trick)."
        )
    if abs(got - expected) > 1e-4 and abs(got - expected * 3) < 1e-3:
        fail("you summed over the batch; the loss is the mean over examples.")
    return close(
        got,
        expected,
        "cross-entropy on a 3-example batch",
        atol=1e-4,
        hint="Use -log softmax(z)_y = -z_y + log sum_k exp(z_k), averaged over the batch.",
    )


def sgd_update(fn) -> None:
    """Exercise 01.2: the SGD update w - eta * g for a list of arrays."""
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(3, 2)), rng.normal(size=(2,))]
    grads = [rng.normal(size=(3, 2)), rng.normal(size=(2,))]
    eta = 0.1
    got = call(fn, [w.copy() for w in weights], grads, eta, name="sgd_update")
    if got is None or len(got) != 2:
        fail("return the list of updated arrays, one per weight array.")
    for w, g, new in zip(weights, grads, got):
        if np.allclose(new, w + eta * g):
            fail("you moved along the gradient; descent moves against it: w - eta * g.")
    for i, (w, g, new) in enumerate(zip(weights, grads, got)):
        new = np.asarray(new, dtype=float)
        if new.shape != w.shape:
            fail(f"updated weight array {i} has shape {new.shape}; it should keep its shape {w.shape}.")
        off = float(np.max(np.abs(new - (w - eta * g))))
        if not np.isfinite(off) or off > 1e-6:
            fail(
                f"updated weight array {i} is off by {off:.3g}: each array moves by the learning "
                "rate times its own gradient, nothing else."
            )
    return passed("the SGD update is w <- w - eta * grad for every array.")


def macs_dense(fn) -> None:
    """Exercise 01.3: MACs of an MLP given its layer widths."""
    cases = {(784, 300, 100, 10): 784 * 300 + 300 * 100 + 100 * 10, (4, 3): 12, (10, 5, 2): 60}
    for widths, expected in cases.items():
        got = call(fn, list(widths), name="mlp_macs")
        if got != expected:
            fail(
                f"for widths {widths} expected {expected} MACs, got {got}. A Dense layer from "
                "n_in to n_out does n_in * n_out multiply-accumulates per sample; biases are "
                "additions only and are not counted."
            )
    return passed("MACs of an MLP = sum over layers of n_in * n_out.")


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
