"""Quantization: the affine arithmetic in NumPy, quantization-aware training, where the error comes from (notebook 03).

Affine (asymmetric) quantization maps a real value ``x`` to an integer ``q``::

    q = clip(round(x / scale) + zero_point, q_min, q_max)      x ~ scale * (q - zero_point)

``scale`` is the step between two neighbouring integers, ``zero_point`` the integer that
stands for the real 0 (exactly representable, so zero padding and ReLU cost no error).
TFLite's int8 scheme, which the converter applies and the functions here reproduce:

* **weights**: symmetric (``zero_point = 0``), narrow range [-127, 127], one scale per
  output channel: ``scale_c = max|w_c| / 127``;
* **activations**: asymmetric, full range [-128, 127], one scale per tensor, from the
  minimum and maximum seen on the representative (calibration) data, widened to include 0.

Post-training conversion itself lives in ``effcourse.convert`` (``to_tflite`` modes); this
module adds the teaching arithmetic, quantization-aware training (a thin wrapper over
tfmot's ``quantize_model``), the per-layer error between a float and a quantized .tflite
model, and an interleaved latency comparison.
"""

from __future__ import annotations

import re

import numpy as np

from . import convert, models, progress, timing
from .errors import EffcourseError

DTYPES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


class QuantizeError(EffcourseError, ValueError):
    """A quantization request that cannot work (unsupported type, layer QAT cannot annotate).

    Introduced in notebook 03.
    """


# --- the arithmetic, in NumPy ----------------------------------------------------------------


def qrange(dtype: str = "int8", narrow_range: bool = False) -> tuple[int, int]:
    """The integer range (q_min, q_max) of a target type; narrow range drops the lowest value.

    Introduced in notebook 03.
    """
    if dtype not in DTYPES:
        raise QuantizeError(
            f"Unsupported target type {dtype!r}: integer quantization here supports "
            f"{', '.join(DTYPES)}. For float16 use convert.to_tflite(model, 'float16')."
        )
    lo, hi = DTYPES[dtype]
    return (lo + 1, hi) if narrow_range else (lo, hi)


def affine_params(x_min, x_max, dtype: str = "int8", narrow_range: bool = False):
    """Scale and zero point mapping the real range [x_min, x_max] onto the integers of ``dtype``.

    The range is first widened to include 0; ``scale = (x_max - x_min) / (q_max - q_min)``
    and ``zero_point = round(q_min - x_min / scale)``. Works elementwise on arrays (one
    range per channel). A range of width 0 gets scale 1 (any scale represents 0 exactly).

    Introduced in notebook 03.
    """
    q_min, q_max = qrange(dtype, narrow_range)
    lo = np.minimum(np.asarray(x_min, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(x_max, dtype=np.float64), 0.0)
    if np.any(~np.isfinite(lo)) or np.any(~np.isfinite(hi)):
        raise QuantizeError("The range to quantize is not finite (NaN or inf in the data).")
    if np.any(hi < lo):
        raise QuantizeError("x_max must be >= x_min.")
    width = hi - lo
    scale = np.where(width > 0, width / (q_max - q_min), 1.0)
    zero_point = np.clip(np.round(q_min - lo / scale), q_min, q_max).astype(np.int64)
    return scale, zero_point


def symmetric_params(x, axis: int | None = None, dtype: str = "int8"):
    """TFLite's weight scheme: zero point 0, narrow range, ``scale = max|x| / q_max`` per tensor or per channel.

    ``axis`` is the channel axis to keep (the output channels: -1 for Keras kernels);
    ``None`` gives one scale for the whole tensor.

    Introduced in notebook 03.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise QuantizeError("Cannot quantize an empty tensor.")
    _, q_max = qrange(dtype, narrow_range=True)
    if axis is None:
        amax = np.max(np.abs(x))
    else:
        axis = axis % x.ndim
        amax = np.max(np.abs(x), axis=tuple(i for i in range(x.ndim) if i != axis))
    scale = np.where(amax > 0, amax / q_max, 1.0)
    return scale, np.zeros(np.shape(scale), dtype=np.int64)


def _along(param, ndim: int, axis: int | None):
    param = np.asarray(param)
    if axis is None or param.ndim == 0:
        return param
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return param.reshape(shape)


def quantize(
    x, scale, zero_point, dtype: str = "int8", narrow_range: bool = False, axis: int | None = None
) -> np.ndarray:
    """Real values to integers: ``clip(round(x / scale) + zero_point)`` (per channel along ``axis``).

    Introduced in notebook 03.
    """
    q_min, q_max = qrange(dtype, narrow_range)
    x = np.asarray(x, dtype=np.float64)
    scale = _along(scale, x.ndim, axis)
    zero_point = _along(zero_point, x.ndim, axis)
    if np.any(np.asarray(scale) <= 0):
        raise QuantizeError("scale must be > 0.")
    q = np.round(x / scale) + zero_point
    return np.clip(q, q_min, q_max).astype(np.dtype(dtype))


def dequantize(q, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """Integers back to real values: ``scale * (q - zero_point)`` (per channel along ``axis``).

    Introduced in notebook 03.
    """
    q = np.asarray(q)
    return _along(scale, q.ndim, axis) * (q.astype(np.float64) - _along(zero_point, q.ndim, axis))


def fake_quant(
    x, scale, zero_point, dtype: str = "int8", narrow_range: bool = False, axis: int | None = None
) -> np.ndarray:
    """Quantize then dequantize: the value a quantized model actually computes with.

    Introduced in notebook 03.
    """
    return dequantize(quantize(x, scale, zero_point, dtype, narrow_range, axis), scale, zero_point, axis)


def sqnr_db(reference, approx) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - approx)^2).

    Each 6 dB is about one bit of precision; ``inf`` when the two are identical.

    Introduced in notebook 03.
    """
    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(approx, dtype=np.float64)
    if ref.shape != err.shape:
        raise ValueError(f"sqnr_db: shapes differ, {np.shape(reference)} vs {np.shape(approx)}.")
    noise = float(np.sum(err**2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


# --- what the converter stored, next to the arithmetic by hand --------------------------------


def _layer_of(tensor_name: str) -> str:
    """'lenet5/conv1/Conv2D;...' -> 'conv1' (the Keras layer a TFLite tensor came from)."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def stored_kernels(blob: bytes) -> dict:
    """The quantized kernels a .tflite file stores, by Keras layer name: int values in TFLite
    layout (output channel first), scales and zero points.

    Introduced in notebook 03.
    """
    out = {}
    for t in convert.constant_tensors(blob):
        if t["dtype"] in ("int8", "uint8", "int16") and len(t["shape"]) in (2, 4):
            out[_layer_of(t["name"])] = t
    return out


def stored_activations(blob: bytes):
    """Scale and zero point of every op's output in a quantized .tflite file, in execution
    order (DataFrame): what calibration chose for the activations.

    Introduced in notebook 03.
    """
    import pandas as pd

    runner = convert.TFLiteModel(blob, delegate="none")
    tensors = {t["index"]: t for t in runner.interpreter.get_tensor_details()}
    rows = []
    for op in runner.interpreter._get_ops_details():
        for idx in op["outputs"]:
            det = tensors[int(idx)]
            scale, zero = det["quantization"]
            if np.dtype(det["dtype"]).kind in "iu" and scale:
                rows.append(
                    {
                        "layer": _layer_of(det["name"])
                        if "/" in det["name"]
                        else "input"
                        if op["op_name"] == "QUANTIZE"
                        else "output",
                        "op": op["op_name"],
                        "dtype": np.dtype(det["dtype"]).name,
                        "scale": float(scale),
                        "zero_point": int(zero),
                        "real range": (float(scale * (-128 - zero)), float(scale * (127 - zero)))
                        if det["dtype"] == np.int8
                        else None,
                    }
                )
    return pd.DataFrame(rows)


def weight_check(model, blob: bytes):
    """Per layer: the per-channel scales and int8 weights computed by hand next to the ones in
    the .tflite file, and how far apart they are (DataFrame).

    TFLite stores kernels with the output channel first (Dense: (out, in); Conv2D:
    (out, kh, kw, in)); Keras keeps it last, hence ``moveaxis(kernel, -1, 0)``. A weight
    that sits on a rounding tie may differ by one step (float32 arithmetic and round-half-
    away-from-zero in TFLite); ``differences off a tie`` counts any other difference (0).

    Introduced in notebook 03.
    """
    import pandas as pd

    models.check_model(model, need_graph=False, what="weight_check")
    stored = stored_kernels(blob)
    if not stored:
        raise QuantizeError(
            "The .tflite file holds no integer kernels: convert with mode 'int8', "
            "'int8_io' or 'dynamic' first."
        )
    rows = []
    for layer in model.layers:
        if layer.name not in stored or not layer.get_weights():
            continue
        t = stored[layer.name]
        kernel = np.moveaxis(layer.get_weights()[0], -1, 0)
        per_channel = t["scale"] is not None and len(t["scale"]) > 1
        scale, zero = symmetric_params(kernel, axis=0 if per_channel else None)
        q = quantize(kernel, scale, zero, narrow_range=True, axis=0 if per_channel else None)
        # TFLite divides in float32 and rounds halves away from zero; NumPy rounds them to even.
        # A weight within float32 round-off of a tie (k + 1/2 steps) may land one step apart.
        ratio = np.abs(kernel / (_along(scale, kernel.ndim, 0) if per_channel else scale))
        differ = q != t["values"]
        tie = np.abs(ratio - np.floor(ratio) - 0.5) < 1e-5
        rows.append(
            {
                "layer": layer.name,
                "tflite shape": t["shape"],
                "channels": len(np.atleast_1d(t["scale"])),
                "scale min": float(np.min(t["scale"])),
                "scale max": float(np.max(t["scale"])),
                "max scale rel. diff": float(np.max(np.abs(np.atleast_1d(scale) - t["scale"]) / t["scale"])),
                "zero points all 0": bool(np.all(t["zero_point"] == 0)),
                "int8 values equal": float(np.mean(q == t["values"])),
                "max int diff": int(np.max(np.abs(q.astype(int) - t["values"].astype(int)))),
                "differences off a tie": int(np.sum(differ & ~tie)),
            }
        )
    return pd.DataFrame(rows)


# --- quantization-aware training --------------------------------------------------------------


def unsupported_layers(model) -> list[tuple[str, str]]:
    """(name, class) of the layers tfmot's default 8-bit scheme has no rule for.

    Some of these are still fine inside ``quantize_model`` because a layout transform folds
    them into their neighbour (BatchNormalization after a convolution); ``quantize_aware``
    lets tfmot decide and only reports these when it refuses.

    Introduced in notebook 03.
    """
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_annotate
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )

    models.check_model(model, what="unsupported_layers")
    reg = registry.Default8BitQuantizeRegistry()
    bad = []
    for layer in model.layers:
        if isinstance(layer, (tf_keras.layers.InputLayer, quantize_annotate.QuantizeAnnotate)):
            continue
        if isinstance(layer, (tf_keras.layers.Lambda, tf_keras.Model)) or not reg.supports(layer):
            bad.append((layer.name, type(layer).__name__))
    return bad


_FIX = (
    "Either replace the layer by a supported one, or annotate it yourself: wrap it with "
    "tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=<your "
    "QuantizeConfig>) (a QuantizeConfig says which weights and activations to quantize; "
    "tfmot's guide 'Quantization aware training comprehensive guide' shows one), then pass "
    "custom_objects={'YourQuantizeConfig': YourQuantizeConfig}."
)


def quantize_aware(model, custom_objects: dict | None = None):
    """A quantization-aware copy of a tf_keras model: tfmot's ``quantize_model`` on a clone.

    Fake-quantization nodes simulate int8 weights and activations in the forward pass;
    gradients pass straight through the rounding. The model you pass is not modified.
    Layers already wrapped with ``quantize_annotate_layer`` keep their ``QuantizeConfig``
    (name its class in ``custom_objects``). Raises ``models.ModelError`` for Keras 3 and
    subclassed models and ``QuantizeError`` naming any layer QAT cannot annotate.

    Introduced in notebook 03.
    """
    import tf_keras
    import tensorflow_model_optimization as tfmot

    models.check_model(model, what="quantize_aware (tfmot QAT)")
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            raise QuantizeError(
                f"Layer {layer.name!r} is a whole model nested inside the model; QAT "
                "cannot annotate it. Flatten it: build one Sequential/Functional "
                "model from its layers."
            )
        if isinstance(layer, tf_keras.layers.Lambda):
            raise QuantizeError(
                f"Layer {layer.name!r} is a Lambda layer, which QAT cannot annotate "
                "(tfmot would leave it in float silently). " + _FIX
            )
    with tfmot.quantization.keras.quantize_scope(custom_objects or {}):
        copy = models.clone(model, compile_like=False)
        try:
            return tfmot.quantization.keras.quantize_model(copy)
        except RuntimeError as err:
            match = re.search(r"Layer (\S+):<class '[\w.]*?(\w+)'> is not supported", str(err))
            if not match:
                raise
            others = [f"{n} ({c})" for n, c in unsupported_layers(model) if n != match.group(1)]
            also = f" Other layers without a default rule: {', '.join(others)}." if others else ""
            raise QuantizeError(
                f"QAT cannot annotate layer {match.group(1)!r} "
                f"({match.group(2)}): tfmot's default 8-bit scheme has no rule "
                f"for it.{also} {_FIX}"
            ) from err


def _xy(data):
    """(x_train, y_train, validation or None) from a data.MNIST or an (x, y) pair."""
    if hasattr(data, "x_train") and hasattr(data, "y_train"):
        val = (data.x_val, data.y_val) if getattr(data, "x_val", None) is not None else None
        return data.x_train, data.y_train, val
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1], None
    raise TypeError(
        "qat needs the training data as an effcourse data.MNIST (data.load(profile)) "
        f"or an (x, y) pair of arrays; got {type(data).__name__}."
    )


def qat(
    model,
    data,
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-4,
    custom_objects: dict | None = None,
    seed: int = 0,
    verbose: int = 0,
):
    """Quantization-aware training: fine-tune a quantization-aware copy of ``model``.

    Clones ``model`` (never modified), applies ``quantize_aware``, compiles it like the
    baselines (Adam, cross-entropy on logits, accuracy) at a small ``learning_rate`` (we
    fine-tune a trained model) and trains for ``epochs`` on ``data`` (a ``data.MNIST``, whose
    validation split is used, or an ``(x, y)`` pair). Returns the trained tf_keras model;
    its History is ``model.history``. Convert it with ``convert.to_tflite(q, "int8", ..)``.

    Introduced in notebook 03.
    """
    from . import data as _data
    from .env import seed_everything
    from .validate import positive_int

    epochs = positive_int(epochs, "epochs")
    x, y, val = _xy(data)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"qat needs as many labels as images and at least one of each; got {len(x)} "
            f"images and {len(y)} labels."
        )
    q_model = quantize_aware(model, custom_objects)
    models.compile_classifier(q_model, learning_rate=learning_rate)
    seed_everything(seed, deterministic=False)  # seeds only; keeps determinism as setup() set it
    q_model.fit(
        _data.pipeline(x, y, batch_size, shuffle=True, seed=seed),
        validation_data=_data.pipeline(*val, 512) if val is not None else None,
        epochs=int(epochs),
        verbose=verbose,
        callbacks=progress.with_bar([], f"quantization-aware training of {model.name}", verbose),
    )
    return q_model


# --- where the error comes from ---------------------------------------------------------------


def layer_sqnr(float_model, quant_model, x):
    """SQNR (dB) of every op's output in a quantized .tflite model against the float .tflite
    model, on the same inputs ``x`` (DataFrame, in execution order).

    Tensors are matched by name (the converter names an op's output after the Keras layers
    it came from, in both files); the quantized outputs are dequantized first. The error at
    an op includes the error of everything before it. Runs the built-in kernels without
    delegates, so that every intermediate tensor can be read.

    Introduced in notebook 03.
    """
    import pandas as pd

    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError("layer_sqnr needs a batch of inputs (N, ...) with N >= 1.")
    ref = convert.TFLiteModel(float_model, delegate="none", preserve_all_tensors=True).activations(x)
    got = convert.TFLiteModel(quant_model, delegate="none", preserve_all_tensors=True).activations(x)
    rows = []
    for name, (op, values) in ref.items():
        if name not in got:
            continue
        q_op, q_values = got[name]
        if q_values.shape != values.shape:
            continue
        rows.append(
            {
                "layer": _layer_of(name) if "/" in name else "output",
                "op": op,
                "quantized op": q_op,
                "shape": tuple(values.shape[1:]),
                "sqnr_db": sqnr_db(values, q_values),
            }
        )
    if not rows:
        raise QuantizeError(
            "No op outputs with the same names in the two models: compare two "
            "conversions of the same Keras model."
        )
    return pd.DataFrame(rows)


# --- latency, measured fairly ----------------------------------------------------------------


def compare_latency(
    variants: dict,
    sample,
    profile=None,
    delegate: str = "auto",
    rounds: int | None = None,
    desc: str | None = None,
):
    """Single-sample latency of several .tflite models, interleaved, with rotating order.

    Uses the course's timing core (``effcourse.timing.interleaved``): each model warms up
    (the profile's warm-up runs), then in each round every model runs the profile's
    ``latency_runs`` single-sample invokes, the order rotating from round to round; the
    result per variant is the median over rounds of the round's median and 90th percentile,
    so that a burst of load on a shared machine hits all variants alike. ``delegate``:
    ``"auto"`` (the LiteRT default, XNNPACK) or ``"none"`` (built-in kernels only). Returns a
    DataFrame indexed by variant. ``desc`` shows a progress bar over the rounds with that
    caption (none by default: most comparisons take a second).

    Introduced in notebook 03.
    """
    import pandas as pd

    from . import profile as _profile

    prof = profile or _profile.active()
    if not variants:
        raise ValueError("compare_latency needs at least one model: {name: tflite bytes}.")
    rounds = rounds or max(3, prof.repeats)
    runners = {
        k: convert.TFLiteModel(v, threads=prof.latency_threads, delegate=delegate)
        for k, v in variants.items()
    }
    timed = timing.interleaved(
        {k: r.invoker(sample) for k, r in runners.items()},
        rounds=rounds,
        runs=prof.latency_runs,
        warmup=prof.latency_warmup,
        progress_desc=desc,
    )
    rows = {
        name: {
            "latency_ms": timed[name].median * 1000.0,
            "latency_p90_ms": timed[name].p90 * 1000.0,
            "delegated": runners[name].delegated(),
            "rounds": rounds,
            "runs_per_round": prof.latency_runs,
        }
        for name in runners
    }
    return pd.DataFrame.from_dict(rows, orient="index")
