"""effcourse.deploy: ONNX export with tf2onnx, ONNX Runtime beside LiteRT, agreement, the errors."""

import os

import numpy as np
import pytest

import effcourse
from effcourse import convert, deploy, models, profile, quantize

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
    assert _opset(blob) == 17
    onnx_model = deploy.OnnxModel(blob)
    assert onnx_model.input_name == "input" and onnx_model.output_name == "out"
    np.testing.assert_allclose(
        onnx_model.predict(images, batch_size=10), tiny_model(images).numpy(), atol=1e-5
    )
    row = deploy.compare(convert.to_tflite(tiny_model), onnx_model, images)
    assert row["images"] == row["predictions agree"] == 64 and row["disagree"] == 0
    assert row["max |logit difference|"] < 1e-5
    assert deploy.compare(tiny_model, blob, images)["predictions agree"] == 64  # Keras against bytes
    labels = tiny_model(images).numpy().argmax(1)
    assert deploy.accuracy(blob, images, labels) == 1.0
    assert deploy.accuracy(convert.to_tflite(tiny_model), images, (labels + 1) % 3) == 0.0


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
    with pytest.raises(deploy.DeployError, match=rf"writes opsets {deploy.MIN_OPSET} to 1\d"):
        deploy.export(tiny_model, opset=opset)
    assert issubclass(deploy.DeployError, ValueError)


def test_a_missing_onnx_package_says_what_to_install(monkeypatch, blob):
    import importlib

    real = importlib.import_module

    def without_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_onnxruntime)
    with pytest.raises(deploy.DeployError, match=r"needs onnxruntime.*pip install -c constraints.txt"):
        deploy.OnnxModel(blob)


def test_disagreement_says_how_many_images_and_by_how_much(tiny_model, blob, images):
    changed = models.clone(tiny_model, compile_like=False)
    kernel, bias = changed.get_layer("out").get_weights()
    changed.get_layer("out").set_weights([kernel, bias + np.array([0.0, 0.5, 0.0], np.float32)])
    with pytest.raises(deploy.DeployError, match=r"of 64 images .*largest difference 0\.5 at image"):
        deploy.compare(changed, blob, images)
    loose = deploy.compare(changed, blob, images, atol=1.0, max_disagree=64)  # allowed: no error
    assert loose["max |logit difference|"] == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(deploy.DeployError, match="at least one image"):
        deploy.compare(tiny_model, blob, images[:0])


def test_qat_model_exports_quantize_dequantize_pairs(tiny_model, images):
    qat = quantize.quantize_aware(models.clone(tiny_model, compile_like=False))
    qat(images, training=True)  # one training-mode pass sets the activation ranges (0 to 0 otherwise)
    ops = _op_types(deploy.export(qat))
    assert ops.count("QuantizeLinear") >= 1 and ops.count("QuantizeLinear") == ops.count("DequantizeLinear")


def test_session_options_invoker_and_bad_input(blob, images):
    model = deploy.OnnxModel(blob, threads=2, optimization="disabled")
    assert model.threads == 2
    for level in deploy.LEVELS:
        model = deploy.OnnxModel(blob, optimization=level)
        model.invoker(images[:1])()
        np.testing.assert_allclose(
            model.predict(images[:3]), deploy.OnnxModel(blob).predict(images[:3]), atol=1e-5
        )
    with pytest.raises(deploy.DeployError, match="optimisation level"):
        deploy.OnnxModel(blob, optimization="fast")
    with pytest.raises(ValueError):
        deploy.OnnxModel(blob, threads=0)
    with pytest.raises(deploy.DeployError, match="bytes of an ONNX file"):
        deploy.OnnxModel(12)
    with pytest.raises(deploy.DeployError, match="could not load"):
        deploy.OnnxModel(b"not onnx")


def test_both_runtimes_are_timed_interleaved_through_their_runners(tiny_model, blob, images):
    tfl = convert.to_tflite(tiny_model)
    assert isinstance(deploy.runner(tfl), convert.TFLiteModel)
    assert isinstance(deploy.runner(blob), deploy.OnnxModel)
    onnx_model = deploy.OnnxModel(blob)
    assert deploy.runner(onnx_model) is onnx_model
    table = quantize.compare_latency(
        {"LiteRT": deploy.runner(tfl), "ONNX Runtime": deploy.runner(blob)},
        images[:1],
        profile.get("quick"),
        rounds=2,
    )
    assert list(table.index) == ["LiteRT", "ONNX Runtime"]
    assert (table["latency_ms"] > 0).all() and (table["latency_p90_ms"] >= table["latency_ms"]).all()


def test_litert_file_is_reused_only_when_newer_than_the_baseline(tmp_root, tiny_model):
    quick = profile.get("quick")
    trained = models.cache_dir(quick) / "tiny.keras"
    trained.write_bytes(b"stands for the cached baseline")
    first, how = deploy.litert_file(tiny_model, "tiny", "float32", quick)
    assert how == "converted" and convert.is_tflite(first)
    assert deploy.litert_file(tiny_model, "tiny", "float32", quick) == (first, "reused")
    later = trained.stat().st_mtime + 10  # the baseline was retrained after the file was written
    os.utime(trained, (later, later))
    assert deploy.litert_file(tiny_model, "tiny", "float32", quick)[1] == "converted"


def test_both_runtimes_are_one_family_on_the_course_chart():
    from effcourse import plots

    assert plots.family("ONNX Runtime") == plots.family("LiteRT") == "deployment runtime"
