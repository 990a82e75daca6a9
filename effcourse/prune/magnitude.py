"""Magnitude pruning with tfmot: schedules, ``prune_low_magnitude`` wrappers, callbacks, strip (notebook 02).

The kernels keep their shape: the zeros shrink the *compressed* file, not the work on dense
kernels. Notebook 02 shows each step in plain tfmot calls first; these are the helpers its
sweeps and notebooks 04, 08 and 09 reuse.
"""

from __future__ import annotations

import numpy as np

from ..models import check_model
from ..validate import positive_int
from .kernels import _check_sparsity, _kernel_of, _tfmot_sparsity, prunable_layers

SCHEDULES = ("polynomial", "constant")


def _is_wrapped(model) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    return any(isinstance(layer, PruneLowMagnitude) for layer in model.layers)


def _per_layer_sparsities(model, sparsity, per_layer) -> dict:
    sparsity = _check_sparsity(sparsity)
    names = prunable_layers(model)
    per_layer = dict(per_layer or {})
    unknown = sorted(set(per_layer) - set(names))
    if unknown:
        raise ValueError(
            f"per_layer names layers that are not prunable layers of this model: "
            f"{unknown}. Prunable layers: {names}."
        )
    return {
        name: _check_sparsity(per_layer.get(name, sparsity), f"sparsity of layer {name!r}") for name in names
    }


def _check_m_by_n(m_by_n):
    if m_by_n is None:
        return None
    try:
        m, n = (int(v) for v in m_by_n)
    except (TypeError, ValueError) as err:
        raise TypeError(f"m_by_n must be a pair (m, n) such as (2, 4), got {m_by_n!r}") from err
    if not 0 < m < n:
        raise ValueError(f"m_by_n=(m, n) needs 0 < m < n (m zeros in every n weights), got {m_by_n}.")
    return (m, n)


def _in_channels(layer) -> int:
    return int(_kernel_of(layer).shape[-2])


def make_schedule(
    sparsity: float,
    schedule: str = "polynomial",
    begin_step: int = 0,
    end_step: int = 1000,
    frequency: int = 100,
    initial_sparsity: float = 0.0,
):
    """A tfmot pruning schedule, ``PolynomialDecay`` from ``initial_sparsity`` or ``ConstantSparsity``, notebook 02.

    Masks are recomputed every ``frequency`` steps from
    ``begin_step`` to ``end_step``; ``polynomial`` raises the sparsity gradually
    (s_t = s_f + (s_i - s_f)(1 - t/T)^3, Zhu & Gupta 2017), ``constant`` prunes to the
    target at once and keeps re-selecting the smallest weights.

    Introduced in notebook 02.
    """
    sp = _tfmot_sparsity()
    sparsity = _check_sparsity(sparsity)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES} or a tfmot PruningSchedule, got {schedule!r}.")
    begin_step, end_step = positive_int(begin_step, "begin_step", minimum=0), int(end_step)
    frequency = positive_int(frequency, "frequency (steps between mask updates)")
    if end_step < begin_step and not (schedule == "constant" and end_step == -1):
        raise ValueError(f"end_step ({end_step}) must be >= begin_step ({begin_step}).")
    if schedule == "constant":
        return sp.ConstantSparsity(sparsity, begin_step=begin_step, end_step=end_step, frequency=frequency)
    if end_step == begin_step:
        raise ValueError("a polynomial schedule needs end_step > begin_step to ramp the sparsity up.")
    return sp.PolynomialDecay(
        initial_sparsity=_check_sparsity(initial_sparsity, "initial_sparsity"),
        final_sparsity=sparsity,
        begin_step=begin_step,
        end_step=end_step,
        frequency=frequency,
    )


def wrap(
    model,
    sparsity: float,
    schedule="polynomial",
    begin_step: int = 0,
    end_step: int = 1000,
    per_layer: dict | None = None,
    m_by_n=None,
    frequency: int = 100,
    initial_sparsity: dict | None = None,
):
    """Wrap a copy of ``model`` for magnitude pruning with tfmot (``prune_low_magnitude``), notebook 02.

    Every Dense/Conv layer is wrapped with a schedule towards ``sparsity``; ``per_layer``
    ({layer name: sparsity}) overrides it for named layers, and a layer given 0 is left
    unwrapped (dense). ``schedule`` is ``"polynomial"``, ``"constant"`` or a tfmot
    ``PruningSchedule`` (then used for every layer). ``m_by_n=(2, 4)`` asks for structured
    sparsity instead (m zeros in every n consecutive input weights; the mask is chosen once,
    at the first step); layers whose input channels are not a multiple of n stay dense.

    The caller's model is cloned first and never changed. Train the result with the
    ``tfmot.sparsity.keras.UpdatePruningStep()`` callback (``callbacks()`` gives it), then
    ``strip`` it. ``initial_sparsity`` ({layer: s}) starts a named layer's polynomial schedule
    there instead of at 0 (a later stage of ``iterative_prune``, whose zeros are already in place).

    Introduced in notebook 02.
    """
    check_model(model, what="prune.wrap")
    if _is_wrapped(model):
        raise ValueError(
            "this model already holds pruning wrappers; pass the original model, or prune.strip(model) first."
        )
    targets = _per_layer_sparsities(model, sparsity, per_layer)
    m_by_n = _check_m_by_n(m_by_n)
    if not isinstance(schedule, str) and not hasattr(schedule, "get_config"):
        raise TypeError(
            f"schedule must be 'polynomial', 'constant' or a tfmot PruningSchedule, "
            f"got {type(schedule).__name__}."
        )
    sp = _tfmot_sparsity()
    import tf_keras

    from .. import models

    base = models.clone(model, compile_like=False)  # tfmot shares layers: never wrap the caller's

    def wrap_layer(layer):
        if layer.name not in targets:
            return layer
        if m_by_n is not None:
            if _in_channels(layer) % m_by_n[1]:
                return layer  # 2:4 groups run along the input channels; this layer cannot hold them
            sched = make_schedule(0.5, "constant", 0, -1, frequency)  # unused by tfmot with m_by_n
            return sp.prune_low_magnitude(layer, pruning_schedule=sched, sparsity_m_by_n=m_by_n)
        target = targets[layer.name]
        if target == 0:
            return layer
        sched = (
            schedule
            if not isinstance(schedule, str)
            else make_schedule(
                target,
                schedule,
                begin_step,
                end_step,
                frequency,
                initial_sparsity=min(target, (initial_sparsity or {}).get(layer.name, 0.0)),
            )
        )
        return sp.prune_low_magnitude(layer, pruning_schedule=sched)

    wrapped = tf_keras.models.clone_model(base, clone_function=wrap_layer)
    return wrapped


def _summaries_class():
    sp = _tfmot_sparsity()

    class PruningSummaries(sp.PruningSummaries):
        """tfmot's ``PruningSummaries`` (each pruned layer's sparsity and threshold to TensorBoard),
        also logged every ``every`` training steps and at the end of training, not only at the
        start of each epoch."""

        def __init__(self, log_dir, every: int | None = None, **kwargs):
            super().__init__(log_dir=str(log_dir), **kwargs)
            self.every = every
            self._seen = 0

        def _log_now(self):
            sp.PruningSummaries.on_epoch_begin(self, 0, None)  # logs=None: pruning metrics only

        def _implements_train_batch_hooks(self):  # Keras skips batch hooks unless asked
            return bool(self.every) or super()._implements_train_batch_hooks()

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            self._seen += 1
            if self.every and self._seen % self.every == 0:
                self._log_now()

        def on_train_end(self, logs=None):
            self._log_now()
            super().on_train_end(logs)

    return PruningSummaries


def pruning_summaries(log_dir, every: int | None = None):
    """A TensorBoard callback writing each pruned layer's sparsity and threshold under ``log_dir``, notebook 02.

    tfmot's ``PruningSummaries`` logs at the start of each epoch; with ``every`` it also logs
    every ``every`` steps and when training ends, so the schedule is visible step by step.

    Introduced in notebook 02.
    """
    every = None if every is None else positive_int(every, "every (steps between summaries)")
    return _summaries_class()(log_dir, every=every)


def callbacks(log_dir=None, every: int | None = None) -> list:
    """The callbacks pruning needs: ``UpdatePruningStep`` (+ pruning summaries to ``log_dir``), notebook 02.

    Introduced in notebook 02.
    """
    out = [_tfmot_sparsity().UpdatePruningStep()]
    if log_dir is not None:
        out.append(pruning_summaries(log_dir, every))
    return out


def strip(model):
    """Remove the pruning wrappers (``strip_pruning``): a plain model with the sparse kernels, notebook 02.

    The stripped model shares its layers with the wrapped one; its kernels hold the zeros.

    Introduced in notebook 02.
    """
    check_model(model, what="prune.strip")
    return _tfmot_sparsity().strip_pruning(model)


def kernel_sparsity(model) -> dict:
    """Fraction of exactly-zero kernel weights per Dense/Conv layer, {layer name: fraction}, notebook 02.

    Works on stripped and on wrapped models (it reads the kernel inside a wrapper).
    Biases are not counted; ``measure.count_nonzero`` counts everything.

    Introduced in notebook 02.
    """
    check_model(model, need_graph=False, what="prune.kernel_sparsity")
    out = {}
    for layer in model.layers:
        kernel = _kernel_of(layer)
        if kernel is None:
            continue
        values = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
        out[layer.name] = float(np.mean(values == 0))
    return out


def check_schedule(schedule, total_steps: int) -> None:
    """Raise ValueError if a pruning schedule starts or ends after training ends, notebook 02.

    Introduced in notebook 02.
    """
    begin = int(getattr(schedule, "begin_step", 0))
    end = int(getattr(schedule, "end_step", -1))
    if begin >= total_steps:
        raise ValueError(
            f"the pruning schedule begins at step {begin} but training has only "
            f"{total_steps} steps: nothing would be pruned. Start earlier or train longer."
        )
    if end >= total_steps:
        raise ValueError(
            f"the pruning schedule ends at step {end} but training ends after "
            f"{total_steps} steps: the target sparsity would never be reached. "
            f"End the schedule before step {total_steps} (leave some steps to fine-tune) "
            "or train for more epochs."
        )
