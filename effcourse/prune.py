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
PRUNE_FRACTION = 0.5  # prune_and_finetune: masks reach their target in the first half of the steps


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
    """Names of the layers whose kernel magnitude pruning acts on (Dense, Conv*), in order, notebook 02."""
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
    """A tfmot pruning schedule, ``PolynomialDecay`` from ``initial_sparsity`` or ``ConstantSparsity``, notebook 02.

    Masks are recomputed every ``frequency`` steps from
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
    """
    if every is not None and int(every) < 1:
        raise ValueError(f"every must be >= 1 (steps between summaries), got {every}.")
    return _summaries_class()(log_dir, every=None if every is None else int(every))


def callbacks(log_dir=None, every: int | None = None) -> list:
    """The callbacks pruning needs: ``UpdatePruningStep`` (+ pruning summaries to ``log_dir``), notebook 02."""
    out = [_tfmot_sparsity().UpdatePruningStep()]
    if log_dir is not None:
        out.append(pruning_summaries(log_dir, every))
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


def _plan_steps(n_train: int, epochs: int, batch_size: int, prune_fraction: float = PRUNE_FRACTION):
    if not 0 < prune_fraction < 1:
        raise ValueError(f"prune_fraction must be in (0, 1) (the share of steps spent raising the "
                         f"sparsity; the rest fine-tunes), got {prune_fraction}.")
    total = int(math.ceil(n_train / batch_size)) * int(epochs)
    end = max(1, int(total * prune_fraction))
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


def _optimizer(learning_rate: float, total_steps: int, weight_decay: float = 0.0):
    """Adam (AdamW if ``weight_decay`` > 0) with a cosine-decayed learning rate."""
    import tf_keras

    if learning_rate <= 0 or weight_decay < 0:
        raise ValueError(f"need learning_rate > 0 and weight_decay >= 0, got {learning_rate}, {weight_decay}.")
    lr = tf_keras.optimizers.schedules.CosineDecay(learning_rate, total_steps, alpha=0.05)
    if weight_decay:
        return tf_keras.optimizers.AdamW(lr, weight_decay=weight_decay)
    return tf_keras.optimizers.Adam(lr)


def prune_and_finetune(model, data, sparsity: float, epochs: int, batch_size: int = 128,
                       per_layer: dict | None = None, schedule="polynomial", m_by_n=None,
                       log_dir=None, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                       prune_fraction: float = PRUNE_FRACTION, verbose: int = 0, seed: int = 0,
                       desc: str | None = None):
    """Prune a copy of ``model`` to ``sparsity`` while fine-tuning on ``data``; return it stripped and compiled (notebook 02).

    ``data`` is an ``effcourse.data.MNIST``. The masks are raised
    to their target over the first ``prune_fraction`` of the training steps
    (``schedule="polynomial"``) or set at once (``"constant"``), then held while the rest of
    the steps fine-tune the kept weights (Adam, or AdamW with ``weight_decay``, cosine-decayed
    from ``learning_rate``). A tfmot ``PruningSchedule`` can be
    passed instead; it must end before training does. ``log_dir`` writes TensorBoard
    pruning summaries. The input model is never changed. With ``verbose=0`` a progress bar shows the fine-tuning;
    ``desc`` is its caption (default: the model and its target, e.g. "prune lenet5 to 90%").
    """
    from . import data as _data
    from . import env, models, train

    check_model(model, what="prune.prune_and_finetune")
    if not isinstance(data, _data.MNIST):
        raise TypeError(f"data must be an effcourse.data.MNIST (data.load(profile)), got {type(data).__name__}.")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}.")
    _per_layer_sparsities(model, sparsity, per_layer)  # validate before any work
    total, end, frequency = _plan_steps(len(data.x_train), epochs, batch_size, prune_fraction)
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES} or a tfmot PruningSchedule, got {schedule!r}.")
    else:
        check_schedule(schedule, total)
    env.seed_everything(seed)
    wrapped = wrap(model, sparsity, schedule=schedule, begin_step=0, end_step=end,
                   per_layer=per_layer, m_by_n=m_by_n, frequency=frequency)
    models.compile_classifier(wrapped, optimizer=_optimizer(learning_rate, total, weight_decay))
    if desc is None:
        target = (f"{m_by_n[0]}:{m_by_n[1]}" if m_by_n else "per-layer sparsities" if per_layer
                  else f"{float(sparsity):.0%}" if isinstance(sparsity, (int, float)) else "its schedule")
        desc = f"prune {model.name} to {target}"
    train.fit(wrapped, data, epochs=int(epochs), batch_size=int(batch_size),
              callbacks=callbacks(log_dir, every=frequency), verbose=verbose, seed=seed, desc=desc)
    return models.compile_classifier(strip(wrapped))


def m_by_n_fraction(kernel, m_by_n=(2, 4)) -> float:
    """Fraction of groups of n consecutive input weights holding at most m non-zeros (1.0: the pattern holds), notebook 02.

    This is tfmot's ``sparsity_m_by_n=(m, n)``: keep at most m of every n weights, so 2:4
    leaves at least half of them zero.

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
    return float(np.mean(np.sum(groups != 0, axis=-1) <= m))


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


# --- sensitivity: one layer at a time, no fine-tuning -----------------------------------------

def magnitude_mask(weights, sparsity: float) -> np.ndarray:
    """Boolean keep-mask that zeroes the ``sparsity`` fraction of smallest-magnitude entries (exact count), notebook 02."""
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
    """
    import pandas as pd

    from . import measure, models, progress

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
    bar = progress.bar(total=len(layers) * sum(s > 0 for s in sparsities), unit="point",
                       desc=desc or f"sensitivity scan of {model.name}")
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


def overall_sparsity(model, per_layer: dict) -> float:
    """Fraction of all Dense/Conv kernel weights removed by per-layer sparsities {layer: s} (others 0), notebook 02.

    The uniform sparsity with the same number of kept kernel weights.
    """
    check_model(model, need_graph=False, what="prune.overall_sparsity")
    sizes = {layer.name: int(np.prod(_kernel_of(layer).shape)) for layer in model.layers
             if _kernel_of(layer) is not None}
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
    """
    target = _check_sparsity(target, "target")
    grid = {name: grp.sort_values("sparsity") for name, grp in scan.groupby("layer")}
    sizes = {name: int(grp["params"].iloc[0]) for name, grp in grid.items()}
    total = sum(int(np.prod(_kernel_of(layer).shape)) for layer in model.layers
                if _kernel_of(layer) is not None)
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
            raise ValueError(f"the scan's sparsities cannot reach an overall sparsity of {target}; "
                             "scan higher sparsities (or more layers), or lower the target.")
        pos[best] += 1
        choice[best] = float(grid[best].iloc[pos[best]]["sparsity"])
    return choice


# --- channel (filter) pruning: a physically narrower model ------------------------------------

CHANNEL_PASS_THROUGH = ("InputLayer", "Activation", "ReLU", "LeakyReLU", "ELU",
                        "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                        "GlobalMaxPooling2D", "Dropout", "SpatialDropout2D", "ZeroPadding2D",
                        "Cropping2D", "GaussianNoise", "GaussianDropout")
CHANNEL_MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _prunable_unit_layer(layer) -> bool:
    import tf_keras

    return type(layer) in (tf_keras.layers.Conv2D, tf_keras.layers.Dense)


def channel_norms(model, ord: int = 2) -> dict:
    """Norm of each output filter/unit of every Conv2D/Dense layer, {layer: array}, notebook 02.

    The L1 (``ord=1``) or L2 norm of the weights feeding each output channel (Li et al. 2017
    rank filters by L1); small-norm channels contribute least and are removed first.
    """
    check_model(model, what="prune.channel_norms")
    if ord not in (1, 2):
        raise ValueError(f"ord must be 1 or 2, got {ord}.")
    out = {}
    for layer in model.layers:
        if _prunable_unit_layer(layer):
            k = layer.kernel.numpy()
            flat = k.reshape(-1, k.shape[-1])
            out[layer.name] = np.abs(flat).sum(0) if ord == 1 else np.sqrt((flat ** 2).sum(0))
    return out


def _output_layer_names(model) -> set:
    return {t._keras_history.layer.name for t in model.outputs}


def kept_channels(model, keep: dict, ord: int = 2) -> dict:
    """Indices of the channels each layer keeps, {layer: sorted array}: the largest-norm ``keep[layer]``, notebook 02.

    ``keep`` maps a Conv2D/Dense layer name to a number of channels (int >= 1) or a
    fraction (float in (0, 1]). Output layers cannot lose units (the classes).
    """
    check_model(model, what="prune.kept_channels")
    if not isinstance(keep, dict) or not keep:
        raise TypeError("keep must be a non-empty dict {layer name: channels to keep (int) or fraction (float)}.")
    norms = channel_norms(model, ord)
    outputs = _output_layer_names(model)
    names = [layer.name for layer in model.layers]
    plan = {}
    for name, amount in keep.items():
        if name not in names:
            raise ValueError(f"keep names {name!r}, which is not a layer of this model; layers: {names}.")
        layer = model.get_layer(name)
        if not _prunable_unit_layer(layer):
            raise ValueError(f"channel pruning removes filters of Conv2D and units of Dense layers; "
                             f"{name!r} is a {type(layer).__name__}.")
        if name in outputs:
            raise ValueError(f"{name!r} produces the model's output: its units are the classes and "
                             "cannot be removed. Prune the hidden layers.")
        width = len(norms[name])
        if isinstance(amount, (bool, np.bool_)) or not isinstance(amount, (int, float, np.integer, np.floating)):
            raise TypeError(f"keep[{name!r}] must be an int (channels) or a float (fraction), got {amount!r}.")
        if isinstance(amount, (float, np.floating)):
            if not 0 < amount <= 1:
                raise ValueError(f"keep[{name!r}] = {amount}: a fraction must be in (0, 1].")
            count = max(1, int(round(amount * width)))
        else:
            count = int(amount)
            if not 1 <= count <= width:
                raise ValueError(f"keep[{name!r}] = {count}: must be between 1 and the layer's {width} channels.")
        plan[name] = np.sort(np.argsort(-norms[name], kind="stable")[:count])
    return plan


def _feature_flow(model, kept: dict) -> dict:
    """For every layer: (input feature indices kept, output feature indices kept); None = all."""
    import tensorflow as tf

    feat = {t.ref(): None for t in model.inputs}
    flow = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if len(layer._inbound_nodes) != 1:
            raise ValueError(f"layer {layer.name!r} is used {len(layer._inbound_nodes)} times; channel "
                             "pruning needs each layer called once (rebuild the model from its config).")
        inputs = tf.nest.flatten(layer.input)
        ins = [feat[t.ref()] for t in inputs]
        idx = ins[0]
        if _prunable_unit_layer(layer):
            if getattr(layer, "groups", 1) != 1 or getattr(layer, "data_format", "channels_last") != "channels_last":
                raise ValueError(f"{layer.name!r}: channel pruning handles channels_last, ungrouped Conv2D only.")
            out = kept.get(layer.name)
        elif kind == "Flatten":
            if idx is None:
                out = None
            else:
                shape = inputs[0].shape
                positions, channels = int(np.prod(shape[1:-1])), int(shape[-1])
                out = (np.arange(positions)[:, None] * channels + idx[None, :]).ravel()
        elif kind in CHANNEL_PASS_THROUGH or (kind == "BatchNormalization" and layer.axis in ([-1], [3], -1, 3)):
            out = idx
        elif kind in CHANNEL_MERGE:
            same = all((a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
                       for a, b in zip(ins, ins[1:]))
            if not same:
                raise ValueError(f"{layer.name!r} ({kind}) merges tensors whose kept channels differ; "
                                 "keep the same channels in every branch feeding it, or do not prune them.")
            out = idx
        elif all(i is None for i in ins):
            out = None  # no pruned channels reach this layer: it is copied unchanged
        else:
            raise ValueError(
                f"channel pruning cannot pass pruned channels through layer {layer.name!r} ({kind}). "
                f"It handles Conv2D, Dense, Flatten, BatchNormalization, {', '.join(CHANNEL_MERGE)} and "
                f"the pass-through layers {', '.join(CHANNEL_PASS_THROUGH)}. "
                "Do not prune the layers that feed it.")
        flow[layer.name] = (idx, out)
        feat[layer.output.ref()] = out
    return flow


def channel_mask(model, keep: dict, ord: int = 2):
    """A same-shape copy of ``model`` in which the channels ``channel_prune`` removes are zeroed, notebook 02.

    The removed filters (and their biases) and the weights that read them in the next
    layer are set to zero, so this wide model computes exactly what the narrow model does.
    """
    from . import models

    kept = kept_channels(model, keep, ord)
    flow = _feature_flow(model, kept)
    wide = models.clone(model, compile_like=False)
    for name, (in_idx, out_idx) in flow.items():
        layer = wide.get_layer(name)
        if not _prunable_unit_layer(layer):
            continue
        kernel, *rest = layer.get_weights()
        if in_idx is not None:
            drop = np.setdiff1d(np.arange(kernel.shape[-2]), in_idx)
            kernel[..., drop, :] = 0.0
        if name in kept:
            drop = np.setdiff1d(np.arange(kernel.shape[-1]), out_idx)
            kernel[..., drop] = 0.0
            rest = [r.copy() for r in rest]
            for r in rest:
                r[drop] = 0.0
        layer.set_weights([kernel, *rest])
    return wide


def channel_prune(model, keep: dict, ord: int = 2):
    """A physically narrower copy of ``model``: the largest-norm filters/units of each layer in ``keep``, notebook 02.

    For Sequential/Functional models of Conv2D and Dense layers (with Flatten, pooling,
    activations, dropout, BatchNormalization and elementwise merges between them). Each
    kept filter keeps its weights; the next layer keeps only the input weights of kept
    channels. Before fine-tuning, the result computes what ``channel_mask`` computes.
    Returns a compiled model with fewer parameters and MACs; fine-tune it with ``finetune``.
    """
    import tf_keras

    from . import models

    check_model(model, what="prune.channel_prune")
    kept = kept_channels(model, keep, ord)
    flow = _feature_flow(model, kept)

    def narrower(layer):
        config = layer.get_config()
        if layer.name in kept:
            config["filters" if "filters" in config else "units"] = int(len(kept[layer.name]))
        return type(layer).from_config(config)

    narrow = tf_keras.models.clone_model(model, clone_function=narrower)
    for layer in model.layers:
        if layer.name not in flow or not layer.weights:
            continue
        in_idx, out_idx = flow[layer.name]
        weights = layer.get_weights()
        if _prunable_unit_layer(layer):
            kernel, *rest = weights
            if in_idx is not None:
                kernel = np.take(kernel, in_idx, axis=-2)
            if layer.name in kept:
                kernel = kernel[..., out_idx]
                rest = [r[out_idx] for r in rest]
            weights = [kernel, *rest]
        elif in_idx is not None:  # BatchNormalization: every vector is per channel
            weights = [w[in_idx] for w in weights]
        narrow.get_layer(layer.name).set_weights(weights)
    return models.compile_classifier(narrow)


def finetune(model, data, epochs: int, batch_size: int = 128, learning_rate: float = 1e-3,
             weight_decay: float = 0.0, verbose: int = 0, seed: int = 0, desc: str | None = None):
    """Fine-tune a copy of ``model`` on ``data`` (Adam/AdamW, cosine-decayed rate); return it compiled, notebook 02.

    With ``verbose=0`` a progress bar captioned ``desc`` (default "fine-tune <model>") shows it."""
    from . import data as _data
    from . import env, models, train

    check_model(model, what="prune.finetune")
    if not isinstance(data, _data.MNIST):
        raise TypeError(f"data must be an effcourse.data.MNIST (data.load(profile)), got {type(data).__name__}.")
    env.seed_everything(seed)
    copy = models.clone(model, compile_like=False)
    total = int(math.ceil(len(data.x_train) / batch_size)) * int(epochs)
    models.compile_classifier(copy, optimizer=_optimizer(learning_rate, total, weight_decay))
    train.fit(copy, data, epochs=int(epochs), batch_size=int(batch_size), verbose=verbose, seed=seed,
              desc=desc or f"fine-tune {model.name}")
    return copy


def to_sparse_tflite(model) -> bytes:
    """Convert to .tflite with zero-heavy kernels stored in TFLite's sparse format (``EXPERIMENTAL_SPARSITY``), notebook 02.

    The file is smaller before compression; the runtime inserts ``DENSIFY`` ops that
    rebuild dense kernels when the model is loaded, so inference runs the usual dense
    kernels (XNNPACK's sparse path needs the conditions listed in notebook 02).
    """
    import tensorflow as tf

    check_model(model, need_graph=False, what="prune.to_sparse_tflite")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()
