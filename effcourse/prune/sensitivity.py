"""Sensitivity and allocation: prune one layer at a time without fine-tuning, then share a sparsity budget (notebook 02)."""

from __future__ import annotations

import numpy as np

from ..models import check_model
from .kernels import _check_sparsity, _kernel_of, prunable_layers


def magnitude_mask(weights, sparsity: float) -> np.ndarray:
    """Boolean keep-mask that zeroes the ``sparsity`` fraction of smallest-magnitude entries (exact count), notebook 02.

    Introduced in notebook 02.
    """
    sparsity = _check_sparsity(sparsity)
    weights = np.asarray(weights)
    n_zero = int(round(sparsity * weights.size))
    keep = np.ones(weights.size, dtype=bool)
    if n_zero:
        order = np.argsort(np.abs(weights).ravel(), kind="stable")
        keep[order[:n_zero]] = False
    return keep.reshape(weights.shape)


def sensitivity_scan(model, x, y, sparsities, layers=None, desc: str | None = None):
    """Accuracy when one layer at a time is magnitude-pruned to each sparsity, no fine-tuning (DataFrame), notebook 02.

    Columns: layer, sparsity, accuracy, params (kernel size). The other layers stay dense;
    the caller's model is not changed (a clone is pruned and restored between points).
    Sparsity 0 rows give the dense accuracy. A progress bar (caption ``desc``, default
    "sensitivity scan of <model>") counts the evaluated (layer, sparsity) points.

    Introduced in notebook 02.
    """
    import pandas as pd

    from .. import measure, models, progress

    check_model(model, what="prune.sensitivity_scan")
    names = prunable_layers(model)
    layers = list(layers) if layers is not None else names
    unknown = sorted(set(layers) - set(names))
    if unknown:
        raise ValueError(f"layers {unknown} are not prunable layers of this model; choose from {names}.")
    sparsities = sorted({0.0, *(_check_sparsity(s) for s in sparsities)})
    work = models.clone(model, compile_like=False)
    rows = []
    dense_acc = measure.accuracy(work, x, y)
    bar = progress.bar(
        total=len(layers) * sum(s > 0 for s in sparsities),
        unit="point",
        desc=desc or f"sensitivity scan of {model.name}",
    )
    for name in layers:
        kernel = _kernel_of(work.get_layer(name))
        original = kernel.numpy()
        for s in sparsities:
            if s == 0.0:
                acc = dense_acc
            else:
                kernel.assign(original * magnitude_mask(original, s))
                acc = measure.accuracy(work, x, y)
                bar.update(1)
            rows.append({"layer": name, "sparsity": s, "accuracy": acc, "params": int(original.size)})
        kernel.assign(original)
    bar.close()
    return pd.DataFrame(rows, columns=["layer", "sparsity", "accuracy", "params"])


def accuracy_without_finetuning(model, per_layer: dict, x, y) -> float:
    """Accuracy on (x, y) of a copy of ``model`` magnitude-pruned to ``per_layer`` sparsities, no training, notebook 02.

    The cheap proxy a sensitivity scan relies on; the caller's model is not changed.

    Introduced in notebook 02.
    """
    from .. import measure, models

    check_model(model, what="prune.accuracy_without_finetuning")
    work = models.clone(model, compile_like=False)
    names = prunable_layers(model)
    for name, s in per_layer.items():
        if name not in names:
            raise ValueError(f"{name!r} is not a prunable layer of this model; choose from {names}.")
        kernel = _kernel_of(work.get_layer(name))
        kernel.assign(kernel.numpy() * magnitude_mask(kernel.numpy(), s))
    return measure.accuracy(work, x, y)


def overall_sparsity(model, per_layer: dict) -> float:
    """Fraction of all Dense/Conv kernel weights removed by per-layer sparsities {layer: s} (others 0), notebook 02.

    The uniform sparsity with the same number of kept kernel weights.

    Introduced in notebook 02.
    """
    check_model(model, need_graph=False, what="prune.overall_sparsity")
    sizes = {
        layer.name: int(np.prod(_kernel_of(layer).shape))
        for layer in model.layers
        if _kernel_of(layer) is not None
    }
    unknown = sorted(set(per_layer) - set(sizes))
    if unknown:
        raise ValueError(f"{unknown} are not Dense/Conv layers of this model; layers: {sorted(sizes)}.")
    removed = sum(_check_sparsity(s, f"sparsity of {k!r}") * sizes[k] for k, s in per_layer.items())
    return removed / sum(sizes.values())


def allocate_sparsity(scan, model, target: float, max_sparsity: float | None = None) -> dict:
    """Per-layer sparsities from a ``sensitivity_scan`` whose overall sparsity reaches ``target``, notebook 02.

    Greedy: starting from dense, repeatedly move the layer whose next scanned sparsity costs
    the least accuracy per removed weight, until ``overall_sparsity`` >= ``target``. Big,
    insensitive layers end up pruned hardest (Han et al. 2015 chose by hand the same way).

    Introduced in notebook 02.
    """
    target = _check_sparsity(target, "target")
    grid = {name: grp.sort_values("sparsity") for name, grp in scan.groupby("layer")}
    sizes = {name: int(grp["params"].iloc[0]) for name, grp in grid.items()}
    total = sum(
        int(np.prod(_kernel_of(layer).shape)) for layer in model.layers if _kernel_of(layer) is not None
    )
    pos = {name: 0 for name in grid}
    choice = {name: 0.0 for name in grid}

    def removed():
        return sum(choice[n] * sizes[n] for n in choice)

    while removed() < target * total - 1e-9:
        best, best_cost = None, None
        for name, grp in grid.items():
            if pos[name] + 1 >= len(grp):
                continue
            nxt = grp.iloc[pos[name] + 1]
            if max_sparsity is not None and nxt["sparsity"] > max_sparsity:
                continue
            cur = grp.iloc[pos[name]]
            gained = (nxt["sparsity"] - cur["sparsity"]) * sizes[name]
            cost = max(0.0, cur["accuracy"] - nxt["accuracy"]) / gained
            if best_cost is None or cost < best_cost - 1e-12:
                best, best_cost = name, cost
        if best is None:
            raise ValueError(
                f"the scan's sparsities cannot reach an overall sparsity of {target}; "
                "scan higher sparsities (or more layers), or lower the target."
            )
        pos[best] += 1
        choice[best] = float(grid[best].iloc[pos[best]]["sparsity"])
    return choice
