"""Pruning: magnitude pruning with tfmot, sensitivity scans, 2:4 sparsity, channel pruning (notebook 02).

Two kinds of pruning, and what each buys:

* **Unstructured magnitude pruning** (tfmot's ``prune_low_magnitude``): the smallest
  weights of each kernel are set to zero and kept at zero while the network fine-tunes.
  The kernels keep their shape, so the model is exactly as slow on dense kernels; what
  shrinks is the *compressed* file (runs of zeros compress well).
* **Channel (filter) pruning** (``channel_prune``): whole filters / units with the smallest
  norms are removed and a physically narrower model is built from the kept weights. It
  does fewer MACs on any hardware. tfmot does not do this; it is written out here.

tfmot's wrappers share layers (and so weights) with the model they are given; every
function here clones its input first and never changes the caller's model.
"""
from __future__ import annotations

import math

import numpy as np

from .models import check_model

SCHEDULES = ("polynomial", "constant")
PRUNE_FRACTION = 0.6  # prune_and_finetune: masks reach their target in the first 60% of steps


def _tfmot_sparsity():
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras


def _check_sparsity(value, what: str = "sparsity") -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a number in [0, 1), got {value!r}") from err
    if not (0.0 <= value < 1.0) or math.isnan(value):
        raise ValueError(f"{what} must be in [0, 1) (the fraction of weights set to zero), got "
                         f"{value}. Use e.g. 0.9 to keep 10% of the weights; 1.0 would remove all.")
    return value


def _kernel_of(layer):
    """The kernel variable of a Dense/Conv layer (through a tfmot wrapper), or None."""
    inner = getattr(layer, "layer", layer)
    for name in ("kernel", "depthwise_kernel"):
        var = getattr(inner, name, None)
        if var is not None:
            return var
    return None


def prunable_layers(model) -> list[str]:
    """Names of the layers whose kernel magnitude pruning acts on (Dense, Conv*), in order."""
    check_model(model, what="prune.prunable_layers")
    return [layer.name for layer in model.layers if _kernel_of(layer) is not None]


def _is_wrapped(model) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude)

    return any(isinstance(layer, PruneLowMagnitude) for layer in model.layers)


def _per_layer_sparsities(model, sparsity, per_layer) -> dict:
    sparsity = _check_sparsity(sparsity)
    names = prunable_layers(model)
    per_layer = dict(per_layer or {})
    unknown = sorted(set(per_layer) - set(names))
    if unknown:
        raise ValueError(f"per_layer names layers that are not prunable layers of this model: "
                         f"{unknown}. Prunable layers: {names}.")
    return {name: _check_sparsity(per_layer.get(name, sparsity), f"sparsity of layer {name!r}")
            for name in names}


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


def make_schedule(sparsity: float, schedule: str = "polynomial", begin_step: int = 0,
                  end_step: int = 1000, frequency: int = 100, initial_sparsity: float = 0.0):
    """A tfmot pruning schedule: ``PolynomialDecay`` from ``initial_sparsity`` or ``ConstantSparsity``.

    Introduced in notebook 02. Masks are recomputed every ``frequency`` steps from
    ``begin_step`` to ``end_step``; ``polynomial`` raises the sparsity gradually
    (s_t = s_f + (s_i - s_f)(1 - t/T)^3, Zhu & Gupta 2017), ``constant`` prunes to the
    target at once and keeps re-selecting the smallest weights.
    """
    sp = _tfmot_sparsity()
    sparsity = _check_sparsity(sparsity)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES} or a tfmot PruningSchedule, got {schedule!r}.")
    begin_step, end_step, frequency = int(begin_step), int(end_step), int(frequency)
    if begin_step < 0 or frequency < 1:
        raise ValueError(f"need begin_step >= 0 and frequency >= 1, got {begin_step}, {frequency}.")
    if end_step < begin_step and not (schedule == "constant" and end_step == -1):
        raise ValueError(f"end_step ({end_step}) must be >= begin_step ({begin_step}).")
    if schedule == "constant":
        return sp.ConstantSparsity(sparsity, begin_step=begin_step, end_step=end_step,
                                   frequency=frequency)
    if end_step == begin_step:
        raise ValueError("a polynomial schedule needs end_step > begin_step to ramp the sparsity up.")
    return sp.PolynomialDecay(initial_sparsity=_check_sparsity(initial_sparsity, "initial_sparsity"),
                              final_sparsity=sparsity, begin_step=begin_step, end_step=end_step,
                              frequency=frequency)


def wrap(model, sparsity: float, schedule="polynomial", begin_step: int = 0, end_step: int = 1000,
         per_layer: dict | None = None, m_by_n=None, frequency: int = 100):
    """Wrap a copy of ``model`` for magnitude pruning with tfmot (``prune_low_magnitude``), notebook 02.

    Every Dense/Conv layer is wrapped with a schedule towards ``sparsity``; ``per_layer``
    ({layer name: sparsity}) overrides it for named layers, and a layer given 0 is left
    unwrapped (dense). ``schedule`` is ``"polynomial"``, ``"constant"`` or a tfmot
    ``PruningSchedule`` (then used for every layer). ``m_by_n=(2, 4)`` asks for structured
    sparsity instead (m zeros in every n consecutive input weights; the mask is chosen once,
    at the first step); layers whose input channels are not a multiple of n stay dense.

    The caller's model is cloned first and never changed. Train the result with the
    ``tfmot.sparsity.keras.UpdatePruningStep()`` callback (``callbacks()`` gives it), then
    ``strip`` it.
    """
    check_model(model, what="prune.wrap")
    if _is_wrapped(model):
        raise ValueError("this model already holds pruning wrappers; pass the original model, or "
                         "prune.strip(model) first.")
    targets = _per_layer_sparsities(model, sparsity, per_layer)
    m_by_n = _check_m_by_n(m_by_n)
    if not isinstance(schedule, str) and not hasattr(schedule, "get_config"):
        raise TypeError(f"schedule must be 'polynomial', 'constant' or a tfmot PruningSchedule, "
                        f"got {type(schedule).__name__}.")
    sp = _tfmot_sparsity()
    import tf_keras

    from . import models

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
        sched = schedule if not isinstance(schedule, str) else make_schedule(
            target, schedule, begin_step, end_step, frequency)
        return sp.prune_low_magnitude(layer, pruning_schedule=sched)

    wrapped = tf_keras.models.clone_model(base, clone_function=wrap_layer)
    return wrapped


def callbacks(log_dir=None) -> list:
    """The callbacks pruning needs: ``UpdatePruningStep`` (+ ``PruningSummaries`` to ``log_dir``), notebook 02."""
    sp = _tfmot_sparsity()
    out = [sp.UpdatePruningStep()]
    if log_dir is not None:
        out.append(sp.PruningSummaries(log_dir=str(log_dir)))
    return out


def strip(model):
    """Remove the pruning wrappers (``strip_pruning``): a plain model with the sparse kernels, notebook 02.

    The stripped model shares its layers with the wrapped one; its kernels hold the zeros.
    """
    check_model(model, what="prune.strip")
    return _tfmot_sparsity().strip_pruning(model)


def kernel_sparsity(model) -> dict:
    """Fraction of exactly-zero kernel weights per Dense/Conv layer, {layer name: fraction}, notebook 02.

    Works on stripped and on wrapped models (it reads the kernel inside a wrapper).
    Biases are not counted; ``measure.count_nonzero`` counts everything.
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


def _plan_steps(n_train: int, epochs: int, batch_size: int):
    total = int(math.ceil(n_train / batch_size)) * int(epochs)
    end = max(1, int(total * PRUNE_FRACTION))
    frequency = max(1, min(100, end // 10))
    end = max(frequency, (end // frequency) * frequency)
    return total, end, frequency


def check_schedule(schedule, total_steps: int) -> None:
    """Raise ValueError if a pruning schedule starts or ends after training ends, notebook 02."""
    begin = int(getattr(schedule, "begin_step", 0))
    end = int(getattr(schedule, "end_step", -1))
    if begin >= total_steps:
        raise ValueError(f"the pruning schedule begins at step {begin} but training has only "
                         f"{total_steps} steps: nothing would be pruned. Start earlier or train longer.")
    if end >= total_steps:
        raise ValueError(f"the pruning schedule ends at step {end} but training ends after "
                         f"{total_steps} steps: the target sparsity would never be reached. "
                         f"End the schedule before step {total_steps} (leave some steps to fine-tune) "
                         "or train for more epochs.")


def prune_and_finetune(model, data, sparsity: float, epochs: int, batch_size: int = 128,
                       per_layer: dict | None = None, schedule="polynomial", m_by_n=None,
                       log_dir=None, learning_rate: float = 3e-4, verbose: int = 0, seed: int = 0):
    """Prune a copy of ``model`` to ``sparsity`` while fine-tuning on ``data``; return it stripped and compiled.

    Introduced in notebook 02. ``data`` is an ``effcourse.data.MNIST``. The masks are raised
    to their target over the first 60% of the training steps (``schedule="polynomial"``) or
    set at once (``"constant"``), then held while the rest of the steps fine-tune the kept
    weights (Adam, cosine-decayed from ``learning_rate``). A tfmot ``PruningSchedule`` can be
    passed instead; it must end before training does. ``log_dir`` writes TensorBoard
    pruning summaries. The input model is never changed. The training history is in
    ``result.effcourse_history``.
    """
    import tf_keras

    from . import data as _data
    from . import env, models, train

    check_model(model, what="prune.prune_and_finetune")
    if not isinstance(data, _data.MNIST):
        raise TypeError(f"data must be an effcourse.data.MNIST (data.load(profile)), got {type(data).__name__}.")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}.")
    _per_layer_sparsities(model, sparsity, per_layer)  # validate before any work
    total, end, frequency = _plan_steps(len(data.x_train), epochs, batch_size)
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES} or a tfmot PruningSchedule, got {schedule!r}.")
    else:
        check_schedule(schedule, total)
    env.seed_everything(seed)
    wrapped = wrap(model, sparsity, schedule=schedule, begin_step=0, end_step=end,
                   per_layer=per_layer, m_by_n=m_by_n, frequency=frequency)
    lr = tf_keras.optimizers.schedules.CosineDecay(learning_rate, total, alpha=0.05)
    models.compile_classifier(wrapped, optimizer=tf_keras.optimizers.Adam(lr))
    hist = train.fit(wrapped, data, epochs=int(epochs), batch_size=int(batch_size),
                     callbacks=callbacks(log_dir), verbose=verbose, seed=seed)
    stripped = models.compile_classifier(strip(wrapped))
    stripped.effcourse_history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    stripped.effcourse_schedule = {"total_steps": total, "end_step": end, "frequency": frequency}
    return stripped


def m_by_n_fraction(kernel, m_by_n=(2, 4)) -> float:
    """Fraction of groups of n consecutive input weights holding at least m zeros (1.0: the pattern holds), notebook 02.

    Groups run along the input-channel axis, as tfmot and TFLite lay them out: for a Dense
    kernel (in, out) along ``in`` for each output; for a Conv2D kernel (h, w, in, out) along
    ``in`` for each output and position. ``in`` must be a multiple of n.
    """
    m, n = _check_m_by_n(m_by_n)
    kernel = np.asarray(kernel)
    if kernel.ndim < 2:
        raise ValueError(f"need a kernel of rank >= 2 (Dense or Conv), got shape {kernel.shape}.")
    cin = kernel.shape[-2]
    if cin % n:
        raise ValueError(f"the kernel has {cin} input channels, not a multiple of {n}: "
                         f"{m}:{n} groups cannot tile it.")
    rows = np.moveaxis(kernel, -1, 0).reshape(-1, cin)  # (out * positions, in)
    groups = rows.reshape(rows.shape[0], cin // n, n)
    return float(np.mean(np.sum(groups == 0, axis=-1) >= m))


def m_by_n_report(model, m_by_n=(2, 4)) -> dict:
    """For every Dense/Conv layer whose input channels n divides: the fraction of its groups that hold the m:n pattern, notebook 02."""
    check_model(model, need_graph=False, what="prune.m_by_n_report")
    n = _check_m_by_n(m_by_n)[1]
    out = {}
    for layer in model.layers:
        kernel = _kernel_of(layer)
        if kernel is not None and int(kernel.shape[-2]) % n == 0:
            out[layer.name] = m_by_n_fraction(kernel.numpy(), m_by_n)
    return out
