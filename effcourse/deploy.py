"""ONNX export and ONNX Runtime sessions for notebook 09's sweeps; its plain cells show
``tf2onnx.convert.from_keras``, ``InferenceSession`` and ``quantize_static`` themselves.

``export`` (tf2onnx at a checked opset), ``OnnxModel`` (a session with the interface of
``convert.TFLiteModel``, so ``quantize.compare_latency`` times both runtimes alike), ``runner``,
``compare`` and ``accuracy`` (either runtime on the same images) and ``litert_file`` (notebook
03's .tflite file, reused when up to date). The ONNX packages are imported only when needed.
"""

from __future__ import annotations

import importlib
import logging

import numpy as np

from . import convert
from .errors import EffcourseError
from .validate import positive_int

MIN_OPSET = 13  # per-channel QuantizeLinear / DequantizeLinear start at opset 13
LEVELS = {
    "disabled": "DISABLE_ALL",
    "basic": "ENABLE_BASIC",
    "extended": "ENABLE_EXTENDED",
    "all": "ENABLE_ALL",
}


class DeployError(EffcourseError, ValueError):
    """Something ``effcourse.deploy`` cannot export, run or compare; the message says what to do.

    Introduced in notebook 09.
    """


def _require(package: str):
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise DeployError(
            f"notebook 09 needs {package}, which is not installed here: install the course's set with "
            "`pip install -c constraints.txt -e .` (or `make venv`) in the course folder."
        ) from err


def export(model, opset: int = 17, path=None) -> bytes:
    """Convert a tf_keras Sequential/Functional model to ONNX bytes with tf2onnx (batch dimension free).

    The input is named ``input``; ``path``: also write the file there (atomically). A Keras 3
    or subclassed model raises ``models.ModelError``; an opset tf2onnx cannot write, or a
    failed conversion, raises ``DeployError`` saying why.

    Introduced in notebook 09.
    """
    from .models import check_model

    check_model(model, need_graph=True, what="deploy.export")
    onnx, tf2onnx = _require("onnx"), _require("tf2onnx")
    import tensorflow as tf

    top = min(max(tf2onnx.constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise DeployError(
            f"tf2onnx {tf2onnx.__version__} with onnx {onnx.__version__} writes opsets {MIN_OPSET} to "
            f"{top} for the course (below {MIN_OPSET} there is no per-channel quantization); got {opset!r}."
        )
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)  # its info lines are not the course's
    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=int(opset))
    except Exception as err:  # the converter's own failure, with its message
        raise DeployError(f"tf2onnx could not convert {model.name!r}: {type(err).__name__}: {err}") from err
    blob = proto.SerializeToString()
    if path is not None:
        from .env import atomic_write_bytes

        atomic_write_bytes(path, blob)
    return blob


class OnnxModel:
    """An ONNX model in ONNX Runtime (CPU) with ``convert.TFLiteModel``'s ``predict`` and ``invoker``.

    ``threads``: intra-op threads (one inter-op thread, sequential execution); ``optimization``:
    the graph optimisation level, one of ``LEVELS``.

    Introduced in notebook 09.
    """

    def __init__(self, blob: bytes, threads: int = 1, optimization: str = "all"):
        ort = _require("onnxruntime")
        if optimization not in LEVELS:
            raise DeployError(f"unknown optimisation level {optimization!r}; choose one of {list(LEVELS)}.")
        if not isinstance(blob, (bytes, bytearray)):
            raise DeployError(f"expected the bytes of an ONNX file, got {type(blob).__name__}.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads = positive_int(threads, "threads")
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_{LEVELS[optimization]}")
        opts.log_severity_level = 3  # errors only: the session's own warnings are not the course's
        try:
            self.session = ort.InferenceSession(bytes(blob), opts, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise DeployError(f"ONNX Runtime could not load the model: {type(err).__name__}: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The first output for all of ``x``, in batches."""
        x = np.asarray(x, np.float32)
        feeds = ({self.input_name: x[i : i + batch_size]} for i in range(0, len(x), batch_size))
        return np.concatenate([self.session.run([self.output_name], feed)[0] for feed in feeds])

    def invoker(self, sample: np.ndarray):
        """A zero-argument callable running one inference on ``sample``, input and output bound
        once (``io_binding``), so that a call is only the session's run, like ``TFLiteModel``'s."""
        shape = (1, *self.session.get_inputs()[0].shape[1:])
        sample = np.ascontiguousarray(np.asarray(sample, dtype=np.float32).reshape(shape))
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, sample)
        binding.bind_output(self.output_name, "cpu")
        self._bound = (binding, sample)  # keep the sample's memory alive while the binding is used
        return lambda: self.session.run_with_iobinding(binding)


def runner(model, threads: int = 1):
    """A ``convert.TFLiteModel`` for .tflite bytes, an ``OnnxModel`` for ONNX bytes; a runner as is.

    Introduced in notebook 09.
    """
    if isinstance(model, (convert.TFLiteModel, OnnxModel)):
        return model
    if convert.is_tflite(model):
        return convert.TFLiteModel(model, threads=threads)
    return OnnxModel(model, threads=threads)


def compare(reference, candidate, x, atol: float = 1e-4, max_disagree: int = 0) -> dict:
    """Run both models on ``x``: how many images they classify alike, the largest output difference.

    ``reference`` and ``candidate``: a Keras model, or a file's bytes or runner (either
    runtime). Returns a dict for a table row; raises ``DeployError`` when more than
    ``max_disagree`` images change class or an output moves by more than ``atol``.

    Introduced in notebook 09.
    """
    from .measure import predict_logits

    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        raise DeployError("compare needs at least one image.")
    ref, got = (
        predict_logits(m, x) if hasattr(m, "layers") else runner(m).predict(x) for m in (reference, candidate)
    )  # a Keras model, or a file in either runtime
    if ref.shape != got.shape:
        raise DeployError(f"the outputs have shapes {ref.shape} and {got.shape}: not the same model?")
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64)).reshape(len(x), -1).max(axis=1)
    agree = int(np.sum(ref.argmax(-1) == got.argmax(-1)))
    row = {
        "images": len(x),
        "predictions agree": agree,
        "disagree": len(x) - agree,
        "max |logit difference|": float(diff.max()),
    }
    if row["disagree"] > max_disagree or not row["max |logit difference|"] <= atol:
        raise DeployError(
            f"the outputs differ: {row['disagree']} of {len(x)} images predict another class (allowed "
            f"{max_disagree}), largest difference {diff.max():.3g} at image {int(diff.argmax())} (allowed "
            f"{atol:g}). Check the export (same weights, opset and input layout) or, for a quantized "
            "model, compare it against its own float model with a looser atol."
        )
    return row


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Top-1 accuracy of a .tflite or ONNX model (bytes or runner) on (x, y).

    Introduced in notebook 09.
    """
    pred = runner(model).predict(np.asarray(x, dtype=np.float32), batch_size).argmax(-1)
    return float(np.mean(pred == np.asarray(y)))


def litert_file(model, name: str, mode: str, profile, representative=None) -> tuple[bytes, str]:
    """The .tflite file of a cached baseline in a conversion mode, and "reused" or "converted".

    Notebooks 01 and 03 save ``build/models/<profile>/<name>_<mode>.tflite``; it is reused
    when newer than the cached baseline, else converted here and written.

    Introduced in notebook 09.
    """
    from . import env, models

    path = env.build_dir("models", profile.name) / f"{name}_{mode}.tflite"
    trained = models.cache_dir(profile) / f"{name}.keras"
    if path.is_file() and convert.is_tflite(path) and trained.is_file():
        if path.stat().st_mtime >= trained.stat().st_mtime:
            return path.read_bytes(), "reused"
    blob = convert.to_tflite(model, mode, representative=representative if mode.startswith("int8") else None)
    convert.save(blob, path)
    return blob, "converted"
