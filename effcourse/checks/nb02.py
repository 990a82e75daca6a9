"""Self-checks for the exercises of notebook 02 (pruning)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, fail, passed


def magnitude_prune(fn) -> None:
    """Exercise 02.1: zero the given fraction of smallest-magnitude weights, keep the rest unchanged."""
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(40, 25)).astype(np.float32)
    for sparsity in (0.0, 0.5, 0.9):
        got = call(fn, weights.copy(), sparsity, name="magnitude_prune")
        got = np.asarray(got)
        if got.shape != weights.shape:
            fail(f"return an array of the same shape as the weights {weights.shape}; got {got.shape}.")
        zeros = int(np.sum(got == 0))
        want = int(round(sparsity * weights.size))
        kept = got != 0
        if np.any(got[kept] != weights[kept]):
            fail("the weights you keep must keep their values: multiply by a 0/1 mask, do not rescale.")
        if zeros != want:
            fail(
                f"at sparsity {sparsity} expected exactly {want} zeros out of {weights.size}, got {zeros}. "
                "Rank all the weights by |w| and zero the smallest round(sparsity * size) of them."
            )
        if want and np.abs(weights[~kept]).max() > np.abs(weights[kept]).min() + 1e-7:
            if np.all(weights[~kept] <= np.sort(weights.ravel())[want - 1] + 1e-7):
                fail(
                    "you removed the most negative weights; magnitude pruning ranks by |w|, so a "
                    "large negative weight matters as much as a large positive one."
                )
            fail("some zeroed weight is larger in magnitude than a kept one: rank by np.abs(weights).")
    return passed("magnitude pruning zeroes exactly the smallest |w| and leaves the rest untouched.")


def per_layer_beats_uniform(
    per_layer, model, data, min_overall: float, margin: float, epochs: int = 1, train_size: int | None = None
) -> None:
    """Exercise 02.2: per-layer sparsities with at least ``min_overall`` total sparsity that beat uniform
    pruning at the same total by at least ``margin`` (a fraction: 0.001 = 0.1 points) of validation
    accuracy, both pruned at once and fine-tuned the same way (``epochs`` on the first ``train_size``
    training images)."""
    import dataclasses

    from .. import prune

    if not isinstance(per_layer, dict) or not per_layer:
        fail(
            "per_layer should be a dict {layer name: sparsity}, e.g. {'fc1': 0.95, 'fc2': 0.8, 'logits': 0.5}."
        )
    names = prune.prunable_layers(model)
    missing = [n for n in names if n not in per_layer]
    if missing:
        fail(f"give a sparsity for every prunable layer; missing {missing} (use 0.0 to keep one dense).")
    try:
        overall = prune.overall_sparsity(model, per_layer)
    except (TypeError, ValueError) as err:
        fail(str(err))
    if overall < min_overall - 1e-9:
        fail(
            f"your choice removes {overall:.2%} of the kernel weights; the exercise asks for at least "
            f"{min_overall:.2%}. Prune the largest layer harder: it holds most of the weights."
        )
    if max(per_layer.values()) - min(per_layer.values()) < 1e-9:
        fail("every layer has the same sparsity: that IS uniform pruning. Give each layer its own sparsity.")
    n = len(data.x_train) if train_size is None else int(train_size)
    subset = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])

    def tuned(sparsity, layers):
        pruned = prune.prune_and_finetune(
            model, subset, sparsity, epochs=epochs, per_layer=layers, schedule="constant", desc=desc
        )
        return float(pruned.evaluate(data.x_val, data.y_val, batch_size=512, verbose=0)[1])

    desc = "check: your per-layer sparsities"
    ours = tuned(0.0, per_layer)
    desc = f"check: uniform {overall:.1%}"
    uniform = tuned(overall, None)
    if ours < uniform + margin - 1e-12:
        verdict = (
            "loses to"
            if ours < uniform
            else "ties with"
            if ours - uniform < 1e-12
            else "beats, by too little,"
        )
        fail(
            f"at {overall:.1%} total sparsity, after the same fine-tuning, your per-layer choice reaches "
            f"{ours:.2%} and {verdict} uniform pruning ({uniform:.2%}); the exercise asks for at least "
            f"{100 * margin:.2f} points more. Section 4 shows which allocation wins after fine-tuning: the "
            "big first layer can lose far more than its share, the small output layer far less."
        )
    return passed(
        f"at {overall:.1%} total sparsity, after the same fine-tuning, per-layer {ours:.2%} beats uniform "
        f"{uniform:.2%} by {100 * (ours - uniform):.2f} points (at least {100 * margin:.2f} asked)."
    )


def filters_to_keep(fn) -> None:
    """Exercise 02.3: indices of the k output filters of a Conv2D kernel with the largest L2 norms."""
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(3, 3, 4, 10)).astype(np.float32)
    scale = np.linspace(0.2, 2.0, 10)[rng.permutation(10)]
    kernel *= scale  # filters of clearly different sizes
    norms = np.sqrt((kernel**2).sum(axis=(0, 1, 2)))
    for k in (1, 4, 10):
        got = call(fn, kernel.copy(), k, name="filters_to_keep")
        got = np.sort(np.asarray(got).ravel())
        want = np.sort(np.argsort(-norms)[:k])
        if got.shape != want.shape:
            fail(f"for k={k} return k indices; got {got.size}.")
        if not np.array_equal(got, want):
            wrong_axis = np.sort(np.argsort(-np.sqrt((kernel**2).sum(axis=(0, 1, 3))))[: min(k, 4)])
            if got.size == wrong_axis.size and np.array_equal(got, wrong_axis):
                fail(
                    "you ranked input channels; filters are the LAST axis of a Conv2D kernel "
                    "(h, w, in, out): sum over axes (0, 1, 2)."
                )
            smallest = np.sort(np.argsort(norms)[:k])
            if np.array_equal(got, smallest):
                fail("you kept the smallest filters; keep the k with the LARGEST norms.")
            fail(
                f"for k={k} expected filters {want.tolist()}, got {got.tolist()}. The L2 norm of filter j "
                "is sqrt(sum of kernel[..., j]**2)."
            )
    return passed("the kept filters are the k with the largest L2 norms.")


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
