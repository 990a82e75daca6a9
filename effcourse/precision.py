"""Mixed precision: number formats, Keras policies, loss scaling, and the hardware behind it (notebook 05).

* Formats: ``format_table`` computes the properties of float32, float16, bfloat16 (and int8
  for contrast) from NumPy's / ml_dtypes' ``finfo`` / ``iinfo``; ``bit_fields`` and
  ``round_trip`` show how a value is stored and what storing it costs.
* Policies: ``use_policy`` sets Keras' global dtype policy for a block and always restores
  the old one; ``with_policy`` rebuilds an existing model under a policy (same weights)
  with a float32 output layer; ``compile_mixed`` refuses a model whose layers do not
  follow the policy (a policy set after the model was built) and wraps the optimizer in a
  ``LossScaleOptimizer`` for float16.
* Loss scaling: ``gradients`` (optionally scaled) and ``underflow_stats`` show which gradient
  magnitudes float16 flushes to zero; ``lso_step`` runs one step of Keras' dynamic loss
  scaling and reports whether it was skipped.
* Measurement: ``train_side_by_side`` trains several models on the same batches in
  interleaved chunks (timing under a shared machine), ``activation_memory`` sums the bytes
  of the activation tensors of a forward pass.
* Hardware: ``hardware_support`` detects float16 / bfloat16 arithmetic units (GPU compute
  capability, CPU flags from /proc/cpuinfo); nothing is assumed.

Keras here is tf_keras (``effcourse.keras``): ``keras.mixed_precision.Policy``,
``set_global_policy``, ``LossScaleOptimizer``.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .models import check_model

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
FORMATS = ("float32", "float16", "bfloat16", "int8")
FLOAT_FORMATS = ("float32", "float16", "bfloat16")
OUTPUT_LAYER = "float32_logits"  # the identity layer with_policy adds so that logits are float32
DEFAULT_LOSS_SCALE = 2.0 ** 15  # Keras' initial dynamic loss scale
# CPU flags (as in /proc/cpuinfo) that give native low-precision arithmetic.
CPU_FLAGS = {
    "avx512_bf16": "bfloat16",  # AVX-512 BF16: VDPBF16PS dot products (Cooper Lake, Zen 4+)
    "amx_bf16": "bfloat16",  # AMX tiles with bfloat16 (Sapphire Rapids+)
    "avx512_fp16": "float16",  # AVX-512 FP16 arithmetic (Sapphire Rapids+)
    "amx_fp16": "float16",  # AMX tiles with float16 (Granite Rapids+)
}
GPU_FLOAT16_CC = (7, 0)  # tensor cores with float16: Volta and later
GPU_BFLOAT16_CC = (8, 0)  # tensor cores with bfloat16: Ampere and later


# --- number formats ------------------------------------------------------------------------

def _check_format(name: str, allowed=FORMATS) -> str:
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"Unknown number format {name!r}; choose one of {', '.join(allowed)}.")
    return name


def dtype_of(name: str):
    """The NumPy dtype of a format name (bfloat16 comes from ml_dtypes). Notebook 05."""
    import ml_dtypes

    _check_format(name)
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def finfo(name: str):
    """``finfo`` of a float format (ml_dtypes for bfloat16) or ``iinfo`` for int8. Notebook 05."""
    import ml_dtypes

    dt = dtype_of(name)
    if name == "int8":
        return np.iinfo(dt)
    return ml_dtypes.finfo(dt) if name == "bfloat16" else np.finfo(dt)


def format_table(formats=FORMATS):
    """The formats side by side, every number read from finfo/iinfo: bits, epsilon, limits. Notebook 05.

    Columns: total bits, sign / exponent / mantissa bits (stored mantissa, without the
    implicit leading 1), machine epsilon (the gap between 1 and the next value), largest
    value, smallest normal and subnormal positive values, decimal digits. For int8 (a plain
    signed integer, no scale) the "epsilon" is the step 1, the smallest positive value is 1
    and there is no exponent or subnormal.
    """
    import pandas as pd

    rows = []
    for name in formats:
        _check_format(name)
        info = finfo(name)
        if name == "int8":
            rows.append({"format": name, "bits": info.bits, "sign bits": 1, "exponent bits": 0,
                         "mantissa bits": info.bits - 1, "epsilon": 1.0, "largest": float(info.max),
                         "smallest normal": 1.0, "smallest subnormal": np.nan,
                         "decimal digits": int(np.floor(np.log10(info.max)))})
        else:
            rows.append({"format": name, "bits": info.bits, "sign bits": 1,
                         "exponent bits": info.nexp, "mantissa bits": info.nmant,
                         "epsilon": float(info.eps), "largest": float(info.max),
                         "smallest normal": float(info.smallest_normal),
                         "smallest subnormal": float(info.smallest_subnormal),
                         "decimal digits": info.precision})
    return pd.DataFrame(rows).set_index("format")


def bit_fields(value: float, fmt: str) -> dict:
    """How ``value`` is stored in ``fmt``: its sign, exponent and mantissa bits as strings. Notebook 05.

    Also returns the value actually stored. int8 is two's complement of round(value),
    clipped to [-128, 127]: its bits are all "mantissa" (value bits) after the sign.
    """
    _check_format(fmt)
    dt = dtype_of(fmt)
    if fmt == "int8":
        stored = np.int8(np.clip(np.round(value), -128, 127))
        bits = format(int(stored.view(np.uint8)), "08b")
        return {"sign": bits[0], "exponent": "", "mantissa": bits[1:], "stored": float(stored)}
    info = finfo(fmt)
    stored = np.asarray(value, dtype=np.float64).astype(dt)
    uint = {16: np.uint16, 32: np.uint32}[info.bits]
    bits = format(int(stored.view(uint)), f"0{info.bits}b")
    return {"sign": bits[0], "exponent": bits[1:1 + info.nexp], "mantissa": bits[1 + info.nexp:],
            "stored": float(stored)}


def round_trip(values, fmt: str, scale: float | None = None) -> np.ndarray:
    """``values`` after being stored in ``fmt`` and read back, as float64. Notebook 05.

    Float formats round to nearest (overflow gives inf, tiny values flush to 0). int8 needs
    a scale: ``q = clip(round(v / scale), -127, 127)``, read back as ``q * scale``; by default
    the symmetric scale max|v| / 127 of the values given (one scale for all of them, as
    per-tensor quantization does).
    """
    _check_format(fmt)
    v = np.asarray(values, dtype=np.float64)
    if fmt != "int8":
        with np.errstate(over="ignore"):
            return v.astype(dtype_of(fmt)).astype(np.float64)
    if scale is None:
        peak = float(np.max(np.abs(v))) if v.size else 0.0
        scale = peak / 127 if peak > 0 else 1.0
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"the int8 scale must be a finite number > 0, got {scale!r}")
    return np.clip(np.round(v / scale), -127, 127) * scale


def rounding_table(values, formats=FORMATS):
    """The same values stored in each format: stored value and relative error, as a DataFrame. Notebook 05."""
    import pandas as pd

    v = np.asarray(values, dtype=np.float64)
    table = pd.DataFrame({"value": v})
    for fmt in formats:
        stored = round_trip(v, fmt)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(stored - v) / np.abs(v)
        table[f"{fmt}"] = stored
        table[f"{fmt} rel. error"] = rel
    return table


# --- policies ------------------------------------------------------------------------------

def get_policy(policy):
    """A Keras ``Policy`` from one of ``POLICIES`` (or a Policy); clear error otherwise. Notebook 05."""
    import tf_keras

    mp = tf_keras.mixed_precision
    if isinstance(policy, mp.Policy):
        policy = policy.name
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(
            f"Unknown dtype policy {policy!r}. This course uses {', '.join(POLICIES)}: "
            "'mixed_float16' computes in float16 and keeps float32 variables (GPUs with tensor "
            "cores), 'mixed_bfloat16' does the same with bfloat16 (TPUs, Ampere+ GPUs, CPUs "
            "with AVX512-BF16/AMX)."
        )
    return mp.Policy(policy)


def global_policy_name() -> str:
    """The name of Keras' current global dtype policy. Notebook 05."""
    import tf_keras

    return tf_keras.mixed_precision.global_policy().name


@contextlib.contextmanager
def use_policy(policy):
    """Set Keras' global dtype policy inside a ``with`` block, and restore the old one after. Notebook 05.

    The old policy comes back even when the body raises, so a failed cell never leaves
    the rest of the notebook building float16 layers by surprise::

        with precision.use_policy("mixed_float16"):
            model = models.cnn()        # its layers compute in float16
    """
    import tf_keras

    mp = tf_keras.mixed_precision
    new = get_policy(policy)
    old = mp.global_policy()
    mp.set_global_policy(new)
    try:
        yield new
    finally:
        mp.set_global_policy(old)


def _layer_policy_name(layer) -> str:
    pol = getattr(layer, "dtype_policy", None)
    return getattr(pol, "name", str(pol))


def _policy_layers(model):
    """Layers that compute (not the input layer, not our float32 output layer)."""
    import tf_keras

    return [layer for layer in model.layers
            if not isinstance(layer, tf_keras.layers.InputLayer) and layer.name != OUTPUT_LAYER]


def layer_dtypes(model, sample=None):
    """Per layer: its policy, compute dtype, variable dtype and the dtype of its output. Notebook 05.

    The output dtypes are measured by running ``sample`` (default: a batch of two zero
    images shaped like the model's input) through the model.
    """
    import pandas as pd
    import tf_keras

    check_model(model, what="layer_dtypes")
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    probe = tf_keras.Model(model.inputs, [layer.output for layer in layers])
    if sample is None:
        sample = np.zeros((2,) + tuple(model.input_shape[1:]), dtype=np.float32)
    outputs = probe(sample, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    rows = []
    for layer, out in zip(layers, outputs):
        rows.append({"layer": layer.name, "type": type(layer).__name__,
                     "policy": _layer_policy_name(layer), "compute dtype": layer.compute_dtype,
                     "variable dtype": layer.variable_dtype if layer.weights else "-",
                     "output dtype": out.dtype.name})
    return pd.DataFrame(rows)


def model_policy(model) -> str | None:
    """The policy the model's computing layers were built under (None if they disagree). Notebook 05."""
    names = {_layer_policy_name(layer) for layer in _policy_layers(model)}
    return names.pop() if len(names) == 1 else None


def with_policy(model, policy, name: str | None = None):
    """A copy of ``model`` rebuilt under ``policy``, with the same weights; logits stay float32. Notebook 05.

    A Keras layer reads the dtype policy once, when it is created, so a model built before
    ``set_global_policy`` keeps computing in float32. This rebuilds every layer from its
    config with ``dtype=policy`` and copies the weights. Under a mixed policy it appends
    an identity layer computing in float32 (``OUTPUT_LAYER``), so the logits, the loss and
    the loss scaling are float32; under ``float32`` that layer is dropped again (the result
    is what tfmot's quantization-aware training needs).
    """
    import tf_keras

    check_model(model, what="with_policy")
    pol = get_policy(policy)
    if len(model.outputs) != 1:
        raise ValueError(f"with_policy handles single-output models; {model.name} has "
                         f"{len(model.outputs)} outputs.")
    source = model
    if model.layers[-1].name == OUTPUT_LAYER:  # drop our float32 identity layer first
        source = tf_keras.Model(model.inputs, model.layers[-1].input, name=model.name)

    def rebuild(layer):
        cfg = layer.get_config()
        cfg["dtype"] = pol.name
        return layer.__class__.from_config(cfg)

    with use_policy(pol):
        clone = tf_keras.models.clone_model(source, clone_function=rebuild)
        base_name = model.name
        for suffix in POLICIES:
            base_name = base_name.removesuffix(f"_{suffix}")
        new_name = name or (base_name if pol.name == "float32" else f"{base_name}_{pol.name}")
        if pol.name != "float32":
            out = tf_keras.layers.Activation("linear", dtype="float32", name=OUTPUT_LAYER)(clone.outputs[0])
            clone = tf_keras.Model(clone.inputs, out, name=new_name)
        else:
            clone._name = new_name
    clone.set_weights(source.get_weights())
    return clone


def build(model_name: str, policy):
    """A fresh course model (``models.build`` name) under ``policy``, with float32 logits. Notebook 05."""
    from . import models

    get_policy(policy)
    return with_policy(models.build(model_name), policy)


def check_policy(model, policy=None):
    """Raise a clear ValueError unless ``model`` computes under ``policy`` with float32 logits. Notebook 05.

    ``policy`` defaults to the current global policy: that is the case of a policy set
    after the model was created, which silently trains in float32 without this check.
    """
    import tf_keras

    check_model(model, what="check_policy")
    want = get_policy(policy if policy is not None else tf_keras.mixed_precision.global_policy())
    built = model_policy(model)
    if built != want.name:
        where = "the global policy" if policy is None else "the policy you asked for"
        raise ValueError(
            f"Model {model.name!r} was created under the policy {built or 'of several kinds'!r}, "
            f"but {where} is {want.name!r}. A Keras layer reads the global policy once, when "
            "it is created: calling set_global_policy after building a model changes only "
            "layers created later, so this model would still compute in "
            f"{_policy_layers(model)[0].compute_dtype if _policy_layers(model) else 'float32'}. "
            f"Build it inside `with precision.use_policy({want.name!r}):`, or convert it "
            f"with `precision.with_policy(model, {want.name!r})` (same weights)."
        )
    out_dtype = tf_keras.backend.dtype(model.outputs[0]) if model.outputs else "float32"
    if want.name != "float32" and out_dtype != "float32":
        raise ValueError(
            f"Model {model.name!r} outputs {out_dtype} logits. Under {want.name!r} the last "
            "layer must produce float32: the loss (and its loss-scaled copy) would otherwise be "
            "computed and stored in the low-precision type. Add "
            "`keras.layers.Activation('linear', dtype='float32')` after the logits, or use "
            "`precision.with_policy`, which does."
        )
    return want


def _check_scale(scale, what: str = "loss scale") -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"The {what} must be a number > 0 (e.g. 2**15), got {type(scale).__name__}.")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"The {what} must be a finite number > 0, got {scale}. The loss is multiplied by it "
            "before the backward pass and the gradients divided by it after: 0 wipes every "
            "gradient out, a negative scale flips them. Use a power of two such as 2**15 "
            "(Keras' default) and let the dynamic scaling adjust it."
        )
    return scale


def loss_scale_optimizer(optimizer=None, initial_scale: float = DEFAULT_LOSS_SCALE,
                         dynamic: bool = True, growth_steps: int = 2000):
    """Wrap an optimizer in Keras' ``LossScaleOptimizer`` after checking the scale. Notebook 05.

    Dynamic loss scaling (Micikevicius et al. 2018): multiply the loss by S before the
    backward pass, divide the gradients by S after; if any gradient is inf/NaN skip the
    step and halve S (never below 1), and after ``growth_steps`` finite steps in a row
    double S. Keras itself accepts a scale of 0 or below without complaint; this does not.
    """
    import tf_keras

    scale = _check_scale(initial_scale, "initial loss scale")
    if isinstance(growth_steps, bool) or not isinstance(growth_steps, (int, np.integer)) or growth_steps < 1:
        raise ValueError(f"growth_steps must be an integer >= 1, got {growth_steps!r}.")
    if optimizer is None:
        optimizer = tf_keras.optimizers.Adam(1e-3)
    if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        raise TypeError("This optimizer is already a LossScaleOptimizer; pass its inner optimizer.")
    if dynamic:
        return tf_keras.mixed_precision.LossScaleOptimizer(
            optimizer, dynamic=True, initial_scale=scale, dynamic_growth_steps=int(growth_steps))
    return tf_keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=False, initial_scale=scale)


def compile_mixed(model, policy=None, learning_rate: float = 1e-3, initial_scale: float = DEFAULT_LOSS_SCALE,
                  growth_steps: int = 2000):
    """Compile a classifier for training under ``policy`` (default: the global one). Notebook 05.

    Checks first that the model was built under that policy with float32 logits
    (``check_policy``). Under ``mixed_float16`` the Adam optimizer is wrapped in a dynamic
    ``LossScaleOptimizer`` (Keras' ``compile`` would do this too; doing it here makes the
    scale explicit and checked). bfloat16 has float32's exponent range: no loss scaling.
    """
    from . import models

    pol = check_policy(model, policy)
    import tf_keras

    opt = tf_keras.optimizers.Adam(learning_rate)
    if pol.name == "mixed_float16":
        opt = loss_scale_optimizer(opt, initial_scale, dynamic=True, growth_steps=growth_steps)
    return models.compile_classifier(model, optimizer=opt)


# --- gradients and loss scaling ------------------------------------------------------------

def _loss_fn():
    import tf_keras

    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def gradients(model, x, y, loss_scale: float = 1.0, activations: bool = False, training: bool = True) -> dict:
    """Gradients of the mean cross-entropy on (x, y), computed with the loss scaled by ``loss_scale``. Notebook 05.

    Returns ``{"loss": float, "weights": [arrays], "activations": [arrays] or None}``, all
    float32 and divided by the scale again, so they are comparable across scales: a value
    the low-precision backward pass flushed to zero stays zero. ``activations=True`` also
    returns the gradient with respect to each layer's output (what Micikevicius et al.
    plot). The model itself is not changed.
    """
    import tensorflow as tf
    import tf_keras

    check_model(model, what="gradients")
    scale = _check_scale(loss_scale)
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    probe = tf_keras.Model(model.inputs, [layer.output for layer in layers]) if activations else None
    loss_fn = _loss_fn()
    with tf.GradientTape() as tape:
        if probe is not None:
            outs = probe(x, training=training)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            logits = outs[-1]
        else:
            outs, logits = [], model(x, training=training)
        loss = loss_fn(y, logits)
        scaled = tf.cast(loss, tf.float32) * scale
    grads_w, grads_a = tape.gradient(scaled, [model.trainable_variables, outs])

    def unscale(gs, wrt):
        return [np.zeros(tuple(t.shape), np.float32) if g is None else (tf.cast(g, tf.float32) / scale).numpy()
                for g, t in zip(gs, wrt)]

    return {"loss": float(loss), "weights": unscale(grads_w, model.trainable_variables),
            "activations": unscale(grads_a, outs) if activations else None}


def magnitudes(arrays) -> np.ndarray:
    """All absolute values of a list of arrays, flattened into one float64 array. Notebook 05."""
    if arrays is None:
        return np.zeros(0)
    parts = [np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays]
    return np.concatenate(parts) if parts else np.zeros(0)


def gradient_magnitudes(model, x, y, activations: bool = True) -> dict:
    """Absolute float32 gradient values of weights (and activations) on one batch. Notebook 05.

    ``{"weights": flat array, "activations": flat array, "loss": float}``: the raw material for
    the histogram against float16's limits and for ``underflow_stats``.
    """
    got = gradients(model, x, y, activations=activations)
    out = {"loss": got["loss"], "weights": magnitudes(got["weights"])}
    if activations:
        out["activations"] = magnitudes(got["activations"])
    return out


def underflow_stats(values, fmt: str = "float16", scale: float = 1.0) -> dict:
    """What happens to non-zero values multiplied by ``scale`` and stored in ``fmt``. Notebook 05.

    Fractions of the non-zero values that flush to zero, that land among the subnormals
    (below the smallest normal: fewer significant bits), and that overflow to inf.
    """
    _check_format(fmt, FLOAT_FORMATS)
    scale = _check_scale(scale)
    v = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    v = v[v > 0] * scale
    info = finfo(fmt)
    if v.size == 0:
        return {"nonzero": 0, "flushed": 0.0, "subnormal": 0.0, "overflow": 0.0}
    with np.errstate(over="ignore"):
        stored = v.astype(dtype_of(fmt)).astype(np.float64)
    flushed = stored == 0
    overflow = ~np.isfinite(stored)
    subnormal = ~flushed & (stored < float(info.smallest_normal))
    return {"nonzero": int(v.size), "flushed": float(flushed.mean()),
            "subnormal": float(subnormal.mean()), "overflow": float(overflow.mean())}


def suggest_loss_scale(values, fmt: str = "float16") -> float:
    """The largest power of two by which ``values`` can be multiplied without overflowing ``fmt``. Notebook 05."""
    _check_format(fmt, FLOAT_FORMATS)
    v = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        raise ValueError("suggest_loss_scale needs at least one finite non-zero value.")
    top = float(finfo(fmt).max)
    return float(2.0 ** math.floor(math.log2(top / v.max())))


def lso_step(model, optimizer, x, y, force_overflow: bool = False) -> dict:
    """One training step with a ``LossScaleOptimizer``, reporting the loss scale and if the step ran. Notebook 05.

    The loss is scaled (``get_scaled_loss``), differentiated, unscaled
    (``get_unscaled_gradients``) and applied: Keras skips the update when any gradient is
    inf/NaN and halves the scale. ``force_overflow`` multiplies the loss by 2**16 before
    scaling, so the float16 backward pass really overflows (a float32 model does not).
    Returns ``{"loss", "scale_before", "scale_after", "applied", "finite"}``.
    """
    import tensorflow as tf
    import tf_keras

    check_model(model, need_graph=False, what="lso_step")
    if not isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
        raise TypeError("lso_step needs a keras.mixed_precision.LossScaleOptimizer "
                        "(precision.loss_scale_optimizer(...)).")
    loss_fn = _loss_fn()
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    scale_before = float(optimizer.loss_scale)
    with tf.GradientTape() as tape:
        loss = tf.cast(loss_fn(y, model(x, training=True)), tf.float32)
        boosted = loss * (2.0 ** 16) if force_overflow else loss
        scaled = optimizer.get_scaled_loss(boosted)
    grads = optimizer.get_unscaled_gradients(tape.gradient(scaled, variables))
    finite = all(bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads if g is not None)
    optimizer.apply_gradients(zip(grads, variables))
    applied = any(not np.array_equal(b, v.numpy()) for b, v in zip(before, variables))
    return {"loss": float(loss), "scale_before": scale_before, "scale_after": float(optimizer.loss_scale),
            "applied": applied, "finite": finite}


# --- measurement ---------------------------------------------------------------------------

def activation_memory(model, x, training: bool = False):
    """Bytes of each layer's output tensor for the batch ``x``, measured from the tensors. Notebook 05.

    Runs one forward pass through a probe model that returns every layer's output and
    reads each tensor's dtype and shape: these are the activations a training step keeps
    for the backward pass. Sum the ``bytes`` column for the total per batch.
    """
    import pandas as pd
    import tf_keras

    check_model(model, what="activation_memory")
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    probe = tf_keras.Model(model.inputs, [layer.output for layer in layers])
    outs = probe(x, training=training)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    rows = [{"layer": layer.name, "dtype": t.dtype.name, "shape": tuple(t.shape),
             "bytes": int(np.prod(t.shape)) * t.dtype.size} for layer, t in zip(layers, outs)]
    return pd.DataFrame(rows, columns=["layer", "dtype", "shape", "bytes"])


@dataclass
class SideBySide:
    """Per-step losses and per-chunk timings of models trained in interleaved chunks."""

    names: list
    chunk: int
    losses: dict = field(default_factory=dict)  # name -> list of per-step losses
    chunk_seconds: dict = field(default_factory=dict)  # name -> seconds of each chunk (round 0 = warm-up)

    def step_ms(self) -> dict:
        """Median milliseconds per step of each model, warm-up round left out."""
        return {n: 1000 * float(np.median(np.asarray(s[1:] or s) / self.chunk))
                for n, s in self.chunk_seconds.items()}

    def ratios(self, reference: str) -> dict:
        """Median over rounds of (this model's chunk time / the reference's in the same round)."""
        if reference not in self.chunk_seconds:
            raise KeyError(f"{reference!r} was not trained; have {self.names}")
        ref = np.asarray(self.chunk_seconds[reference])
        out = {}
        for n, s in self.chunk_seconds.items():
            r = np.asarray(s) / ref
            out[n] = float(np.median(r[1:] if len(r) > 1 else r))
        return out


def train_side_by_side(runs: dict, x, y, steps: int, chunk: int, batch_size: int = 128,
                       seed: int = 0, on_chunk=None, desc: str = "training side by side") -> SideBySide:
    """Train compiled models on the same batches, interleaving chunks of steps for fair timing. Notebook 05.

    Every model sees the same sequence of batches (a fixed shuffle of (x, y), repeated as
    needed). Training goes in rounds: in each round every model runs ``chunk`` steps with
    ``train_on_batch``, the order of the models rotating from round to round, and each chunk
    is timed. On a machine shared with other work, timing chunk by chunk, in alternation,
    and taking medians keeps a burst of load from falling on one variant only. Round 0 also
    traces the training function: it is left out of the timings.
    ``on_chunk(name, model, step)`` is called after each chunk (e.g. to collect gradients).
    A progress bar (``desc``) counts the training steps of all the models together.
    """
    from . import progress

    if not runs:
        raise ValueError("train_side_by_side needs at least one model: {name: compiled model}.")
    for name, model in runs.items():
        check_model(model, need_graph=False, what="train_side_by_side")
        if model.optimizer is None:
            raise ValueError(f"Model {name!r} is not compiled: use precision.compile_mixed(model, policy).")
    if steps < 1 or chunk < 1:
        raise ValueError(f"steps and chunk must be >= 1, got steps={steps}, chunk={chunk}.")
    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    per_epoch = max(1, len(x) // batch_size)
    order = np.concatenate([rng.permutation(len(x))[: per_epoch * batch_size]
                            for _ in range(int(np.ceil(steps / per_epoch)))])
    names = list(runs)
    result = SideBySide(names=names, chunk=chunk, losses={n: [] for n in names},
                        chunk_seconds={n: [] for n in names})
    rounds = int(np.ceil(steps / chunk))
    bar = progress.bar(total=steps * len(names), desc=desc, unit="step")
    for r in range(rounds):
        first, last = r * chunk, min(steps, (r + 1) * chunk)
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            model = runs[name]
            start = time.perf_counter()
            for step in range(first, last):
                idx = order[step * batch_size:(step + 1) * batch_size]
                out = model.train_on_batch(x[idx], y[idx])
                result.losses[name].append(float(out[0] if isinstance(out, (list, tuple)) else out))
            elapsed = time.perf_counter() - start
            # Time per full chunk so that a short last chunk is comparable.
            result.chunk_seconds[name].append(elapsed * chunk / (last - first))
            bar.update(last - first)
            if on_chunk is not None:
                on_chunk(name, model, last)
    bar.close()
    return result


# --- hardware ------------------------------------------------------------------------------

def read_cpuinfo(path: str = "/proc/cpuinfo") -> str | None:
    """The text of /proc/cpuinfo, or None where there is none (macOS, Windows). Notebook 05."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def cpu_flags(cpuinfo_text: str | None) -> dict:
    """Which of ``CPU_FLAGS`` the CPU reports: {flag: True/False}, or {flag: None} if unknown. Notebook 05."""
    if cpuinfo_text is None:
        return {flag: None for flag in CPU_FLAGS}
    found: set[str] = set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    if not found:
        return {flag: None for flag in CPU_FLAGS}
    return {flag: flag in found for flag in CPU_FLAGS}


def gpu_devices() -> list[dict]:
    """Physical GPUs TensorFlow sees, with their names and compute capabilities. Notebook 05."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # noqa: BLE001  (details are best effort)
            details = {}
        out.append({"device": gpu.name, "name": details.get("device_name", gpu.name),
                    "compute_capability": details.get("compute_capability")})
    return out


def _onednn_enabled():
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001  (private API; unknown if it moved)
        return None


def hardware_support(cpuinfo_text: str | None = ..., gpus: list | None = None) -> dict:
    """Detect native float16 / bfloat16 arithmetic on this machine: GPUs and CPU flags. Notebook 05.

    * GPU: tensor cores for float16 need compute capability >= 7.0 (Volta+), for bfloat16
      >= 8.0 (Ampere+).
    * CPU: ``avx512_bf16`` / ``amx_bf16`` give bfloat16, ``avx512_fp16`` / ``amx_fp16`` float16
      arithmetic, read from /proc/cpuinfo (TensorFlow reaches them through oneDNN).

    Nothing is assumed: where the flags cannot be read the answer is None (unknown), not
    False. ``cpuinfo_text`` and ``gpus`` can be given to test the logic.
    """
    from .env import hardware_report

    if cpuinfo_text is ...:
        cpuinfo_text = read_cpuinfo()
    if gpus is None:
        gpus = gpu_devices()
    flags = cpu_flags(cpuinfo_text)
    cpu_name = None
    for line in (cpuinfo_text or "").splitlines():
        if line.startswith("model name"):
            cpu_name = line.split(":", 1)[1].strip()
            break
    if cpu_name is None:
        cpu_name = hardware_report()["cpu"]

    def cc_at_least(gpu, need):
        cc = gpu.get("compute_capability")
        return None if cc is None else tuple(cc) >= need

    gpu_f16 = [g for g in gpus if cc_at_least(g, GPU_FLOAT16_CC)]
    gpu_bf16 = [g for g in gpus if cc_at_least(g, GPU_BFLOAT16_CC)]

    def cpu_has(kind):
        vals = [v for f, v in flags.items() if CPU_FLAGS[f] == kind]
        if any(v is True for v in vals):
            return True
        return None if any(v is None for v in vals) else False

    def combine(gpu_list, cpu_value):
        if gpu_list or cpu_value is True:
            return True
        if cpu_value is None or any(g.get("compute_capability") is None for g in gpus):
            return None
        return False

    cpu_f16, cpu_bf16 = cpu_has("float16"), cpu_has("bfloat16")
    return {
        "cpu": cpu_name, "cpu_flags": flags, "gpus": gpus, "onednn": _onednn_enabled(),
        "cpu_float16": cpu_f16, "cpu_bfloat16": cpu_bf16,
        "gpu_float16": bool(gpu_f16), "gpu_bfloat16": bool(gpu_bf16),
        "float16_units": combine(gpu_f16, cpu_f16), "bfloat16_units": combine(gpu_bf16, cpu_bf16),
    }


def hardware_table(support: dict | None = None):
    """``hardware_support()`` as a small DataFrame for display. Notebook 05."""
    import pandas as pd

    s = support or hardware_support()

    def word(v):
        return {True: "yes", False: "no", None: "unknown"}[v]

    rows = [{"what": "CPU", "value": s["cpu"]},
            {"what": "oneDNN enabled in TensorFlow", "value": word(s["onednn"])}]
    rows += [{"what": f"CPU flag {flag} ({CPU_FLAGS[flag]})", "value": word(v)}
             for flag, v in s["cpu_flags"].items()]
    if s["gpus"]:
        rows += [{"what": f"GPU {g['name']}", "value": f"compute capability {g['compute_capability']}"}
                 for g in s["gpus"]]
    else:
        rows.append({"what": "GPU", "value": "none found"})
    rows += [{"what": "native float16 arithmetic", "value": word(s["float16_units"])},
             {"what": "native bfloat16 arithmetic", "value": word(s["bfloat16_units"])}]
    return pd.DataFrame(rows).set_index("what")
