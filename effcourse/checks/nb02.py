"""Self-checks for the exercises of notebook 02 (pruning)."""

from __future__ import annotations

import numpy as np

from . import one_pass_line_each, call, fail, passed


def magnitude_mask(fn) -> None:
    """Exercise 02.1: the keep-mask of magnitude pruning: False for the ``round(sparsity * size)`` entries of
    smallest |w|, True for every other entry."""
    from .. import prune

    rng = np.random.default_rng(2)
    weights = rng.normal(size=(40, 25)).astype(np.float32)
    for sparsity in (0.0, 0.5, 0.9, 0.37):
        got = np.asarray(call(fn, weights.copy(), sparsity, name="magnitude_mask"))
        if got.shape != weights.shape:
            fail(f"return a mask of the same shape as the weights {weights.shape}; got {got.shape}.")
        if got.dtype != bool and not np.all(np.isin(got, (0, 1))):
            fail(
                "return the mask (True where a weight is kept, False where it is pruned), not the pruned "
                "weights: the notebook multiplies the kernel by it."
            )
        kept = got.astype(bool)
        want = int(round(sparsity * weights.size))
        if int(np.sum(~kept)) != want:
            fail(
                f"at sparsity {sparsity} expected exactly {want} pruned entries out of {weights.size}, got "
                f"{int(np.sum(~kept))}. Rank all the weights by |w| and prune the smallest round(sparsity * size)."
            )
        if not np.array_equal(kept, prune.magnitude_mask(weights, sparsity)):
            if want and np.all(weights[~kept] <= np.sort(weights.ravel())[want - 1] + 1e-7):
                fail(
                    "you pruned the most negative weights; magnitude pruning ranks by |w|, so a large "
                    "negative weight matters as much as a large positive one."
                )
            if want and np.abs(weights[~kept]).min() >= np.abs(weights[kept]).max() - 1e-7:
                fail("you pruned the LARGEST weights; keep the large |w| and prune the small ones.")
            fail("some pruned weight is larger in magnitude than a kept one: rank by np.abs(weights).")
    return passed("the mask prunes exactly the smallest |w| and keeps every other weight.")


def _global_reference(kernels: dict, target: float) -> dict:
    everything = np.concatenate([np.abs(w).ravel() for w in kernels.values()])
    threshold_count = int(np.ceil(target * everything.size - 1e-9))
    removed = np.zeros(everything.size, dtype=bool)
    removed[np.argsort(everything, kind="stable")[:threshold_count]] = True
    out, start = {}, 0
    for name, w in kernels.items():
        out[name] = float(removed[start : start + w.size].mean())
        start += w.size
    return out


def global_allocation(fn) -> None:
    """Exercise 02.2: per-layer sparsities from one magnitude threshold across every kernel, removing at
    least the fraction ``target`` of all kernel weights."""
    rng = np.random.default_rng(4)
    kernels = {  # a big layer of small weights, a middle one, a small layer of large weights
        "big": rng.normal(0, 0.02, size=(200, 60)).astype(np.float32),
        "middle": rng.normal(0, 0.05, size=(60, 30)).astype(np.float32),
        "small": rng.normal(0, 0.3, size=(30, 10)).astype(np.float32),
    }
    sizes = {n: w.size for n, w in kernels.items()}
    for target in (0.5, 0.9, 0.975):
        got = call(fn, {n: w.copy() for n, w in kernels.items()}, target, name="global_allocation")
        if not isinstance(got, dict) or sorted(got) != sorted(kernels):
            fail("return a dict {layer name: sparsity} with one entry per kernel you were given.")
        got = {n: float(v) for n, v in got.items()}
        want = _global_reference(kernels, target)
        removed = sum(got[n] * sizes[n] for n in sizes) / sum(sizes.values())
        if all(abs(got[n] - target) < 1e-6 for n in got):
            fail(
                "every layer has the target sparsity: that is uniform pruning. Rank ALL the weights together."
            )
        if all(abs(got[n] - (1 - want[n])) < 1e-6 for n in got):
            fail("you returned the kept fraction of each layer; return its sparsity (the fraction removed).")
        if removed < target - 1e-9:
            fail(
                f"at target {target} your sparsities remove {removed:.4f} of all kernel weights, less than "
                "asked: round the number of weights to remove up, never down."
            )
        off = max(abs(got[n] - want[n]) * sizes[n] for n in sizes)  # in weights
        if off > 1.0:
            fail(
                f"at target {target} a layer's sparsity is off by {off:.0f} weights. Put every kernel's |w| "
                "in one array, remove its smallest ceil(target * total), and give each layer the share of "
                "its own weights that were removed."
            )
    return passed(
        "one threshold across layers: the small layer of large weights keeps the most, the big layer of "
        "small weights loses the most."
    )


def filters_to_keep(fn) -> None:
    """Exercise 02.3: indices of the k output channels (last axis) of a Conv2D or Dense kernel with the
    largest L2 norms."""
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(3, 3, 4, 10)).astype(np.float32)
    kernel *= np.linspace(0.2, 2.0, 10)[rng.permutation(10)]  # filters of clearly different sizes
    dense = rng.normal(size=(12, 7)).astype(np.float32) * np.linspace(0.3, 3.0, 7)[rng.permutation(7)]
    for w, k in ((kernel, 1), (kernel, 4), (kernel, 10), (dense, 3)):
        norms = np.sqrt((w.reshape(-1, w.shape[-1]) ** 2).sum(axis=0))
        got = call(fn, w.copy(), k, name="filters_to_keep")
        got = np.sort(np.asarray(got).ravel())
        want = np.sort(np.argsort(-norms)[:k])
        if got.shape != want.shape:
            fail(f"for k={k} return k indices; got {got.size}.")
        if np.array_equal(got, want):
            continue
        inputs = np.sqrt((np.moveaxis(w, -2, -1).reshape(-1, w.shape[-2]) ** 2).sum(axis=0))
        if got.size <= inputs.size and np.array_equal(got, np.sort(np.argsort(-inputs)[: got.size])):
            fail(
                "you ranked input channels; the output channels are the LAST axis of the kernel "
                "(Conv2D: (h, w, in, out); Dense: (in, out)): take the norm over every other axis."
            )
        if np.array_equal(got, np.sort(np.argsort(norms)[:k])):
            fail("you kept the smallest channels; keep the k with the LARGEST norms.")
        fail(
            f"for a kernel of shape {w.shape} and k={k} expected channels {want.tolist()}, got "
            f"{got.tolist()}. The L2 norm of channel j is sqrt(sum of kernel[..., j]**2)."
        )
    return passed("the kept channels are the k with the largest L2 norms, for Conv2D and Dense kernels.")


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
