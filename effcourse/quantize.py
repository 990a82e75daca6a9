"""Quantization-aware training and interleaved LiteRT latency (notebook 03; reused by 02, 04, 08, 09).

Notebook 03 writes the affine arithmetic, the converter calls and tfmot's ``quantize_model`` in
plain cells, and shows that ``qat`` gives the same model as its plain fine-tuning. What stays here
is what later notebooks reuse: ``quantize_aware`` / ``qat`` (04's pipelines, 09's rebuilt QAT
models) and ``compare_latency`` (02, 03, 08 and 09).
"""

from __future__ import annotations

import re

from . import convert, models, timing
from .errors import EffcourseError


class QuantizeError(EffcourseError, ValueError):
    """A quantization-aware training request that cannot work (a layer tfmot cannot annotate).

    Introduced in notebook 03.
    """


_FIX = (
    "Either replace the layer by a supported one, or annotate it yourself: wrap it with "
    "tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=<your QuantizeConfig>) "
    "(tfmot's 'Quantization aware training comprehensive guide' shows one), then pass "
    "custom_objects={'YourQuantizeConfig': YourQuantizeConfig}."
)


def quantize_aware(model, custom_objects: dict | None = None):
    """A quantization-aware copy of a tf_keras model: tfmot's ``quantize_model`` on a clone.

    Layers wrapped with ``quantize_annotate_layer`` keep their ``QuantizeConfig`` (name its class
    in ``custom_objects``). Raises ``QuantizeError`` naming a layer QAT cannot annotate.

    Introduced in notebook 03.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras

    models.check_model(model, what="quantize_aware (tfmot QAT)")
    for layer in model.layers:
        if isinstance(layer, (tf_keras.Model, tf_keras.layers.Lambda)):
            kind = "a whole model nested inside the model" if isinstance(layer, tf_keras.Model) else "Lambda"
            raise QuantizeError(f"QAT cannot annotate layer {layer.name!r} ({kind}). {_FIX}")
    with tfmot.quantization.keras.quantize_scope(custom_objects or {}):
        try:
            return tfmot.quantization.keras.quantize_model(models.clone(model, compile_like=False))
        except RuntimeError as err:
            match = re.search(r"Layer (\S+):<class '[\w.]*?(\w+)'> is not supported", str(err))
            if not match:
                raise
            raise QuantizeError(
                f"QAT cannot annotate layer {match.group(1)!r} ({match.group(2)}): tfmot's default "
                f"8-bit scheme has no rule for it. {_FIX}"
            ) from err


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

    ``quantize_aware`` (``model`` is never modified), compiled like the baselines at a small
    ``learning_rate`` and trained for ``epochs`` on a ``data.MNIST``; convert the result with
    ``convert.to_tflite(q, "int8", ..)``.

    Introduced in notebook 03.
    """
    from . import train
    from .env import seed_everything
    from .validate import mnist_like, positive_int

    mnist_like(data, "quantize.qat")
    epochs = positive_int(epochs, "epochs")
    q_model = models.compile_classifier(quantize_aware(model, custom_objects), learning_rate=learning_rate)
    seed_everything(seed, deterministic=False)  # seeds only; keeps determinism as setup() set it
    desc = f"quantization-aware training of {model.name}"
    train.fit(q_model, data, epochs, batch_size, verbose=verbose, seed=seed, desc=desc)
    return q_model


def compare_latency(
    variants: dict,
    sample,
    profile=None,
    delegate: str = "auto",
    rounds: int | None = None,
    desc: str | None = None,
):
    """Single-sample latency of several models, interleaved, with rotating order (a DataFrame).

    ``variants``: {name: .tflite bytes (opened with ``delegate``: ``"auto"``, LiteRT's XNNPACK, or
    ``"none"``) or a model with an ``invoker`` (``convert.TFLiteModel``, ``deploy.OnnxModel``)}.
    Per variant, the median over ``timing.interleaved``'s rounds of each round's median and 90th
    percentile, so that a burst of load hits all variants alike; ``desc`` shows a progress bar.

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
