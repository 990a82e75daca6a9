"""Magnitude pruning with tfmot: ``prune_low_magnitude`` wrappers, callbacks, strip (notebook 02).

The kernels keep their shape: the zeros shrink the *compressed* file, not the work on dense
kernels. Notebook 02 shows each step in plain tfmot calls first; these are the helpers its
sweeps and notebooks 04, 08 and 09 reuse.
"""

from __future__ import annotations

import numpy as np

from ..models import check_model
from .kernels import _check_sparsity, _kernel_of, _tfmot_sparsity, prunable_layers


def _per_layer_sparsities(model, sparsity, per_layer) -> dict:
    sparsity, names, per_layer = _check_sparsity(sparsity), prunable_layers(model), per_layer or {}
    unknown = sorted(set(per_layer) - set(names))
    if unknown:
        raise ValueError(f"per_layer names {unknown}, not prunable layers of this model: {names}.")
    return {n: _check_sparsity(per_layer.get(n, sparsity), f"sparsity of layer {n!r}") for n in names}


def wrap(
    model,
    sparsity: float,
    schedule: str = "polynomial",
    begin_step: int = 0,
    end_step: int = 1000,
    per_layer: dict | None = None,
    m_by_n=None,
    frequency: int = 100,
    initial_sparsity: dict | None = None,
):
    """Wrap a copy of ``model`` for magnitude pruning with tfmot (``prune_low_magnitude``).

    Every Dense/Conv layer gets a schedule (``"polynomial"``: tfmot's ``PolynomialDecay`` from
    0, or from ``initial_sparsity[layer]``, to ``sparsity``; ``"constant"``: its
    ``ConstantSparsity``), masks recomputed every ``frequency`` steps from ``begin_step`` to
    ``end_step``; ``per_layer`` ({layer: sparsity}) overrides ``sparsity`` and a layer given 0
    stays dense. ``m_by_n=(2, 4)`` asks for m zeros in every n consecutive input weights instead
    (layers whose input channels n does not divide stay dense). The caller's model is cloned
    first and never changed. Train with ``callbacks()``, then ``strip``.

    Introduced in notebook 02.
    """
    check_model(model, what="prune.wrap")
    if any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.layers):
        raise ValueError("this model already holds pruning wrappers; pass the original model.")
    if schedule not in ("polynomial", "constant"):
        raise ValueError(f"schedule must be 'polynomial' or 'constant', got {schedule!r}.")
    targets, start = _per_layer_sparsities(model, sparsity, per_layer), initial_sparsity or {}
    sp = _tfmot_sparsity()
    import tf_keras

    from .. import models

    def wrap_layer(layer):
        target = targets.get(layer.name, 0.0)
        if m_by_n is not None and layer.name in targets:
            if _kernel_of(layer).shape[-2] % m_by_n[1]:
                return layer  # the groups run along the input channels; this layer cannot hold them
            unused = sp.ConstantSparsity(0.5, 0, -1, frequency)  # tfmot ignores it with m_by_n
            return sp.prune_low_magnitude(layer, pruning_schedule=unused, sparsity_m_by_n=tuple(m_by_n))
        if target == 0:
            return layer
        if schedule == "constant":
            sched = sp.ConstantSparsity(target, begin_step, end_step, frequency)
        else:
            begin = min(target, start.get(layer.name, 0.0))
            sched = sp.PolynomialDecay(begin, target, begin_step, end_step, frequency=frequency)
        return sp.prune_low_magnitude(layer, pruning_schedule=sched)

    base = models.clone(model, compile_like=False)  # tfmot shares layers: never wrap the caller's
    return tf_keras.models.clone_model(base, clone_function=wrap_layer)


def pruning_summaries(log_dir, every: int | None = None):
    """A TensorBoard callback writing each pruned layer's sparsity and threshold under ``log_dir``.

    tfmot's ``PruningSummaries`` logs at the start of each epoch; with ``every`` this one also
    logs every ``every`` training steps and when training ends, so a schedule shows step by step.

    Introduced in notebook 02.
    """
    sp = _tfmot_sparsity()
    if every is not None and every < 1:
        raise ValueError(f"every (steps between summaries) must be >= 1, got {every}.")

    class PruningSummaries(sp.PruningSummaries):
        def _log_pruning_now(self):
            sp.PruningSummaries.on_epoch_begin(self, 0, None)  # logs=None: pruning metrics only

        def _implements_train_batch_hooks(self):  # Keras skips batch hooks unless asked
            return bool(every) or super()._implements_train_batch_hooks()

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            self._steps_seen = getattr(self, "_steps_seen", 0) + 1
            if every and self._steps_seen % every == 0:
                self._log_pruning_now()

        def on_train_end(self, logs=None):
            self._log_pruning_now()
            super().on_train_end(logs)

    return PruningSummaries(log_dir=str(log_dir))


def callbacks(log_dir=None, every: int | None = None) -> list:
    """The callbacks pruning needs: ``UpdatePruningStep`` (+ ``pruning_summaries`` to ``log_dir``).

    Introduced in notebook 02.
    """
    out = [_tfmot_sparsity().UpdatePruningStep()]
    return out if log_dir is None else out + [pruning_summaries(log_dir, every)]


def strip(model):
    """Remove the pruning wrappers (tfmot's ``strip_pruning``): a plain model whose kernels hold the zeros.

    Introduced in notebook 02.
    """
    check_model(model, what="prune.strip")
    return _tfmot_sparsity().strip_pruning(model)


def kernel_sparsity(model) -> dict:
    """Fraction of exactly-zero kernel weights per Dense/Conv layer, {layer name: fraction}.

    Works on stripped and on wrapped models (it reads the kernel inside a wrapper); biases are
    not counted (``measure.count_nonzero`` counts everything).

    Introduced in notebook 02.
    """
    check_model(model, need_graph=False, what="prune.kernel_sparsity")
    kernels = {layer.name: _kernel_of(layer) for layer in model.layers}
    return {n: float(np.mean(k.numpy() == 0)) for n, k in kernels.items() if k is not None}
