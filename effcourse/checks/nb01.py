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


def final_loss(losses) -> tuple[float, float]:
    """Mean and standard error of a loss curve's last tenth (at least 10 steps); inf when it diverged."""
    losses = np.asarray(losses, dtype=float)
    tail = losses[-max(10, len(losses) // 10) :]
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
    rates = sorted(float(r) for r in curves)
    matches = [r for r in rates if np.isclose(r, choice, rtol=1e-9, atol=0)]
    if not matches:
        fail(f"choose one of the rates the sweep measures: {', '.join(f'{r:g}' for r in rates)}.")
    finals = {r: final_loss(curves[r]) for r in curves}
    finals = {float(r): v for r, v in finals.items()}
    best_rate = min(finals, key=lambda r: finals[r][0])
    best, best_se = finals[best_rate]
    if not np.isfinite(best):
        fail("every rate diverged: the curves given to the check are not a real sweep.")
    mine, mine_se = finals[matches[0]]
    if not np.isfinite(mine):
        fail(
            f"at eta = {choice:g} the loss diverged (non-finite, or above twice the untrained loss): "
            "the steps overshoot. A rate that is safe for one model can be too large for another."
        )
    tolerance = max(0.05 * best, 2 * np.hypot(mine_se, best_se))
    if mine - best > tolerance:
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
