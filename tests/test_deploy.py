"""effcourse.deploy: ONNX export with tf2onnx, ONNX Runtime beside LiteRT, agreement, latency, the errors."""

import numpy as np
import pytest

import effcourse
from effcourse import convert, deploy, measure, models, profile

keras = effcourse.keras


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).random((64, 8, 8, 1), dtype=np.float32)


@pytest.fixture
def blob(tiny_model):
    return deploy.export(tiny_model)


def _opset(onnx_bytes):
    import onnx

    return next(
        o.version for o in onnx.load_from_string(onnx_bytes).opset_import if o.domain in ("", "ai.onnx")
    )


def _op_types(onnx_bytes):
    import onnx

    return [node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node]


def test_onnx_packages_import_beside_tensorflow_in_keras2_mode():
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx
    from packaging.version import Version

    assert effcourse.keras.__name__.startswith("tf_keras")  # Keras 2 mode survives the imports
    assert Version(tf.__version__) >= Version("2.16")
    assert Version("1.17") <= Version(tf2onnx.__version__) < Version("1.18")
    assert Version("1.17") <= Version(onnx.__version__) < Version("1.24")
    assert Version("1.20") <= Version(onnxruntime.__version__) < Version("1.33")
    assert "CPUExecutionProvider" in onnxruntime.get_available_providers()


def test_export_runs_in_onnx_runtime_like_keras_and_litert(tiny_model, blob, images):
    assert _opset(blob) == deploy.DEFAULT_OPSET
    onnx_model = deploy.OnnxModel(blob)
    assert onnx_model.input_name == deploy.INPUT_NAME and onnx_model.output_names == ["out"]
    np.testing.assert_allclose(
        onnx_model.predict(images, batch_size=10), tiny_model(images).numpy(), atol=1e-5
    )
    result = deploy.compare(convert.to_tflite(tiny_model), onnx_model, images)
    assert result.images == result.agree == 64 and result.disagree == 0
    assert result.max_abs_diff < 1e-5 and result.output == "out"
    assert deploy.compare(tiny_model, blob, images).agree == 64  # Keras against the raw bytes


def test_export_writes_the_file_atomically(tmp_path, tiny_model):
    path = tmp_path / "tiny.onnx"
    blob = deploy.export(tiny_model, opset=15, path=path)
    assert path.read_bytes() == blob and _opset(blob) == 15


def test_export_refuses_keras3_and_subclassed_models(foreign_models):
    with pytest.raises(models.ModelError, match="Keras 3"):
        deploy.export(foreign_models["keras3"])
    with pytest.raises(models.ModelError, match="subclassed"):
        deploy.export(foreign_models["subclassed"])


@pytest.mark.parametrize("opset", [99, 12, 0, True, 17.0, "17"])
def test_opsets_the_converter_cannot_produce_are_refused_with_the_range(tiny_model, opset):
    with pytest.raises(deploy.OpsetError, match=f"{deploy.MIN_OPSET} to {deploy.max_opset()}"):
        deploy.export(tiny_model, opset=opset)
    assert issubclass(deploy.OpsetError, ValueError)


def test_disagreement_names_the_output_and_by_how_much(tiny_model, blob, images):
    changed = models.clone(tiny_model, compile_like=False)
    kernel, bias = changed.get_layer("out").get_weights()
    changed.get_layer("out").set_weights([kernel, bias + np.array([0.0, 0.5, 0.0], np.float32)])
    with pytest.raises(
        deploy.AgreementError, match=r"output 'out' differs: .*largest difference 0\.5 at image"
    ):
        deploy.compare(changed, blob, images)
    loose = deploy.compare(changed, blob, images, atol=1.0, max_disagree=64)  # allowed: no error
    assert loose.max_abs_diff == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(deploy.DeployError, match="at least one image"):
        deploy.compare(tiny_model, blob, images[:0])


def test_qat_model_exports_quantize_dequantize_pairs(tiny_model, images):
    from effcourse import quantize

    qat = quantize.quantize_aware(models.clone(tiny_model, compile_like=False))
    qat(images, training=True)  # one training-mode pass sets the activation ranges (0 to 0 otherwise)
    ops = _op_types(deploy.export(qat))
    assert ops.count("QuantizeLinear") >= 1 and ops.count("QuantizeLinear") == ops.count("DequantizeLinear")


def test_session_options_and_invoker(blob, images):
    import onnxruntime as ort

    opts = deploy.session_options(threads=2, optimization="disabled")
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with pytest.raises(deploy.DeployError, match="optimisation level"):
        deploy.session_options(optimization="fast")
    with pytest.raises(ValueError):
        deploy.session_options(threads=0)
    for level in deploy.OPTIMIZATION_LEVELS:
        model = deploy.OnnxModel(blob, optimization=level)
        model.invoker(images[:1])()
        np.testing.assert_allclose(model.run(images[:3]), deploy.OnnxModel(blob).run(images[:3]), atol=1e-5)
    with pytest.raises(deploy.DeployError, match="ONNX bytes"):
        deploy.OnnxModel(12)
    with pytest.raises(deploy.DeployError, match="could not load"):
        deploy.OnnxModel(b"not onnx")


def test_compare_latency_times_both_runtimes_interleaved(tiny_model, blob, images):
    quick = profile.get("quick")
    table = deploy.compare_latency(
        {"LiteRT float32": convert.to_tflite(tiny_model), "ONNX Runtime float32": blob},
        images[:1],
        quick,
        rounds=2,
    )
    assert list(table.index) == ["LiteRT float32", "ONNX Runtime float32"]
    assert list(table["runtime"]) == ["LiteRT", "ONNX Runtime"]
    assert (table["latency_ms"] > 0).all() and (table["latency_p90_ms"] >= table["latency_ms"]).all()
    assert (table["threads"] == quick.latency_threads).all() and (table["rounds"] == 2).all()
    with pytest.raises(deploy.DeployError):
        deploy.compare_latency({}, images[:1], quick)


def test_runtime_of_and_runner(tiny_model, blob):
    tfl = convert.to_tflite(tiny_model)
    assert deploy.runtime_of(tfl) == "LiteRT" and deploy.runtime_of(blob) == "ONNX Runtime"
    assert isinstance(deploy.runner(tfl), convert.TFLiteModel) and isinstance(
        deploy.runner(blob), deploy.OnnxModel
    )
    assert measure.compressed_size(blob) < len(blob)


def test_both_runtimes_are_one_family_on_the_course_chart():
    from effcourse import plots

    assert plots.family("ONNX Runtime") == plots.family("LiteRT") == "deployment runtime"
