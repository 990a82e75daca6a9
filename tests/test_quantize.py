"""effcourse.quantize: QAT, interleaved latency; the conversion errors; notebook 03's checks."""

import dataclasses

import numpy as np
import pytest

import effcourse
from effcourse import convert, measure, models, quantize

keras = effcourse.keras


@pytest.fixture(scope="module")
def calib():
    return np.random.default_rng(0).random((40, 8, 8, 1), dtype=np.float32)


@pytest.fixture
def int8_blob(tiny_model, calib):
    return convert.to_tflite(tiny_model, "int8", representative=calib)


# --- conversion and the interpreter settings ------------------------------------------------


def test_float_tflite_predicts_like_keras_on_a_baseline():
    model = models.lenet5()
    x = np.random.default_rng(3).random((16, 28, 28, 1), dtype=np.float32)
    blob = convert.to_tflite(model)
    np.testing.assert_allclose(convert.TFLiteModel(blob).predict(x), model.predict(x, verbose=0), atol=1e-4)
    assert (
        np.argmax(convert.TFLiteModel(blob, delegate="none").predict(x), 1)
        == np.argmax(model.predict(x, verbose=0), 1)
    ).all()


def test_representative_data_errors(tiny_model):
    with pytest.raises(convert.ConversionError, match="empty"):
        convert.to_tflite(tiny_model, "int8", representative=np.zeros((0, 8, 8, 1)))
    with pytest.raises(convert.ConversionError, match="shape"):
        convert.to_tflite(tiny_model, "int8_io", representative=np.zeros((5, 8, 8)))
    with pytest.raises(convert.ConversionError, match="Unknown TFLite mode"):
        convert.to_tflite(tiny_model, "int4")


def test_delegate_setting_and_latency_comparison(tiny_model, int8_blob):
    float_blob = convert.to_tflite(tiny_model)
    assert convert.TFLiteModel(float_blob).delegated() == "all"  # XNNPACK is the default
    plain = convert.TFLiteModel(float_blob, delegate="none")
    assert plain.delegated() == "none" and "FULLY_CONNECTED" in plain.ops()
    assert convert.TFLiteModel(plain).delegate == "none"  # kept when re-wrapped (measure.latency)
    with pytest.raises(ValueError, match="delegate"):
        convert.TFLiteModel(float_blob, delegate="gpu")
    with pytest.raises(ValueError, match="preserve_all_tensors"):
        plain.activations(np.zeros((1, 8, 8, 1), np.float32))
    prof = dataclasses.replace(effcourse.profile.get("quick"), latency_runs=5, latency_warmup=1)
    for delegate in ("auto", "none"):
        table = quantize.compare_latency(
            {"float": float_blob, "int8": int8_blob}, None, prof, delegate=delegate, rounds=2
        )
        assert list(table.index) == ["float", "int8"]
        assert (table["latency_ms"] > 0).all() and (table["latency_p90_ms"] >= table["latency_ms"]).all()
        assert set(table["delegated"]) == {"all" if delegate == "auto" else "none"}
    with pytest.raises(ValueError, match="at least one"):
        quantize.compare_latency({}, None, prof)


# --- quantization-aware training --------------------------------------------------------------


def test_qat_trains_a_copy_and_converts_to_int8(tiny_model, calib):
    before = [w.copy() for w in tiny_model.get_weights()]
    y = np.arange(len(calib)) % 3
    q = quantize.qat(tiny_model, effcourse.data.MNIST(calib, y, calib, y, calib, y, "test"), 1, 16)
    assert any("quant" in layer.name for layer in q.layers)
    for a, b in zip(before, tiny_model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the original is untouched
    blob = convert.to_tflite(q, "int8", representative=calib)
    kernels = [t for t in convert.constant_tensors(blob) if len(t["shape"]) in (2, 4)]
    assert len(kernels) == 3 and all(t["dtype"] == "int8" for t in kernels)
    assert measure.predict_logits(blob, calib).shape == (len(calib), 3)


def _with_layer(layer):
    inp = keras.Input((8,))
    x = keras.layers.Dense(4, name="fc")(inp)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(layer(x)))


def test_qat_names_the_layer_it_cannot_annotate():
    model = _with_layer(keras.layers.LayerNormalization(name="norm"))
    with pytest.raises(
        quantize.QuantizeError, match=r"'norm'.*LayerNormalization.*quantize_annotate_layer.*QuantizeConfig"
    ):
        quantize.quantize_aware(model)
    with pytest.raises(quantize.QuantizeError, match="'twice'.*Lambda.*quantize_annotate_layer"):
        quantize.quantize_aware(_with_layer(keras.layers.Lambda(lambda t: 2 * t, name="twice")))


def test_qat_follows_the_pointer_quantize_annotate_layer():
    import tensorflow_model_optimization as tfmot

    class NoQuantConfig(tfmot.quantization.keras.QuantizeConfig):
        """Leave the layer in float: quantize none of its weights or activations."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    norm = tfmot.quantization.keras.quantize_annotate_layer(
        keras.layers.LayerNormalization(name="norm"), quantize_config=NoQuantConfig()
    )
    q = quantize.quantize_aware(_with_layer(norm), custom_objects={"NoQuantConfig": NoQuantConfig})
    assert q(np.zeros((2, 8), np.float32)).shape == (2, 2)


def test_qat_rejects_keras3_subclassed_and_bad_data(tiny_model):
    x, y = np.zeros((4, 8, 8, 1), np.float32), np.zeros(4)
    tiny = effcourse.data.MNIST(x, y, x, y, x, y, "test")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(3)

        def call(self, x):
            return self.fc(x)

    with pytest.raises(models.ModelError, match="Sequential or Functional"):
        quantize.qat(Sub(), tiny, epochs=1)
    try:
        import keras as keras3
    except ImportError:
        keras3 = None
    if keras3 is not None and keras3.__version__.startswith("3"):
        k3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
        with pytest.raises(models.ModelError, match="Keras 3"):
            quantize.quantize_aware(k3)
    with pytest.raises(TypeError, match="MNIST"):
        quantize.qat(tiny_model, (np.zeros((4, 8, 8, 1)), np.zeros(4)), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        quantize.qat(tiny_model, tiny, epochs=0)


# --- notebook 03 checks: fail on the placeholder and on typical mistakes, pass on answers ---


def _todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def _quantize(x, scale, zero_point, q_min=-128, q_max=127):
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point, q_min, q_max).astype(
        np.int8
    )


def _dequantize(q, scale, zero_point):
    return scale * (np.asarray(q, dtype=np.float64) - zero_point)


def test_nb03_quantize_dequantize(capsys):
    from effcourse import checks

    checks.nb03.quantize_dequantize(_quantize, _dequantize)
    assert capsys.readouterr().out.count("PASS") == 1
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.quantize_dequantize(_todo, _dequantize)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.quantize_dequantize(_quantize, _todo)
    mistakes = {
        "saturate": lambda x, s, z, lo=-128, hi=127: (
            (np.round(np.asarray(x) / s) + z).astype(np.int64).astype(np.int8)
        ),
        "int8": lambda x, s, z, lo=-128, hi=127: np.clip(np.round(np.asarray(x) / s) + z, lo, hi),
        "added": lambda x, s, z, lo=-128, hi=127: _quantize(x, s, -z, lo, hi),
        "nearest": lambda x, s, z, lo=-128, hi=127: np.clip(np.floor(np.asarray(x) / s) + z, lo, hi).astype(
            np.int8
        ),
        "-127": lambda x, s, z, lo=-128, hi=127: _quantize(x, s, z),  # ignores the narrow range
    }
    for hint, wrong in mistakes.items():
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb03.quantize_dequantize(wrong, _dequantize)
    with pytest.raises(checks.CheckFailed, match="zero point before scaling"):
        checks.nb03.quantize_dequantize(_quantize, lambda q, s, z: s * np.asarray(q, dtype=float))
    with pytest.raises(checks.CheckFailed, match="overflowed"):
        checks.nb03.quantize_dequantize(_quantize, lambda q, s, z: s * (np.asarray(q) - np.int8(z)))


def _representative(images):
    for i in range(len(images)):
        yield [images[i : i + 1]]


def test_nb03_representative_dataset(capsys):
    from effcourse import checks

    checks.nb03.representative_dataset(_representative)
    assert capsys.readouterr().out.count("PASS") == 1
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.representative_dataset(_todo)

    def whole(images):
        yield [images]

    def bare(images):
        for i in range(len(images)):
            yield images[i : i + 1]

    def no_batch(images):
        for image in images:
            yield [image]

    def as_float64(images):
        for i in range(len(images)):
            yield [images[i : i + 1].astype(np.float64)]

    def reversed_order(images):
        yield from _representative(images[::-1])

    for hint, wrong in {
        "one image at a time": whole,
        "list": bare,
        "batch dimension": no_batch,
        "float32": as_float64,
        "in their order": reversed_order,
    }.items():
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb03.representative_dataset(wrong)
