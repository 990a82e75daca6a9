import numpy as np
import pytest

import effcourse
from effcourse import convert, measure, models


def test_layer_table_counts_zeros(tiny_model):
    w = tiny_model.get_layer("fc").get_weights()
    kernel = w[0].copy()
    kernel.flat[: kernel.size // 2] = 0
    tiny_model.get_layer("fc").set_weights([kernel, w[1]])
    table = measure.layer_table(tiny_model).set_index("layer")
    fc = table.loc["fc"]
    assert fc["params"] == kernel.size + w[1].size
    assert fc["nonzero"] == np.count_nonzero(kernel) + np.count_nonzero(w[1])
    assert measure.count_params(tiny_model) == tiny_model.count_params()
    assert measure.dense_fp32_bytes(tiny_model) == 4 * tiny_model.count_params()


def test_macs_by_hand(tiny_model):
    table = measure.macs_table(tiny_model).set_index("layer")["macs"]
    assert table["conv"] == 6 * 6 * 3 * 3 * 1 * 4  # out HxW x k x k x cin x cout
    assert table["fc"] == 144 * 6 and table["out"] == 6 * 3
    assert measure.macs(models.lenet_300_100()) == 784 * 300 + 300 * 100 + 100 * 10
    keras = effcourse.keras
    dw = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.DepthwiseConv2D(3, depth_multiplier=2)])
    assert measure.macs(dw) == 8 * 8 * 3 * 3 * 3 * 2


def test_gzip_is_deterministic_and_sparse_is_smaller(tiny_model):
    blob = np.random.default_rng(0).random(1000).tobytes()
    assert measure.gzip_bytes(blob) == measure.gzip_bytes(blob)
    model = models.lenet_300_100()
    dense = measure.keras_weights_bytes(model)
    w = model.get_weights()
    model.set_weights([np.where(np.random.default_rng(0).random(a.shape) < 0.9, 0, a) for a in w])
    assert measure.keras_weights_bytes(model) < 0.4 * dense


def test_compressed_size_accounting(tmp_path):
    data = bytes(1000) + np.random.default_rng(0).bytes(1000)
    (tmp_path / "f.bin").write_bytes(data)
    assert measure.compressed_size(tmp_path / "f.bin") == measure.compressed_size(data)
    assert 1000 < measure.compressed_size(data) < 1100  # the random half does not compress
    with pytest.raises(TypeError):
        measure.compressed_size(12)


def test_measure_rejects_non_models(tmp_path):
    with pytest.raises(TypeError, match="Keras model"):
        measure.count_params(b"bytes")
    with pytest.raises(models.ModelError):
        measure.layer_table(object())
    (tmp_path / "x.tflite").write_bytes(b"garbage!")
    with pytest.raises(TypeError, match="tflite"):
        measure.accuracy(str(tmp_path / "x.tflite"), np.zeros((1, 8, 8, 1)), np.zeros(1))


def test_float_tflite_predicts_like_keras(tiny_model):
    blob = convert.to_tflite(tiny_model, "float32")
    assert convert.is_tflite(blob)
    x = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(
        convert.TFLiteModel(blob).predict(x, batch_size=7), tiny_model.predict(x, verbose=0), atol=1e-5
    )
    y = np.argmax(tiny_model.predict(x, verbose=0), 1)
    assert measure.accuracy(blob, x, y) == 1.0


def test_int8_file_holds_int8_weights(tiny_model):
    x = np.random.default_rng(0).random((30, 8, 8, 1), dtype=np.float32)
    blob = convert.to_tflite(tiny_model, "int8", representative=x)
    stored = convert.constant_tensors(blob)
    kernels = [t for t in stored if len(t["shape"]) in (2, 4)]  # dense and conv kernels
    assert len(kernels) == 3 and all(t["dtype"] == "int8" for t in kernels)
    assert sum(t["bytes"] for t in kernels) == 4 * 3 * 3 * 1 + 144 * 6 + 6 * 3  # one byte each
    assert all(t["scale"] is not None and len(t["scale"]) >= 1 for t in kernels)
    float_kernels = [
        t for t in convert.constant_tensors(convert.to_tflite(tiny_model)) if len(t["shape"]) in (2, 4)
    ]
    assert all(t["dtype"] == "float32" for t in float_kernels)
    float_blob = convert.to_tflite(tiny_model, "float32")
    assert len(blob) < len(float_blob)
    io = convert.to_tflite(tiny_model, "int8_io", representative=x)
    assert convert.TFLiteModel(io).input_details["dtype"] == np.int8
    assert convert.TFLiteModel(io).predict(x).shape == (30, 3)


def test_conversion_bad_input(tiny_model):
    with pytest.raises(convert.ConversionError, match="Unknown TFLite mode"):
        convert.to_tflite(tiny_model, "int4")
    with pytest.raises(convert.ConversionError, match="representative"):
        convert.to_tflite(tiny_model, "int8")
    with pytest.raises(convert.ConversionError, match="empty"):
        convert.to_tflite(tiny_model, "int8", representative=np.zeros((0, 8, 8, 1)))
    with pytest.raises(convert.ConversionError, match="shape"):
        convert.to_tflite(tiny_model, "int8", representative=np.zeros((4, 28, 28, 1)))
    with pytest.raises(TypeError, match=".tflite"):
        convert.TFLiteModel(b"12345678")


def test_latency_report(tiny_model):
    blob = convert.to_tflite(tiny_model)
    lat = measure.latency(blob, runs=30, warmup=3)
    assert 0 < lat["latency_ms"] <= lat["latency_p90_ms"]
    assert lat["runs"] == 30 and lat["threads"] == 1


def test_constant_tensors_hold_the_stored_values(tiny_model):
    x = np.random.default_rng(0).random((30, 8, 8, 1), dtype=np.float32)
    stored = convert.constant_tensors(convert.to_tflite(tiny_model, "int8", representative=x))
    kernels = {t["shape"]: t for t in stored if len(t["shape"]) in (2, 4)}
    out = kernels[(3, 6)]  # TFLite stores a Dense kernel as (out, in)
    assert out["values"].dtype == np.int8 and out["values"].shape == (3, 6)
    scale = out["scale"].reshape(-1, 1)  # one scale per output row (per-channel), or one in all
    expected = np.round(tiny_model.get_layer("out").get_weights()[0].T / scale)
    np.testing.assert_array_equal(out["values"], np.clip(expected, -127, 127))
