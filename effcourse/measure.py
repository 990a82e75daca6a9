"""What the course measures: parameters, non-zeros, bytes, MACs, accuracy, latency (notebook 00).

Size: bytes of the deployable file after deterministic gzip (level 9). Speed: single-sample
LiteRT latency at a fixed thread count after warm-up, median and p90. MACs: the
multiply-accumulates of Dense, Conv2D and DepthwiseConv2D kernels per sample.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from . import convert
from .models import check_model


def _require_model(model, what: str):
    if isinstance(model, (bytes, bytearray, str, os.PathLike, convert.TFLiteModel)):
        raise TypeError(f"{what} needs a Keras model; for a .tflite file use measure.tflite_* helpers.")
    check_model(model, need_graph=False, what=what)


def layer_table(model):
    """Per-layer parameters, non-zero weights and sparsity, as a DataFrame (kernels and biases).
    Introduced in notebook 00."""
    import pandas as pd

    _require_model(model, "layer_table")
    rows = []
    for layer in model.layers:
        weights = [w for w in layer.get_weights() if w.size]
        if not weights:
            continue
        params = int(sum(w.size for w in weights))
        nonzero = int(sum(np.count_nonzero(w) for w in weights))
        rows.append((layer.name, type(layer).__name__, params, nonzero, 1 - nonzero / params))
    return pd.DataFrame(rows, columns=["layer", "type", "params", "nonzero", "sparsity"])


def count_params(model) -> int:
    """Number of weights (trainable and not) in a Keras model.
    Introduced in notebook 00."""
    _require_model(model, "count_params")
    return int(sum(np.size(w) for w in model.get_weights()))


def count_nonzero(model) -> int:
    """Number of non-zero weights in a Keras model.
    Introduced in notebook 02."""
    _require_model(model, "count_nonzero")
    return int(sum(np.count_nonzero(w) for w in model.get_weights()))


def dense_fp32_bytes(model) -> int:
    """Bytes of all parameters stored densely in float32: parameters x 4 (the ratio's numerator).
    Introduced in notebook 00."""
    return 4 * count_params(model)


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (level 9, no file name, mtime 0): same input, same output bytes.
    Introduced in notebook 00."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def compressed_size(artifact) -> int:
    """Bytes of a file (path) or a bytes object after deterministic gzip.
    Introduced in notebook 00."""
    if isinstance(artifact, (bytes, bytearray)):
        return len(gzip_bytes(bytes(artifact)))
    if isinstance(artifact, (str, os.PathLike)) and Path(artifact).is_file():
        return len(gzip_bytes(Path(artifact).read_bytes()))
    raise TypeError(f"compressed_size needs bytes or the path of a file, got {type(artifact).__name__}.")


def keras_weights_bytes(model, compressed: bool = True) -> int:
    """Bytes of the model's weights saved as HDF5 (``save_weights``), gzip-compressed by default.
    Introduced in notebook 00. Strip training wrappers first: a wrapped model saves its masks too."""
    _require_model(model, "keras_weights_bytes")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.h5"
        model.save_weights(str(path))
        raw = path.read_bytes()
    return len(gzip_bytes(raw)) if compressed else len(raw)


def macs_table(model):
    """Multiply-accumulates per sample for each Dense / Conv2D / DepthwiseConv2D layer (DataFrame).
    Introduced in notebook 02."""
    import pandas as pd
    import tf_keras

    _require_model(model, "macs_table")
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # look through tfmot wrappers
        if isinstance(inner, tf_keras.layers.DepthwiseConv2D):
            kernel = inner.depthwise_kernel  # (kh, kw, cin, multiplier)
        elif isinstance(inner, (tf_keras.layers.Conv2D, tf_keras.layers.Dense)):
            kernel = inner.kernel  # (kh, kw, cin per group, cout) or (cin, cout)
        else:
            continue
        shape = layer.output_shape[0] if isinstance(layer.output_shape, list) else layer.output_shape
        positions = int(np.prod(shape[1:-1]))  # output pixels (1 for a Dense layer on vectors)
        macs = positions * int(np.prod(kernel.shape.as_list()))
        rows.append({"layer": layer.name, "type": type(inner).__name__, "macs": macs})
    return pd.DataFrame(rows, columns=["layer", "type", "macs"])


def macs(model) -> int:
    """Total multiply-accumulates per sample (see ``macs_table``).
    Introduced in notebook 00."""
    return int(macs_table(model)["macs"].sum())


def predict_logits(model, x, batch_size: int = 512) -> np.ndarray:
    """Outputs of a Keras model or a .tflite model (bytes, path or TFLiteModel) on ``x``.
    Introduced in notebook 03."""
    if isinstance(model, convert.TFLiteModel):
        return model.predict(x, batch_size)
    if isinstance(model, (bytes, bytearray, str, os.PathLike)):
        return convert.TFLiteModel(model).predict(x, batch_size)  # a clear error if not a .tflite
    _require_model(model, "predict_logits")
    return model.predict(x, batch_size=batch_size, verbose=0)


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Top-1 accuracy of a Keras model or a .tflite model on (x, y).
    Introduced in notebook 00."""
    pred = np.argmax(predict_logits(model, x, batch_size), axis=-1)
    return float(np.mean(pred == np.asarray(y)))


def latency(tflite_model, sample=None, runs=200, warmup=20, threads=1, rounds=1) -> dict:
    """Single-sample latency of a .tflite model in LiteRT: median and p90 in milliseconds.
    Introduced in notebook 00.

    ``warmup`` untimed runs, then ``rounds`` x ``runs`` timed ``invoke`` calls on one sample
    (inputs set once), with the course's timing core (``effcourse.timing``).
    """
    from . import timing

    invoke = convert.TFLiteModel(tflite_model, threads=threads).invoker(sample)
    t = timing.interleaved({"model": invoke}, rounds=rounds, runs=runs, warmup=warmup)["model"]
    return {
        "latency_ms": t.median * 1000.0,
        "latency_p90_ms": t.p90 * 1000.0,
        "threads": threads,
        "runs": runs,
    }


def tflite_report(tflite_model, x, y, profile=None) -> dict:
    """Accuracy, compressed size and latency of a .tflite model, ready for ``results.record``.
    Introduced in notebook 01."""
    from . import profile as _profile

    prof = profile or _profile.active()
    blob = convert.TFLiteModel(tflite_model).blob
    lat = latency(
        blob, x[:1], runs=prof.latency_runs, warmup=prof.latency_warmup, threads=prof.latency_threads
    )
    out = {"accuracy": accuracy(blob, x, y), "size_bytes": compressed_size(blob), "raw_bytes": len(blob)}
    return dict(out, latency_ms=lat["latency_ms"], latency_p90_ms=lat["latency_p90_ms"])
