"""Han et al. 2015's iterative pruning: prune, retrain, repeat, weights carried from stage to stage (notebook 02).

Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural
Networks" (NIPS 2015): prune the smallest weights, retrain the survivors with the pruned
ones held at zero, and repeat with a higher threshold; retrain with L2 regularisation, and
lower each dropout rate in proportion to the square root of the connections kept (their
Eq. 2). Here each stage is one tfmot run whose ``PolynomialDecay`` raises every layer from
the previous stage's sparsity to this stage's over the first half of the stage's steps and
holds it for the second half (retraining), the weights are carried from stage to stage, and L2 becomes
AdamW's decoupled weight decay (for Adam, an L2 term in the loss is rescaled by the
adaptive step; decoupled decay is what shrinks weights the way L2 does under SGD,
Loshchilov & Hutter 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..models import check_model
from ..validate import mnist_like, positive_int
from .kernels import _kernel_of
from .magnitude import _per_layer_sparsities, kernel_sparsity


def han_dropout_rate(rate: float, kept_fraction: float) -> float:
    """Han et al.'s dropout adjustment (Eq. 2): ``rate * sqrt(kept_fraction)`` after pruning, notebook 02.

    A pruned layer has fewer connections, each already less likely to co-adapt, so it needs
    less dropout: D_r = D_o * sqrt(C_r / C_o), C the connections kept / originally there.

    Introduced in notebook 02.
    """
    rate, kept = float(rate), float(kept_fraction)
    if not 0.0 <= rate < 1.0 or not 0.0 <= kept <= 1.0:
        raise ValueError(f"need a dropout rate in [0, 1) and a kept fraction in [0, 1], got {rate}, {kept}.")
    return rate * math.sqrt(kept)


def _kernel_sizes(model) -> dict:
    return {
        layer.name: int(np.prod(_kernel_of(layer).shape))
        for layer in model.layers
        if _kernel_of(layer) is not None
    }


@dataclass
class IterativeResult:
    """What ``iterative_prune`` returns: the final pruned ``model`` and one ``stages`` row per stage.

    ``stages`` (a DataFrame): stage, epochs, the target and the measured kernel sparsity of
    every pruned layer (zeros counted in the stripped kernels), the overall kernel sparsity,
    the non-zero weights and validation accuracy after the stage's retraining (and the test
    accuracy when ``iterative_prune`` was given ``report_on``).

    Introduced in notebook 02.
    """

    model: object
    stages: object


def stage_targets(final: dict, stages) -> list[dict]:
    """The per-layer sparsity of every stage: ``final[layer] * fraction`` for each fraction in ``stages``, notebook 02.

    ``stages`` are increasing fractions of the final sparsities, the last one 1.0
    (e.g. ``(0.5, 0.75, 0.9, 1.0)``): every stage prunes a little more than the one before.

    Introduced in notebook 02.
    """
    fractions = [float(f) for f in stages]
    if (
        not fractions
        or any(not 0 < f <= 1 for f in fractions)
        or any(b <= a for a, b in zip(fractions, fractions[1:]))
    ):
        raise ValueError(f"stages must be increasing fractions in (0, 1], got {tuple(stages)}.")
    if abs(fractions[-1] - 1.0) > 1e-12:
        raise ValueError(f"the last stage must be 1.0 (the final sparsity itself), got {fractions[-1]}.")
    return [{name: s * f for name, s in final.items()} for f in fractions]


def iterative_prune(
    model,
    data,
    sparsity: float = 0.0,
    epochs_per_stage=1,
    stages=(0.5, 0.75, 0.9, 1.0),
    per_layer: dict | None = None,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    desc: str | None = None,
    report_on=None,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.5,
) -> IterativeResult:
    """Han et al. 2015's recipe: prune, retrain, repeat, each stage pruning more, weights carried, notebook 02.

    Stage k raises every layer from stage k-1's sparsity to ``stage_targets(final, stages)[k]``
    (``final`` is ``sparsity`` for every Dense/Conv layer, ``per_layer`` overriding named
    layers) with a tfmot ``PolynomialDecay`` over the first half of its steps, then retrains
    at that sparsity; ``epochs_per_stage`` is one count for every stage or one per stage
    (the last stage usually gets the most). Each stage trains with AdamW (``weight_decay`` as
    Han's L2; the course's cosine-decayed rate, restarted each stage), is stripped, and hands
    its weights to the next stage; weights pruned once stay zero (they are the smallest when the next mask is chosen).
    Dropout layers get Han's lower rate (``han_dropout_rate``) from the kept fraction of the
    next pruned layer. The input model is never changed. ``report_on=(x, y)`` adds a column
    "test accuracy" with every stage's accuracy on those images (for reporting only: nothing
    is chosen by it). ``teacher`` (with ``temperature`` and ``alpha``) makes every stage's
    retraining distil from it (``prune_and_finetune``): with the dense model as teacher, the
    pruned copy learns its own former outputs, not only the labels.

    Introduced in notebook 02.
    """
    import pandas as pd

    from .. import measure, progress
    from .training import prune_and_finetune

    check_model(model, what="prune.iterative_prune")
    mnist_like(data, "prune.iterative_prune")
    final = _per_layer_sparsities(model, sparsity, per_layer)
    plan = stage_targets(final, stages)
    if isinstance(epochs_per_stage, (list, tuple)):
        if len(epochs_per_stage) != len(plan):
            raise ValueError(f"give one epoch count per stage ({len(plan)}), got {tuple(epochs_per_stage)}.")
        epochs = [positive_int(e, "epochs of a stage") for e in epochs_per_stage]
    else:
        epochs = [positive_int(epochs_per_stage, "epochs_per_stage")] * len(plan)
    if report_on is not None and (len(report_on) != 2 or len(report_on[0]) != len(report_on[1])):
        raise ValueError(
            "report_on must be a pair (images, labels) of equal length, e.g. (data.x_test, data.y_test)."
        )
    sizes = _kernel_sizes(model)
    rows, current, previous = [], model, {}
    bar = progress.bar(
        total=len(plan), unit="stage", desc=desc or f"prune {model.name} in {len(plan)} stages"
    )
    for k, target in enumerate(plan, start=1):
        dropout = _adjusted_dropout(model, target)
        with progress.transient():  # the stage bar above stays; each stage's training bar does not
            current = prune_and_finetune(
                current,
                data,
                0.0,
                epochs=epochs[k - 1],
                batch_size=batch_size,
                per_layer=target,
                schedule="polynomial",
                initial_sparsity=previous,
                learning_rate=learning_rate,
                weight_decay=weight_decay,
                seed=seed + k,
                dropout_rates=dropout,
                teacher=teacher,
                temperature=temperature,
                alpha=alpha,
                desc=f"stage {k}/{len(plan)}: retrain at {_overall(sizes, target):.1%}",
            )
        previous = target
        got = kernel_sparsity(current)
        row = {"stage": k, "epochs": epochs[k - 1]}
        for name in final:
            row[f"{name} target"] = target[name]
            row[f"{name} sparsity"] = got[name]
        kept = sum(round((1 - got[n]) * sizes[n]) for n in sizes)
        row.update(
            {
                "overall target": _overall(sizes, target),
                "overall sparsity": 1 - kept / sum(sizes.values()),
                "non-zero weights": measure.count_nonzero(current),
                "val accuracy": measure.accuracy(current, data.x_val, data.y_val),
            }
        )
        if report_on is not None:
            row["test accuracy"] = measure.accuracy(current, *report_on)
        rows.append(row)
        bar.update(1)
    bar.close()
    return IterativeResult(model=current, stages=pd.DataFrame(rows))


def _overall(sizes: dict, per_layer: dict) -> float:
    """Share of all kernel weights removed by ``per_layer`` sparsities, given kernel ``sizes`` {layer: weights}."""
    return sum(per_layer.get(n, 0.0) * s for n, s in sizes.items()) / sum(sizes.values())


def _adjusted_dropout(model, target: dict) -> dict:
    """{dropout layer: Han's rate} for every Dropout layer followed by a pruned layer."""
    import tf_keras

    out, pending = {}, []
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.Dropout):
            pending.append(layer)
        elif _kernel_of(layer) is not None:
            for drop in pending:
                out[drop.name] = han_dropout_rate(drop.rate, 1.0 - target.get(layer.name, 0.0))
            pending = []
    return out
