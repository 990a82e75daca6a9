"""effcourse.deploy: ONNX export with tf2onnx, ONNX Runtime beside LiteRT, its quantization, the errors."""

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
    assert deploy.opset_of(blob) == deploy.DEFAULT_OPSET
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
    assert path.read_bytes() == blob and deploy.opset_of(path) == 15


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


def test_initializers_count_zeros_and_shared_values_from_the_file(tiny_model):
    model = models.clone(tiny_model, compile_like=False)
    kernel, bias = model.get_layer("fc").get_weights()
    shared = np.array([-0.4, 0.3, 0.9], np.float32)[np.arange(kernel.size) % 3].reshape(kernel.shape)
    shared[:, :3] = 0.0  # half the columns pruned
    model.get_layer("fc").set_weights([shared, bias])
    table = deploy.initializers(deploy.export(model)).set_index("name")
    row = table[table["elements"] == kernel.size].iloc[0]
    assert row["zeros"] == int(np.sum(shared == 0)) and row["distinct values"] == 4  # 0 and 3 centroids
    assert row["zero share"] == pytest.approx(0.5) and row["dtype"] == "float32"


def test_onnx_runtime_quantization_static_qdq_and_dynamic(tiny_model, blob, images):
    static = deploy.quantize_static(blob, images[:32])
    ops = deploy.op_counts(static)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    inits = deploy.initializers(static)
    assert (inits["dtype"] == "int8").any(), "static QDQ stores int8 weights"
    dynamic = deploy.quantize_dynamic(blob)
    assert "DynamicQuantizeLinear" in deploy.op_counts(dynamic)
    for quantized in (
        static,
        dynamic,
    ):  # (a model this tiny grows: scales and zero points outweigh 3 bytes saved per weight)
        agreement = deploy.compare(blob, quantized, images, atol=0.5, max_disagree=8)
        assert agreement.max_abs_diff > 0  # really quantized: not the float model again
    with pytest.raises(deploy.DeployError, match="calibration images"):
        deploy.quantize_static(blob, images[:0])


def test_qat_model_exports_quantize_dequantize_pairs(tiny_model, images):
    from effcourse import quantize

    qat = quantize.quantize_aware(models.clone(tiny_model, compile_like=False))
    qat(images, training=True)  # one training-mode pass sets the activation ranges (0 to 0 otherwise)
    ops = deploy.op_counts(deploy.export(qat))
    assert ops.get("QuantizeLinear", 0) >= 1 and ops.get("QuantizeLinear", 0) == ops.get(
        "DequantizeLinear", 0
    )


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
    with pytest.raises(deploy.DeployError, match="not a valid ONNX model"):
        deploy.proto(b"not onnx")


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
    assert (table["threads"] == quick.latency_threads).all()
    with pytest.raises(deploy.DeployError):
        deploy.compare_latency({}, images[:1], quick)


def test_faster_names_the_runtime_and_the_ratio():
    assert deploy.faster({"LiteRT": 2.0, "ONNX Runtime": 3.0}) == ("LiteRT", 1.5)
    assert deploy.faster({"LiteRT": 4.0, "ONNX Runtime": 1.0}) == ("ONNX Runtime", 4.0)
    with pytest.raises(deploy.DeployError):
        deploy.faster({"a": 1.0})
    with pytest.raises(deploy.DeployError):
        deploy.faster({"a": 0.0, "b": 1.0})


def test_runtime_of_and_runner(tiny_model, blob):
    tfl = convert.to_tflite(tiny_model)
    assert deploy.runtime_of(tfl) == "LiteRT" and deploy.runtime_of(blob) == "ONNX Runtime"
    assert isinstance(deploy.runner(tfl), convert.TFLiteModel) and isinstance(
        deploy.runner(blob), deploy.OnnxModel
    )
    assert measure.compressed_size(blob) < len(blob)


def test_runtime_latency_chart_and_the_runtimes_family():
    import pandas as pd

    from effcourse import plots

    rows = [
        {"model": m, "mode": mode, "runtime": rt, "latency_ms": t, "latency_p90_ms": 1.5 * t}
        for m in ("lenet_300_100", "cnn")
        for mode, t in (("float32", 0.02), ("int8", 0.004))
        for rt in deploy.RUNTIMES
    ]
    fig = plots.runtime_latency(pd.DataFrame(rows))
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_yscale() == "log"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["float32", "int8"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(deploy.RUNTIMES)
    assert all(len(ax.patches) == 4 for ax in axes)  # two modes x two runtimes
    assert plots.family("ONNX Runtime") == plots.family("LiteRT") == "deployment runtime"
