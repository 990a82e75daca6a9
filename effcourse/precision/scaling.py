"""Loss scaling: what float16 flushes to zero, and Keras' dynamic scale (notebook 05).

``underflow_stats`` / ``underflow_table`` show which gradient magnitudes float16 flushes to
zero; ``loss_scale_optimizer`` and ``compile_mixed`` wrap the optimizer in a checked
``LossScaleOptimizer``. Notebook 05 computes the gradients and writes the custom loss-scaled
training step itself, in plain ``tf.GradientTape`` cells.
"""

from __future__ import annotations

import math

import numpy as np

from .policies import check_policy

DEFAULT_LOSS_SCALE = 2.0**15  # Keras' initial dynamic loss scale
FLOAT_FORMATS = ("float32", "float16", "bfloat16")


def _dtype(fmt: str):
    """The NumPy dtype of a float format (bfloat16 from ml_dtypes), or a clear error."""
    import ml_dtypes

    if fmt not in FLOAT_FORMATS:
        raise ValueError(f"Unknown number format {fmt!r}; choose one of {', '.join(FLOAT_FORMATS)}.")
    return np.dtype(ml_dtypes.bfloat16 if fmt == "bfloat16" else fmt)


def _finfo(fmt: str):
    import ml_dtypes

    return ml_dtypes.finfo(_dtype(fmt))


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


def loss_scale_optimizer(
    optimizer=None, initial_scale: float = DEFAULT_LOSS_SCALE, dynamic: bool = True, growth_steps: int = 2000
):
    """Wrap an optimizer in Keras' ``LossScaleOptimizer`` after checking the scale.

    Dynamic loss scaling (Micikevicius et al. 2018): multiply the loss by S before the
    backward pass, divide the gradients by S after; if any gradient is inf/NaN skip the
    step and halve S (never below 1), and after ``growth_steps`` finite steps in a row
    double S. Keras itself accepts a scale of 0 or below without complaint; this does not.

    Introduced in notebook 05.
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
            optimizer, dynamic=True, initial_scale=scale, dynamic_growth_steps=int(growth_steps)
        )
    return tf_keras.mixed_precision.LossScaleOptimizer(optimizer, dynamic=False, initial_scale=scale)


def compile_mixed(
    model,
    policy=None,
    learning_rate: float = 1e-3,
    initial_scale: float = DEFAULT_LOSS_SCALE,
    growth_steps: int = 2000,
):
    """Compile a classifier for training under ``policy`` (default: the global one).

    Checks first that the model was built under that policy with float32 logits
    (``check_policy``). Under ``mixed_float16`` the Adam optimizer is wrapped in a dynamic
    ``LossScaleOptimizer`` (Keras' ``compile`` would do this too; doing it here makes the
    scale explicit and checked). bfloat16 has float32's exponent range: no loss scaling.

    Introduced in notebook 05.
    """
    from .. import models

    pol = check_policy(model, policy)
    import tf_keras

    opt = tf_keras.optimizers.Adam(learning_rate)
    if pol.name == "mixed_float16":
        opt = loss_scale_optimizer(opt, initial_scale, dynamic=True, growth_steps=growth_steps)
    return models.compile_classifier(model, optimizer=opt)


def underflow_stats(values, fmt: str = "float16", scale: float = 1.0) -> dict:
    """What happens to non-zero values multiplied by ``scale`` and stored in ``fmt``.

    Fractions of the non-zero values that flush to zero, that land among the subnormals
    (below the smallest normal: fewer significant bits), and that overflow to inf.

    Introduced in notebook 05.
    """
    dtype = _dtype(fmt)
    scale = _check_scale(scale)
    v = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    v = v[v > 0] * scale
    info = _finfo(fmt)
    if v.size == 0:
        return {"nonzero": 0, "flushed": 0.0, "subnormal": 0.0, "overflow": 0.0}
    with np.errstate(over="ignore"):
        stored = v.astype(dtype).astype(np.float64)
    flushed = stored == 0
    overflow = ~np.isfinite(stored)
    subnormal = ~flushed & (stored < float(info.smallest_normal))
    return {
        "nonzero": int(v.size),
        "flushed": float(flushed.mean()),
        "subnormal": float(subnormal.mean()),
        "overflow": float(overflow.mean()),
    }


def underflow_table(snapshots: dict, scale: float = DEFAULT_LOSS_SCALE, fmt: str = "float16"):
    """Per snapshot and gradient kind: what storing the gradients in ``fmt`` does, unscaled and scaled.

    ``snapshots`` maps a label (e.g. "step 30") to a ``gradient_magnitudes`` dict. One row per
    (label, "weights" / "activations"): the loss, the median log2 of the non-zero magnitudes,
    the share below 2^-24 (float16's smallest subnormal), and ``underflow_stats`` at scale 1
    (flushed, subnormal) and at ``scale`` (flushed, overflow). Fractions of the non-zero values.

    Introduced in notebook 05.
    """
    import pandas as pd

    scale = _check_scale(scale)
    at = f"2^{math.log2(scale):g}" if math.log2(scale).is_integer() else f"{scale:g}"
    rows = []
    for label, snap in snapshots.items():
        for kind in ("weights", "activations"):
            if snap.get(kind) is None:
                continue
            g = np.abs(np.asarray(snap[kind], dtype=np.float64))
            nonzero = g[g > 0]
            plain, scaled = underflow_stats(g, fmt), underflow_stats(g, fmt, scale=scale)
            rows.append(
                {
                    "when": label,
                    "gradients of": kind,
                    "loss": snap.get("loss", np.nan),
                    "median log2 |g|": float(np.median(np.log2(nonzero))) if nonzero.size else np.nan,
                    "below 2^-24": float(np.mean(nonzero < 2.0**-24)) if nonzero.size else 0.0,
                    f"flush to 0 in {fmt}": plain["flushed"],
                    f"subnormal in {fmt}": plain["subnormal"],
                    f"flush at scale {at}": scaled["flushed"],
                    f"overflow at scale {at}": scaled["overflow"],
                }
            )
    return pd.DataFrame(rows).set_index(["when", "gradients of"])
