"""ONNX export and ONNX Runtime beside LiteRT: what notebook 09 runs many times (its plain cells
show tf2onnx, ``InferenceSession`` and ``quantize_static`` themselves).

``export`` (tf2onnx at a checked opset; Keras 3 and subclassed models refused), ``OnnxModel`` (a
session with ``convert.TFLiteModel``'s interface), ``compare`` / ``accuracy`` (two runtimes on the
same images), ``compare_latency`` (both runtimes interleaved) and ``litert_file`` (notebook 03's
.tflite file, reused when up to date).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from . import convert
from .errors import EffcourseError

#: The opset the course exports at: tf2onnx 1.17 writes it, ONNX Runtime runs and quantizes it.
DEFAULT_OPSET = 17
#: The lowest opset ``export`` accepts: per-channel QuantizeLinear/DequantizeLinear start at 13.
MIN_OPSET = 13
INPUT_NAME = "input"
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
RUNTIMES = ("LiteRT", "ONNX Runtime")


class DeployError(EffcourseError, ValueError):
    """Something ``effcourse.deploy`` cannot export, run or compare; the message says what to do.

    Introduced in notebook 09.
    """


class OpsetError(DeployError):
    """An ONNX opset the converter (tf2onnx) cannot produce.

    Introduced in notebook 09.
    """


class AgreementError(DeployError):
    """Two runtimes disagree on a model's output: the message names the output and by how much.

    Introduced in notebook 09.
    """


def max_opset() -> int:
    """The highest opset tf2onnx can produce (its opset table), capped by the installed onnx.

    Introduced in notebook 09.
    """
    import onnx
    from tf2onnx import constants

    return int(min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version()))


def export(model, opset: int = DEFAULT_OPSET, path: os.PathLike | None = None) -> bytes:
    """Convert a tf_keras Sequential/Functional model to ONNX bytes with tf2onnx (batch dimension free).

    The input is named ``input`` and the outputs keep the Keras output names. ``path``: also
    write the file there (atomically). A Keras 3 or subclassed model raises
    ``models.ModelError``; an opset outside ``MIN_OPSET`` .. ``max_opset()`` raises
    ``OpsetError``; a conversion failure raises ``DeployError`` with tf2onnx's reason.

    Introduced in notebook 09.
    """
    from .models import check_model

    check_model(model, need_graph=True, what="deploy.export")
    import onnx
    import tensorflow as tf
    import tf2onnx

    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise OpsetError(
            f"tf2onnx {tf2onnx.__version__} with onnx {onnx.__version__} can produce opsets {MIN_OPSET} "
            f"to {top} for the course (below {MIN_OPSET} there is no per-channel quantization); got "
            f"{opset!r}. Use deploy.DEFAULT_OPSET ({DEFAULT_OPSET})."
        )
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)  # its info lines are not the course's
    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=int(opset))
    except Exception as err:  # the converter's own failure, with its message
        raise DeployError(
            f"tf2onnx could not convert {model.name!r} at opset {opset}: {type(err).__name__}: {err}"
        ) from err
    blob = proto.SerializeToString()
    if path is not None:
        from .env import atomic_write_bytes

        atomic_write_bytes(path, blob)
    return blob


def session_options(threads: int = 1, optimization: str = "all"):
    """``onnxruntime.SessionOptions`` with a fixed thread count (intra-op; one inter-op thread,
    sequential execution) and a graph optimisation level (``OPTIMIZATION_LEVELS``).

    Introduced in notebook 09.
    """
    import onnxruntime as ort

    from .validate import positive_int

    threads = positive_int(threads, "threads")
    if optimization not in OPTIMIZATION_LEVELS:
        raise DeployError(
            f"unknown optimisation level {optimization!r}; choose one of {OPTIMIZATION_LEVELS}."
        )
    suffix = {
        "disabled": "DISABLE_ALL",
        "basic": "ENABLE_BASIC",
        "extended": "ENABLE_EXTENDED",
        "all": "ENABLE_ALL",
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_{suffix[optimization]}")
    opts.log_severity_level = 3  # errors only: the session's own warnings are not the course's
    return opts


class OnnxModel:
    """An ONNX model in ONNX Runtime (CPU), with the interface of ``convert.TFLiteModel``:
    ``predict`` / ``run`` on float images, ``invoker`` for single-sample timing.

    ``model``: ONNX bytes or an ``OnnxModel``; ``threads`` and ``optimization`` go to
    ``session_options``.

    Introduced in notebook 09.
    """

    def __init__(self, model, threads: int = 1, optimization: str = "all"):
        import onnxruntime as ort

        self.blob = model.blob if isinstance(model, OnnxModel) else model
        if not isinstance(self.blob, (bytes, bytearray)):
            raise DeployError(f"expected ONNX bytes or an OnnxModel, got {type(model).__name__}.")
        self.threads, self.optimization = threads, optimization
        opts = session_options(threads, optimization)
        try:
            self.session = ort.InferenceSession(bytes(self.blob), opts, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise DeployError(f"ONNX Runtime could not load the model: {type(err).__name__}: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x_batch: np.ndarray) -> np.ndarray:
        """The first output for one batch of float inputs."""
        return self.session.run(self.output_names[:1], {self.input_name: np.asarray(x_batch, np.float32)})[0]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The first output for all of ``x``, in batches."""
        return np.concatenate([self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def invoker(self, sample: np.ndarray):
        """A zero-argument callable running one inference on ``sample`` (for timing).

        The input and output are bound once (``io_binding``), so each call is only the
        session's run: the same work as ``TFLiteModel.invoker``'s ``invoke()``.
        """
        shape = (1, *self.session.get_inputs()[0].shape[1:])
        sample = np.ascontiguousarray(np.asarray(sample, dtype=np.float32).reshape(shape))
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, sample)
        binding.bind_output(self.output_names[0], "cpu")
        self._bound = (binding, sample)  # keep the sample's memory alive while the binding is used
        session = self.session
        return lambda: session.run_with_iobinding(binding)


def runner(model, threads: int = 1, optimization: str = "all"):
    """A ``convert.TFLiteModel`` for .tflite bytes, an ``OnnxModel`` for ONNX bytes (or either, as is).

    Introduced in notebook 09.
    """
    if isinstance(model, (convert.TFLiteModel, OnnxModel)):
        return model
    if convert.is_tflite(model):
        return convert.TFLiteModel(model, threads=threads)
    return OnnxModel(model, threads=threads, optimization=optimization)


def runtime_of(model) -> str:
    """'LiteRT' for a .tflite model, 'ONNX Runtime' for an ONNX one.

    Introduced in notebook 09.
    """
    return "ONNX Runtime" if isinstance(runner(model), OnnxModel) else "LiteRT"


@dataclass
class Agreement:
    """What ``compare`` found: images, how many predicted classes agree, the largest output difference.

    Introduced in notebook 09.
    """

    output: str
    images: int
    agree: int
    max_abs_diff: float
    worst_image: int

    @property
    def disagree(self) -> int:
        return self.images - self.agree

    def as_dict(self) -> dict:
        return {
            "output": self.output,
            "images": self.images,
            "predictions agree": self.agree,
            "disagree": self.disagree,
            "max |logit difference|": self.max_abs_diff,
        }


def _outputs(model, x) -> tuple[str, np.ndarray]:
    """(output name, outputs on x) for a Keras model, a .tflite model or an ONNX model."""
    if not isinstance(model, (bytes, bytearray, convert.TFLiteModel, OnnxModel)):
        from . import measure

        return model.output_names[0], measure.predict_logits(model, x)
    run = runner(model)
    name = run.output_names[0] if isinstance(run, OnnxModel) else run.output_details["name"]
    return name, run.predict(x)


def compare(reference, candidate, x, atol: float = 1e-4, max_disagree: int = 0) -> Agreement:
    """Run both models on ``x`` and check they agree: predicted classes (at most ``max_disagree``
    images differ) and outputs (largest absolute difference at most ``atol``).

    ``reference`` and ``candidate``: a Keras model, a .tflite model (bytes or ``TFLiteModel``)
    or an ONNX model (bytes or ``OnnxModel``). Returns an ``Agreement``; raises
    ``AgreementError`` naming the candidate's output, the number of images whose class
    changed and the largest difference (with the image where it occurs).

    Introduced in notebook 09.
    """
    x = np.asarray(x, dtype=np.float32)
    if not len(x):
        raise DeployError("compare needs at least one image.")
    _, ref = _outputs(reference, x)
    name, got = _outputs(candidate, x)
    if ref.shape != got.shape:
        raise AgreementError(
            f"output {name!r} has shape {got.shape}, the reference's {ref.shape}: not the same model?"
        )
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64)).reshape(len(x), -1).max(axis=1)
    worst = int(np.argmax(diff))
    agree = int(np.sum(ref.argmax(-1) == got.argmax(-1)))
    result = Agreement(name, len(x), agree, float(diff[worst]), worst)
    if result.disagree > max_disagree or not result.max_abs_diff <= atol:
        raise AgreementError(
            f"output {name!r} differs: {result.disagree} of {result.images} images predict another class "
            f"(allowed {max_disagree}), largest difference {result.max_abs_diff:.3g} at image {worst} "
            f"(allowed {atol:g}). Check the export (same weights, same opset and input layout) "
            "or, for a quantized model, compare it against its own float model with a looser atol."
        )
    return result


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Top-1 accuracy of a .tflite or ONNX model (bytes, ``TFLiteModel`` or ``OnnxModel``) on (x, y).

    Introduced in notebook 09.
    """
    pred = runner(model).predict(np.asarray(x, dtype=np.float32), batch_size).argmax(-1)
    return float(np.mean(pred == np.asarray(y)))


def compare_latency(models: dict, sample, profile=None, rounds: int | None = None, desc: str | None = None):
    """Single-sample latency of LiteRT and ONNX Runtime models, interleaved (``quantize.compare_latency``).

    ``models``: {name: .tflite bytes, ONNX bytes, ``TFLiteModel`` or ``OnnxModel``}; bytes are
    opened at the profile's thread count. Returns a DataFrame indexed by name: runtime,
    latency_ms and latency_p90_ms (medians over rounds), threads.

    Introduced in notebook 09.
    """
    from . import profile as _profile
    from . import quantize

    prof = profile or _profile.active()
    if not models:
        raise DeployError("compare_latency needs at least one model: {name: model}.")
    runners = {k: runner(v, threads=prof.latency_threads) for k, v in models.items()}
    table = quantize.compare_latency(runners, sample, prof, rounds=rounds, desc=desc)
    table.insert(0, "runtime", [runtime_of(r) for r in runners.values()])
    return table.assign(threads=[r.threads for r in runners.values()])


def litert_file(model, name: str, mode: str, profile=None, representative=None) -> tuple[bytes, str]:
    """The .tflite file of a baseline in a conversion mode, and where it came from.

    Notebooks 01 and 03 save ``build/models/<profile>/<name>_<mode>.tflite``; the file is
    reused when it is newer than the cached baseline it was converted from, otherwise the
    model is converted here (``convert.to_tflite``) and the file written. Returns (bytes,
    ``"reused"`` or ``"converted"``).

    Introduced in notebook 09.
    """
    from . import env, models
    from . import profile as _profile

    prof = profile or _profile.active()
    path = env.build_dir("models", prof.name) / f"{name}_{mode}.tflite"
    trained = models.cache_dir(prof) / f"{name}.keras"
    if path.is_file() and convert.is_tflite(path) and trained.is_file():
        if path.stat().st_mtime >= trained.stat().st_mtime:
            return path.read_bytes(), "reused"
    blob = convert.to_tflite(model, mode, representative=representative if mode.startswith("int8") else None)
    convert.save(blob, path)
    return blob, "converted"
