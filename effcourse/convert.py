"""TFLite conversion and running .tflite models in the LiteRT interpreter (notebooks 01 and 03).

Modes: ``float32``; ``float16`` (float16 weights); ``dynamic`` (int8 weights, float
activations); ``int8`` (weights and activations int8, float input/output, calibrated on a
representative dataset); ``int8_io`` (``int8`` with int8 input and output tensors too).
Models run in ``ai_edge_litert`` (LiteRT); ``tf.lite.Interpreter`` is deprecated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import EffcourseError

MODES = ("float32", "float16", "dynamic", "int8", "int8_io")
TFLITE_MAGIC = b"TFL3"


class ConversionError(EffcourseError, ValueError):
    """A conversion request that cannot work (bad mode, bad representative data).
    Introduced in notebook 01."""


def _representative(data, input_shape):
    if data is None:
        raise ConversionError(
            "Full-integer conversion needs a representative dataset: pass "
            "representative=<array of a few hundred training images>."
        )
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 0 or len(arr) == 0:
        raise ConversionError(
            "The representative dataset is empty; pass a few hundred training images (profile.representative_samples)."
        )
    if tuple(arr.shape[1:]) != tuple(input_shape[1:]):
        raise ConversionError(
            f"Representative samples have shape {arr.shape[1:]}, the model expects "
            f"{tuple(input_shape[1:])}. Pass images shaped like the model's input."
        )
    return lambda: ([sample[None, ...]] for sample in arr)


def to_tflite(model, mode: str = "float32", representative=None) -> bytes:
    """Convert a tf_keras model to a .tflite flatbuffer (bytes) in one of ``MODES``.
    Introduced in notebook 00."""
    import tensorflow as tf

    from .models import check_model

    check_model(model, need_graph=False, what="to_tflite")
    if mode not in MODES:
        raise ConversionError(f"Unknown TFLite mode {mode!r}; choose one of {', '.join(MODES)}.")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int8_io"):
        converter.representative_dataset = _representative(representative, model.input_shape)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode == "int8_io":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter.convert()


def is_tflite(blob) -> bool:
    """True if ``blob`` (bytes or a path) is a TFLite flatbuffer.
    Introduced in notebook 01."""
    try:
        head = blob[:8] if isinstance(blob, (bytes, bytearray)) else Path(blob).read_bytes()[:8]
    except (OSError, TypeError):
        return False
    return len(head) >= 8 and head[4:8] == TFLITE_MAGIC


def save(blob: bytes, path: os.PathLike) -> Path:
    """Write a .tflite model atomically.
    Introduced in notebook 00."""
    from .env import atomic_write_bytes

    return atomic_write_bytes(path, blob)


def constant_tensors(blob: bytes) -> list[dict]:
    """The tensors stored in a .tflite file (weights, biases): name, dtype, shape, bytes,
    quantization scale / zero point and the stored ``values`` (a NumPy array, None for types
    NumPy lacks), read from the flatbuffer itself.
    Introduced in notebook 03."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    type_names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    out = []
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data
            if data is None or len(data) == 0:
                continue
            q = tensor.quantization
            dtype = type_names.get(tensor.type, str(tensor.type))
            shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
            try:
                values = np.frombuffer(bytes(bytearray(data)), dtype=np.dtype(dtype)).reshape(shape)
            except (TypeError, ValueError):  # a type NumPy lacks (int4, string, ...) or packed data
                values = None
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            scale = None if q is None or q.scale is None else np.asarray(q.scale)
            zero_point = None if q is None or q.zeroPoint is None else np.asarray(q.zeroPoint)
            info = dict(name=name, dtype=dtype, shape=shape, bytes=len(data))
            out.append(dict(info, scale=scale, zero_point=zero_point, values=values))
    return out


DELEGATES = ("auto", "none")


class TFLiteModel:
    """A .tflite model in the LiteRT interpreter: ``predict`` on float images, quantizing if needed.
    Introduced in notebook 03.

    ``delegate``: ``"auto"`` (LiteRT's default: XNNPACK where it can) or ``"none"`` (built-in
    kernels only); a ``TFLiteModel`` given keeps its setting unless one is passed.
    ``preserve_all_tensors`` keeps intermediate outputs readable (``activations``).
    """

    def __init__(self, model, threads=1, delegate=None, preserve_all_tensors=False):
        if isinstance(model, TFLiteModel):
            delegate = delegate or model.delegate
            model = model.blob
        delegate = delegate or "auto"
        if delegate not in DELEGATES:
            raise ValueError(f"Unknown delegate setting {delegate!r}; choose one of {', '.join(DELEGATES)}.")
        self.delegate, self.preserve_all_tensors = delegate, preserve_all_tensors
        if isinstance(model, (str, os.PathLike)):
            model = Path(model).read_bytes() if is_tflite(model) else None
        if not isinstance(model, (bytes, bytearray)) or not is_tflite(model):
            raise TypeError(
                "TFLiteModel needs the bytes or the path of a .tflite file (from effcourse.convert.to_tflite)."
            )
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.blob, self.threads, self._batch = bytes(model), threads, 1
        auto = delegate == "auto"
        resolver = OpResolverType.AUTO if auto else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        opts = dict(
            experimental_op_resolver_type=resolver, experimental_preserve_all_tensors=preserve_all_tensors
        )
        self._interp = Interpreter(model_content=self.blob, num_threads=threads, **opts)
        self._interp.allocate_tensors()

    def ops(self) -> list[str]:
        """The op names of the graph in execution order (delegate nodes left out)."""
        return [op["op_name"] for op in self._interp._get_ops_details() if op["op_name"] != "DELEGATE"]

    def delegated(self) -> str:
        """Whether a delegate (XNNPACK) took the graph over: 'all', 'none' or 'partly (k nodes)'."""
        nodes = [op for op in self._interp._get_ops_details() if op["op_name"] == "DELEGATE"]
        if not nodes:
            return "none"
        outputs = {int(i) for op in nodes for i in op["outputs"]}
        inputs = {int(i) for op in nodes for i in op["inputs"]}
        whole = {int(d["index"]) for d in self._interp.get_output_details()} <= outputs
        whole = whole and {int(d["index"]) for d in self._interp.get_input_details()} <= inputs
        return "all" if whole and len(nodes) == 1 else f"partly ({len(nodes)} delegate nodes)"

    @property
    def input_details(self):
        return self._interp.get_input_details()[0]

    @property
    def output_details(self):
        return self._interp.get_output_details()[0]

    def _quantize_input(self, x):
        det = self.input_details
        if det["dtype"] in (np.int8, np.uint8):
            scale, zero = det["quantization"]
            info = np.iinfo(det["dtype"])
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(det["dtype"])
        return x.astype(det["dtype"])

    def _dequantize_output(self, y):
        det = self.output_details
        if det["dtype"] in (np.int8, np.uint8):
            scale, zero = det["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y

    def _resize(self, batch: int):
        if batch != self._batch:
            shape = list(self.input_details["shape"])
            shape[0] = batch
            self._interp.resize_tensor_input(self.input_details["index"], shape)
            self._interp.allocate_tensors()
            self._batch = batch

    def run(self, x_batch: np.ndarray) -> np.ndarray:
        """Outputs (dequantized to float) for one batch of float inputs."""
        x_batch = np.asarray(x_batch, dtype=np.float32)
        self._resize(len(x_batch))
        self._interp.set_tensor(self.input_details["index"], self._quantize_input(x_batch))
        self._interp.invoke()
        return self._dequantize_output(self._interp.get_tensor(self.output_details["index"]))

    def invoker(self, sample: np.ndarray | None = None):
        """A zero-argument callable that runs one inference on ``sample`` (default: a fixed random
        image), set once here: each call is only ``invoke()`` (for timing)."""
        shape = list(self.input_details["shape"])
        shape[0] = 1
        if sample is None:
            sample = np.random.default_rng(0).random(shape, dtype=np.float32)
        sample = np.asarray(sample, dtype=np.float32).reshape(shape)
        self._resize(1)
        self._interp.set_tensor(self.input_details["index"], self._quantize_input(sample))
        return self._interp.invoke

    @property
    def interpreter(self):
        """The LiteRT ``Interpreter`` itself, for what this class does not wrap (op and tensor details)."""
        return self._interp

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs for all of ``x``, in batches."""
        return np.concatenate([self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    def activations(self, x_batch: np.ndarray) -> dict:
        """Every op's output on one batch, dequantized to float: {tensor name: (op name, array)}.
        Needs ``preserve_all_tensors=True`` (the interpreter reuses intermediate buffers otherwise)."""
        if not self.preserve_all_tensors:
            raise ValueError("activations() needs TFLiteModel(..., preserve_all_tensors=True).")
        self.run(x_batch)
        tensors = {t["index"]: t for t in self._interp.get_tensor_details()}
        out = {}
        for op in self._interp._get_ops_details():
            if op["op_name"] == "DELEGATE":
                continue
            for idx in op["outputs"]:
                det = tensors[int(idx)]
                value = self._interp.get_tensor(int(idx))
                scale, zero = det["quantization"]
                if value.dtype in (np.int8, np.uint8, np.int16) and scale:
                    value = (value.astype(np.float32) - zero) * scale
                out[det["name"]] = (op["op_name"], np.asarray(value, dtype=np.float32))
        return out
