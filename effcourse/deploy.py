"""Deploying beyond LiteRT: ONNX export (tf2onnx) and ONNX Runtime, side by side (notebook 09).

* ``export``: a Keras 2 (tf_keras) Sequential or Functional model to ONNX bytes with
  ``tf2onnx.convert.from_keras``, at a stated opset (``DEFAULT_OPSET``); a Keras 3 or
  subclassed model is refused with ``models.ModelError`` (``models.check_model``), an opset
  the converter cannot produce with ``OpsetError``.
* ``OnnxModel``: an ``onnxruntime.InferenceSession`` with the course's interface
  (``predict``, ``run``, ``invoker`` for single-sample timing, like ``convert.TFLiteModel``),
  built from ``session_options`` (threads, graph optimisation level).
* ``compare``: two models' outputs on the same images: how many predictions agree and the
  largest logit difference; ``AgreementError`` names the output and by how much.
* ``quantize_dynamic`` / ``quantize_static``: ONNX Runtime's own quantization
  (``onnxruntime.quantization``), static QDQ calibrated by an ``ImageReader`` over images.
* ``initializers`` / ``op_counts``: what the ONNX file holds, read from the file itself.
* ``compare_latency``: LiteRT and ONNX Runtime models timed interleaved, one sample at a
  time (``timing.interleaved``), as ``quantize.compare_latency`` does for LiteRT alone.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import convert
from .errors import EffcourseError

#: The opset the course exports at: supported by tf2onnx 1.17 and by ONNX Runtime's CPU
#: kernels and quantizer (per-channel QDQ needs 13 or later).
DEFAULT_OPSET = 17
#: The lowest opset ``export`` accepts: per-axis QuantizeLinear/DequantizeLinear (the static
#: int8 model's per-channel weights) exist from opset 13 on.
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


def _quiet_converter():
    """tf2onnx and onnxruntime.quantization log through Python's logging: keep only errors."""
    for name in ("tf2onnx", "onnxruntime"):
        logger = logging.getLogger(name)
        if logger.level < logging.ERROR:
            logger.setLevel(logging.ERROR)


def max_opset() -> int:
    """The highest opset tf2onnx can produce (its opset table), capped by the installed onnx.

    Introduced in notebook 09.
    """
    import onnx
    from tf2onnx import constants

    return int(min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version()))


def check_opset(opset) -> int:
    """``opset`` as an int if the converter can produce it, else ``OpsetError`` with the range.

    Introduced in notebook 09.
    """
    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise OpsetError(
            f"tf2onnx {_version('tf2onnx')} with onnx {_version('onnx')} can produce opsets "
            f"{MIN_OPSET} to {top} for the course (below {MIN_OPSET} there is no per-channel "
            f"quantization); got {opset!r}. Use deploy.DEFAULT_OPSET ({DEFAULT_OPSET})."
        )
    return int(opset)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


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
    opset = check_opset(opset)
    _quiet_converter()
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as err:  # the converter's own failure, with its message
        raise DeployError(
            f"tf2onnx could not convert {model.name!r} at opset {opset}: {type(err).__name__}: {err}"
        ) from err
    blob = proto.SerializeToString()
    if path is not None:
        from .env import atomic_write_bytes

        atomic_write_bytes(path, blob)
    return blob


def _load(model):
    """ONNX bytes from bytes, a path or an ``OnnxModel``."""
    if isinstance(model, OnnxModel):
        return model.blob
    if isinstance(model, (str, os.PathLike)):
        model = Path(model).read_bytes()
    if not isinstance(model, (bytes, bytearray)):
        raise DeployError(
            f"expected ONNX bytes, a path to a .onnx file or an OnnxModel, got {type(model).__name__}."
        )
    return bytes(model)


def proto(model, check: bool = True):
    """The ``onnx.ModelProto`` of ONNX bytes, a path or an ``OnnxModel`` (checked by ``onnx.checker``
    unless ``check=False``: ONNX Runtime's optimised graphs hold its own contrib ops).

    Introduced in notebook 09.
    """
    import onnx

    blob = _load(model)
    try:
        parsed = onnx.load_from_string(blob)
        if check:
            onnx.checker.check_model(parsed)
    except Exception as err:
        raise DeployError(f"not a valid ONNX model: {type(err).__name__}: {err}") from err
    return parsed


def opset_of(model) -> int:
    """The default-domain opset an ONNX model was written for.

    Introduced in notebook 09.
    """
    return next(int(o.version) for o in proto(model).opset_import if o.domain in ("", "ai.onnx"))


def op_counts(model):
    """How many nodes of each op type the ONNX graph holds (a pandas Series, most common first).

    Introduced in notebook 09.
    """
    import pandas as pd

    return (
        pd.Series([n.op_type for n in proto(model, check=False).graph.node], dtype=object)
        .value_counts()
        .rename("nodes")
    )


def initializers(model):
    """The constant tensors stored in an ONNX file, one row each: name, dtype, shape, elements,
    zeros, zero share and distinct values (read with ``onnx.numpy_helper``).

    Introduced in notebook 09.
    """
    import onnx
    import pandas as pd
    from onnx import numpy_helper

    rows = []
    for init in proto(model).graph.initializer:
        values = numpy_helper.to_array(init)
        rows.append(
            {
                "name": init.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name,
                "shape": tuple(int(d) for d in init.dims),
                "elements": int(values.size),
                "zeros": int(np.count_nonzero(values == 0)),
                "zero share": float(np.mean(values == 0)) if values.size else 0.0,
                "distinct values": int(np.unique(values).size),
            }
        )
    return pd.DataFrame(
        rows, columns=["name", "dtype", "shape", "elements", "zeros", "zero share", "distinct values"]
    )


def session_options(threads: int = 1, optimization: str = "all"):
    """``onnxruntime.SessionOptions`` with a fixed thread count (intra- and inter-op, sequential
    execution) and a graph optimisation level (``OPTIMIZATION_LEVELS``).

    Introduced in notebook 09.
    """
    import onnxruntime as ort

    from .validate import positive_int

    threads = positive_int(threads, "threads")
    levels = dict(
        zip(
            OPTIMIZATION_LEVELS,
            (
                ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            ),
        )
    )
    if optimization not in levels:
        raise DeployError(
            f"unknown optimisation level {optimization!r}; choose one of {OPTIMIZATION_LEVELS}."
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[optimization]
    opts.log_severity_level = 3  # errors only: the session's own warnings are not the course's
    return opts


class OnnxModel:
    """An ONNX model in ONNX Runtime (CPU), with the interface of ``convert.TFLiteModel``:
    ``predict`` / ``run`` on float images, ``invoker`` for single-sample timing.

    ``threads`` and ``optimization`` go to ``session_options``. ``optimized_path``: ONNX
    Runtime writes the graph it actually runs there (after its optimisations).

    Introduced in notebook 09.
    """

    def __init__(self, model, threads: int = 1, optimization: str = "all", optimized_path=None):
        import onnxruntime as ort

        self.blob = _load(model)
        self.threads = threads
        self.optimization = optimization
        opts = session_options(threads, optimization)
        if optimized_path is not None:
            opts.optimized_model_filepath = str(optimized_path)
        try:
            self.session = ort.InferenceSession(
                self.blob, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise DeployError(f"ONNX Runtime could not load the model: {type(err).__name__}: {err}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def size_bytes(self) -> int:
        return len(self.blob)

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

        def invoke():
            session.run_with_iobinding(binding)

        return invoke


def _outputs(model, x) -> tuple[str, np.ndarray]:
    """(output name, outputs on x) for a Keras model, a .tflite model or an ONNX model."""
    from . import measure

    if isinstance(model, OnnxModel):
        return model.output_names[0], model.predict(x)
    if isinstance(model, (bytes, bytearray)) and not convert.is_tflite(model):
        onnx_model = OnnxModel(model)
        return onnx_model.output_names[0], onnx_model.predict(x)
    if isinstance(model, convert.TFLiteModel) or isinstance(model, (bytes, bytearray, str, os.PathLike)):
        runner = model if isinstance(model, convert.TFLiteModel) else convert.TFLiteModel(model)
        return runner.output_details["name"], runner.predict(x)
    return model.output_names[0], measure.predict_logits(model, x)


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


def compare(reference, candidate, x, atol: float = 1e-4, max_disagree: int = 0) -> Agreement:
    """Run both models on ``x`` and check they agree: predicted classes (at most ``max_disagree``
    images differ) and outputs (largest absolute difference at most ``atol``).

    ``reference`` and ``candidate``: a Keras model, a .tflite model (bytes, path or
    ``TFLiteModel``) or an ONNX model (bytes or ``OnnxModel``). Returns an ``Agreement``;
    raises ``AgreementError`` naming the candidate's output, the number of images whose
    class changed and the largest difference (with the image where it occurs).

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
    result = Agreement(
        output=name,
        images=len(x),
        agree=int(np.sum(ref.argmax(-1) == got.argmax(-1))),
        max_abs_diff=float(diff[worst]),
        worst_image=worst,
    )
    if result.disagree > max_disagree or not result.max_abs_diff <= atol:
        raise AgreementError(
            f"output {name!r} differs: {result.disagree} of {result.images} images predict another class "
            f"(allowed {max_disagree}), largest difference {result.max_abs_diff:.3g} at image {worst} "
            f"(allowed {atol:g}). Check the export (same weights, same opset and input layout) "
            "or, for a quantized model, compare it against its own float model with a looser atol."
        )
    return result


class ImageReader:
    """A calibration data reader over images for ``onnxruntime.quantization.quantize_static``:
    one image per ``get_next`` call, then None.

    Introduced in notebook 09.
    """

    def __init__(self, images, input_name: str = INPUT_NAME):
        self.images = np.asarray(images, dtype=np.float32)
        self.input_name = input_name
        self._next = 0

    def get_next(self):
        if self._next >= len(self.images):
            return None
        i, self._next = self._next, self._next + 1
        return {self.input_name: self.images[i : i + 1]}

    def rewind(self):
        self._next = 0


def _quantize(blob: bytes, work) -> bytes:
    """Run ``work(src, dst)`` on files (ONNX Runtime's quantizer works on paths) after its pre-processing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _quiet_converter()
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (Path(tmp) / f"{n}.onnx" for n in ("float", "pre", "quant"))
        src.write_bytes(_load(blob))
        # ONNX shape inference and graph clean-up, as the quantizer expects (symbolic shapes: not needed here)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        work(str(pre), str(dst))
        return dst.read_bytes()


def quantize_dynamic(model) -> bytes:
    """ONNX Runtime's dynamic quantization: int8 weights, activations quantized on the fly per op.

    Introduced in notebook 09.
    """
    from onnxruntime import quantization as oq

    return _quantize(model, lambda src, dst: oq.quantize_dynamic(src, dst, weight_type=oq.QuantType.QInt8))


def quantize_static(model, calibration_images, per_channel: bool = True) -> bytes:
    """ONNX Runtime's static quantization in the QDQ format: int8 weights (per channel by default)
    and int8 activations whose ranges come from running ``calibration_images`` (MinMax).

    Introduced in notebook 09.
    """
    from onnxruntime import quantization as oq

    images = np.asarray(calibration_images, dtype=np.float32)
    if not len(images):
        raise DeployError("quantize_static needs calibration images (e.g. a few hundred training images).")
    input_name = OnnxModel(model).input_name

    def work(src, dst):
        oq.quantize_static(
            src,
            dst,
            ImageReader(images, input_name),
            quant_format=oq.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=oq.QuantType.QInt8,
            weight_type=oq.QuantType.QInt8,
            calibrate_method=oq.CalibrationMethod.MinMax,
        )

    return _quantize(model, work)


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
    if isinstance(model, convert.TFLiteModel) or (
        not isinstance(model, OnnxModel) and convert.is_tflite(model)
    ):
        return "LiteRT"
    return "ONNX Runtime"


def compare_latency(models: dict, sample, profile=None, rounds: int | None = None, desc: str | None = None):
    """Single-sample latency of LiteRT and ONNX Runtime models, interleaved (``timing.interleaved``).

    ``models``: {name: .tflite bytes, ONNX bytes, ``TFLiteModel`` or ``OnnxModel``}; bytes are
    opened at the profile's thread count. Each model warms up (the profile's warm-up), then
    in each of ``rounds`` rounds every model runs the profile's ``latency_runs`` inferences,
    the order rotating. Returns a DataFrame indexed by name: runtime, latency_ms and
    latency_p90_ms (medians over rounds), threads.

    Introduced in notebook 09.
    """
    import pandas as pd

    from . import profile as _profile
    from . import timing

    prof = profile or _profile.active()
    if not models:
        raise DeployError("compare_latency needs at least one model: {name: model}.")
    runners = {k: runner(v, threads=prof.latency_threads) for k, v in models.items()}
    timed = timing.interleaved(
        {k: r.invoker(sample) for k, r in runners.items()},
        rounds=rounds or max(3, prof.repeats),
        runs=prof.latency_runs,
        warmup=prof.latency_warmup,
        progress_desc=desc,
    )
    return pd.DataFrame.from_dict(
        {
            k: {
                "runtime": runtime_of(r),
                "latency_ms": timed[k].median * 1e3,
                "latency_p90_ms": timed[k].p90 * 1e3,
                "threads": r.threads,
            }
            for k, r in runners.items()
        },
        orient="index",
    )


def faster(latency_ms: dict) -> tuple[str, float]:
    """The faster of two measured latencies and by how much: (name, slower / faster).

    Introduced in notebook 09.
    """
    if len(latency_ms) != 2:
        raise DeployError(f"faster compares exactly two latencies, got {len(latency_ms)}.")
    (a, ta), (b, tb) = latency_ms.items()
    if not (ta > 0 and tb > 0):
        raise DeployError(f"latencies must be positive, got {latency_ms}.")
    return (a, tb / ta) if ta <= tb else (b, ta / tb)


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Top-1 accuracy of a .tflite or ONNX model (bytes, ``TFLiteModel`` or ``OnnxModel``) on (x, y).

    Introduced in notebook 09.
    """
    pred = runner(model).predict(np.asarray(x, dtype=np.float32), batch_size).argmax(-1)
    return float(np.mean(pred == np.asarray(y)))


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


def optimized_ops(model, optimization: str = "all"):
    """Op counts of the graph ONNX Runtime actually runs at an optimisation level (fusions, int8
    kernels), from the optimised model it writes (``SessionOptions.optimized_model_filepath``).

    Introduced in notebook 09.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        OnnxModel(model, optimization=optimization, optimized_path=path)
        return op_counts(path.read_bytes())


def versions() -> dict:
    """The installed versions of the ONNX tool chain: tf2onnx, onnx, onnxruntime.

    Introduced in notebook 09.
    """
    return {package: _version(package) for package in ("tf2onnx", "onnx", "onnxruntime")}
