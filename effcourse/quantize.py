"""Quantization-aware training and interleaved LiteRT latency (notebook 03; reused by 02, 04, 08, 09).

Notebook 03 writes the affine arithmetic (scale, zero point), the post-training converter
calls and tfmot's ``quantize_model`` in plain cells, and shows that this module's ``qat`` gives
the same model as its plain fine-tuning. What stays here is what later notebooks reuse:

* ``quantize_aware`` / ``qat``: tfmot's ``quantize_model`` on a clone, with a clear
  ``QuantizeError`` naming a layer tfmot cannot annotate, then a short fine-tuning (04's
  pipelines, 09's rebuilt QAT models);
* ``compare_latency``: several .tflite files timed interleaved on ``timing.interleaved``
  (02, 03, 08, and ``deploy.compare_latency`` for both runtimes).
"""

from __future__ import annotations

import re


from . import convert, models, progress, timing
from .errors import EffcourseError


class QuantizeError(EffcourseError, ValueError):
    """A quantization-aware training request that cannot work (a layer tfmot cannot annotate).

    Introduced in notebook 03.
    """


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


# --- latency, measured fairly ----------------------------------------------------------------


def compare_latency(
    variants: dict,
    sample,
    profile=None,
    delegate: str = "auto",
    rounds: int | None = None,
    desc: str | None = None,
):
    """Single-sample latency of several models, interleaved, with rotating order.

    ``variants``: {name: .tflite bytes (opened at the profile's thread count with ``delegate``:
    ``"auto"``, LiteRT's default XNNPACK, or ``"none"``, the built-in kernels) or a model with
    an ``invoker`` (``convert.TFLiteModel``, ``deploy.OnnxModel``), used as it is}. On the
    course's timing core (``timing.interleaved``): each model warms up (the profile's warm-up
    runs), then in each round every model runs the profile's ``latency_runs`` single-sample
    invokes, the order rotating from round to round; the result per variant is the median over
    rounds of the round's median and 90th percentile, so that a burst of load on a shared
    machine hits all variants alike. Returns a DataFrame indexed by variant. ``desc`` shows a
    progress bar over the rounds with that caption.

    Introduced in notebook 03.
    """
    import pandas as pd

    from . import profile as _profile

    prof = profile or _profile.active()
    if not variants:
        raise ValueError("compare_latency needs at least one model: {name: tflite bytes}.")
    rounds = rounds or max(3, prof.repeats)
    runners = {
        k: v
        if hasattr(v, "invoker")
        else convert.TFLiteModel(v, threads=prof.latency_threads, delegate=delegate)
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
            "delegated": r.delegated() if isinstance(r, convert.TFLiteModel) else None,
            "rounds": rounds,
            "runs_per_round": prof.latency_runs,
        }
        for name, r in runners.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")
