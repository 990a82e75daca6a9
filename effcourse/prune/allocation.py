"""Allocation rules: how one budget of non-zero weights is shared between layers (notebook 02).

Each rule returns per-layer sparsities {layer: s} for the same overall kernel sparsity, so
that allocations are compared at equal non-zeros: ``uniform_allocation`` (every layer the
same), ``scaled_allocation`` (a reference's kept fractions, e.g. Han et al.'s, scaled to
another compression), ``global_magnitude_allocation`` (one magnitude threshold across all
layers). ``sparsity_for_ratio`` turns "N times fewer non-zero weights" (biases counted, as
``measure.count_nonzero`` counts them) into the overall kernel sparsity the rules take.
"""

from __future__ import annotations

import numpy as np

from ..models import check_model
from .kernels import _check_sparsity, _kernel_of


def _sizes(model) -> dict:
    return {
        layer.name: int(np.prod(_kernel_of(layer).shape))
        for layer in model.layers
        if _kernel_of(layer) is not None
    }


def sparsity_for_ratio(model, ratio: float) -> float:
    """Overall kernel sparsity that leaves at most ``count_params(model) / ratio`` non-zero weights, biases kept, notebook 02.

    The biases (and any other non-kernel weights) stay dense and count as non-zeros, so
    12x fewer non-zeros needs a little more than 1 - 1/12 of the kernel weights removed.
    The budget is rounded down and keeps one weight of slack per layer, because each layer's
    mask rounds its own count of zeros: the pruned model then holds at least ``ratio`` x fewer.

    Introduced in notebook 02.
    """
    from .. import measure

    check_model(model, need_graph=False, what="prune.sparsity_for_ratio")
    ratio = float(ratio)
    sizes = _sizes(model)
    kernels, total = sum(sizes.values()), measure.count_params(model)
    others = total - kernels
    if not np.isfinite(ratio) or ratio <= 1 or total / ratio <= others:
        raise ValueError(
            f"ratio must be > 1 and leave room for the {others:,} non-kernel weights "
            f"(at most {total / max(others, 1):.0f}x for this model), got {ratio}."
        )
    budget = int(np.floor(total / ratio)) - others - len(sizes)
    if budget <= 0:
        raise ValueError(f"ratio {ratio} leaves no kernel weights in this model; choose a smaller ratio.")
    return 1.0 - budget / kernels


def uniform_allocation(model, target: float) -> dict:
    """Every prunable layer at the overall sparsity ``target``: {layer: target}, notebook 02.

    Introduced in notebook 02.
    """
    check_model(model, need_graph=False, what="prune.uniform_allocation")
    target = _check_sparsity(target, "target")
    return dict.fromkeys(_sizes(model), target)


def scaled_allocation(model, reference: dict, target: float) -> dict:
    """``reference``'s per-layer kept fractions scaled by one factor to reach overall sparsity ``target``, notebook 02.

    Keeps the reference's proportions (e.g. Han et al.'s rates, chosen at 12x) at another
    compression: layer i keeps ``min(1, c * (1 - reference[i]))`` of its weights, with c set
    so that the kept weights add up to ``(1 - target)`` of all kernel weights.

    Introduced in notebook 02.
    """
    check_model(model, need_graph=False, what="prune.scaled_allocation")
    target = _check_sparsity(target, "target")
    sizes = _sizes(model)
    missing = sorted(set(sizes) - set(reference))
    if missing:
        raise ValueError(f"reference needs a sparsity for every prunable layer; missing {missing}.")
    kept = {n: 1.0 - _check_sparsity(reference[n], f"sparsity of {n!r}") for n in sizes}
    budget = (1.0 - target) * sum(sizes.values())
    if sum(k > 0 for k in kept.values()) == 0:
        raise ValueError("the reference removes every weight; it has no proportions to scale.")
    lo, hi = 0.0, 1.0 / min(k for k in kept.values() if k > 0)
    for _ in range(200):  # bisection on c: kept weights grow monotonically with c
        c = (lo + hi) / 2
        if sum(min(1.0, c * kept[n]) * sizes[n] for n in sizes) < budget:
            lo = c
        else:
            hi = c
    return {n: 1.0 - min(1.0, hi * kept[n]) for n in sizes}


def global_magnitude_allocation(model, target: float) -> dict:
    """Per-layer sparsities from one magnitude threshold across every kernel, overall sparsity ``target``, notebook 02.

    All kernel weights are ranked together and the smallest ``target`` fraction removed; a
    layer's sparsity is then the share of its weights below that threshold (layers with
    larger weights, often the small ones, keep more). A threshold that would remove every
    weight of a layer (layer collapse: the network is cut in two) is refused with an error.

    Introduced in notebook 02.
    """
    check_model(model, need_graph=False, what="prune.global_magnitude_allocation")
    target = _check_sparsity(target, "target")
    kernels = {n: np.abs(_kernel_of(model.get_layer(n)).numpy()).ravel() for n in _sizes(model)}
    everything = np.concatenate(list(kernels.values()))
    n_zero = int(np.ceil(target * everything.size - 1e-9))  # never below the target
    if n_zero == 0:
        return dict.fromkeys(kernels, 0.0)
    order = np.argsort(everything, kind="stable")
    removed = np.zeros(everything.size, dtype=bool)
    removed[order[:n_zero]] = True
    out, start = {}, 0
    for name, w in kernels.items():
        out[name] = float(removed[start : start + w.size].mean())
        start += w.size
    collapsed = [n for n, s in out.items() if s >= 1.0]
    if collapsed:
        raise ValueError(
            f"one threshold across layers at sparsity {target} removes every weight of {collapsed} "
            "(layer collapse); lower the target or use scaled_allocation / uniform_allocation."
        )
    return out
