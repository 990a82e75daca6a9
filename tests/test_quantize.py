"""effcourse.quantize: the affine arithmetic against TFLite, QAT, per-layer error, latency."""

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


# --- the arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype,narrow", [("int8", False), ("uint8", False), ("int8", True), ("int16", False)]
)
def test_round_trip_within_half_a_step(dtype, narrow):
    x = np.random.default_rng(1).normal(0.3, 2.0, 5000)
    scale, zero = quantize.affine_params(x.min(), x.max(), dtype, narrow)
    q = quantize.quantize(x, scale, zero, dtype, narrow)
    assert q.dtype == np.dtype(dtype)
    lo, hi = quantize.qrange(dtype, narrow)
    assert q.min() >= lo and q.max() <= hi
    err = np.abs(quantize.dequantize(q, scale, zero) - x)
    assert err.max() <= scale / 2 + 1e-9
    assert quantize.dequantize(quantize.quantize(0.0, scale, zero, dtype, narrow), scale, zero) == 0.0


def test_per_channel_beats_per_tensor_when_channels_differ():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(16, 4)) * np.array([0.01, 0.1, 1.0, 10.0])  # Keras kernel (in, out)
    s_c, z_c = quantize.symmetric_params(w, axis=-1)
    s_t, z_t = quantize.symmetric_params(w)
    assert s_c.shape == (4,) and np.all(z_c == 0) and np.ndim(s_t) == 0
    np.testing.assert_allclose(s_c, np.abs(w).max(axis=0) / 127)
    per_channel = quantize.fake_quant(w, s_c, z_c, narrow_range=True, axis=-1)
    assert np.all(np.abs(per_channel - w) <= s_c / 2 + 1e-12)
    per_tensor = quantize.fake_quant(w, s_t, z_t, narrow_range=True)
    assert quantize.sqnr_db(w[:, 0], per_channel[:, 0]) > quantize.sqnr_db(w[:, 0], per_tensor[:, 0]) + 20
    assert quantize.quantize(w, s_c, z_c, narrow_range=True, axis=-1).min() >= -127


def test_sqnr_db():
    x = np.array([3.0, 4.0])
    assert quantize.sqnr_db(x, x) == float("inf")
    assert quantize.sqnr_db(x, x + [0.3, 0.4]) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shapes"):
        quantize.sqnr_db(x, np.zeros(3))


def test_arithmetic_bad_input():
    with pytest.raises(quantize.QuantizeError, match="Unsupported target type 'int4'.*int8"):
        quantize.qrange("int4")
    with pytest.raises(quantize.QuantizeError, match="float16"):
        quantize.affine_params(0, 1, dtype="float16")
    with pytest.raises(quantize.QuantizeError, match="not finite"):
        quantize.affine_params(0, np.nan)
    with pytest.raises(quantize.QuantizeError, match="empty"):
        quantize.symmetric_params(np.zeros((0, 3)))
    with pytest.raises(quantize.QuantizeError, match="scale"):
        quantize.quantize([1.0], 0.0, 0)


# --- the hand arithmetic equals what TFLite stores ---------------------------------------------


def test_hand_scales_match_tflite(tiny_model, int8_blob, calib):
    table = quantize.weight_check(tiny_model, int8_blob).set_index("layer")
    assert list(table.index) == ["conv", "fc", "out"]
    assert (table["channels"] == [4, 6, 3]).all()  # per output channel
    assert (table["max scale rel. diff"] < 1e-6).all()
    assert table["zero points all 0"].all()
    assert (table["int8 values equal"] == 1.0).all() and (table["differences off a tie"] == 0).all()
    # activations: the input, calibrated on [0, 1), gets scale ~1/255 and zero point -128;
    # every layer's output scale is the affine formula on the calibration min / max
    acts = quantize.stored_activations(int8_blob).drop_duplicates("layer").set_index("layer")
    assert list(acts.index[:2]) == ["input", "conv"] and acts.index[-1] == "output"
    scale, zero = quantize.affine_params(calib.min(), calib.max())
    assert acts.loc["input", "scale"] == pytest.approx(float(scale), rel=1e-5)
    assert acts.loc["input", "zero_point"] == zero == -128
    probe = keras.Model(tiny_model.inputs, tiny_model.get_layer("fc").output)
    out = probe.predict(calib, verbose=0)
    scale, zero = quantize.affine_params(out.min(), out.max())
    assert (
        acts.loc["fc", "scale"] == pytest.approx(float(scale), rel=1e-5)
        and acts.loc["fc", "zero_point"] == zero
    )


def test_int8_file_stores_int8_kernels(tiny_model, int8_blob):
    kernels = quantize.stored_kernels(int8_blob)
    assert set(kernels) == {"conv", "fc", "out"}
    assert all(k["dtype"] == "int8" and k["values"].dtype == np.int8 for k in kernels.values())
    assert kernels["fc"]["values"].shape == (6, 144)  # (out, in) in TFLite
    assert quantize.stored_kernels(convert.to_tflite(tiny_model)) == {}
    with pytest.raises(quantize.QuantizeError, match="int8"):
        quantize.weight_check(tiny_model, convert.to_tflite(tiny_model))


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


# --- per-layer error and the interpreter settings ---------------------------------------------


def test_layer_sqnr(tiny_model, int8_blob, calib):
    float_blob = convert.to_tflite(tiny_model)
    table = quantize.layer_sqnr(float_blob, int8_blob, calib)
    assert {"conv", "fc", "output"} <= set(table["layer"])
    assert table["sqnr_db"].between(15, 80).all()  # int8: tens of dB, not exact, not noise
    same = quantize.layer_sqnr(float_blob, float_blob, calib)
    assert np.isinf(same["sqnr_db"]).all()
    with pytest.raises(ValueError, match="batch"):
        quantize.layer_sqnr(float_blob, int8_blob, calib[:0])


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
    q = quantize.qat(tiny_model, (calib, y), epochs=1, batch_size=16)
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
    assert quantize.unsupported_layers(model) == [("norm", "LayerNormalization")]
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
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(3)

        def call(self, x):
            return self.fc(x)

    with pytest.raises(models.ModelError, match="Sequential or Functional"):
        quantize.qat(Sub(), (np.zeros((4, 8)), np.zeros(4)), epochs=1)
    try:
        import keras as keras3
    except ImportError:
        keras3 = None
    if keras3 is not None and keras3.__version__.startswith("3"):
        k3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
        with pytest.raises(models.ModelError, match="Keras 3"):
            quantize.quantize_aware(k3)
    with pytest.raises(TypeError, match=r"data.MNIST|\(x, y\)"):
        quantize.qat(tiny_model, np.zeros((4, 8, 8, 1)), epochs=1)
    with pytest.raises(ValueError, match="labels"):
        quantize.qat(tiny_model, (np.zeros((4, 8, 8, 1)), np.zeros(3)), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        quantize.qat(tiny_model, (np.zeros((4, 8, 8, 1)), np.zeros(4)), epochs=0)


# --- notebook 03 checks: fail on the placeholder and on typical mistakes, pass on answers ---


def _todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def _params_solution(x_min, x_max):
    x_min, x_max = min(x_min, 0.0), max(x_max, 0.0)
    scale = (x_max - x_min) / 255
    return scale, int(round(-128 - x_min / scale))


def test_nb03_affine_params():
    from effcourse import checks

    checks.nb03.affine_params(_params_solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.affine_params(_todo)
    with pytest.raises(checks.CheckFailed, match="include 0"):
        checks.nb03.affine_params(lambda lo, hi: ((hi - lo) / 255, round(-128 - lo / ((hi - lo) / 255))))
    with pytest.raises(checks.CheckFailed, match="255"):
        checks.nb03.affine_params(lambda lo, hi: ((hi - min(lo, 0)) / 256, -128))


def _kernel_solution(kernel):
    scales = np.abs(kernel).max(axis=0) / 127
    scales = np.where(scales > 0, scales, 1.0)
    return np.clip(np.round(kernel / scales), -127, 127).astype(np.int8), scales


def test_nb03_per_channel_weights():
    from effcourse import checks

    checks.nb03.per_channel_weights(_kernel_solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.per_channel_weights(_todo)

    def per_tensor(kernel):
        s = np.abs(kernel).max() / 127
        return np.clip(np.round(kernel / s), -127, 127).astype(np.int8), np.array(s)

    with pytest.raises(checks.CheckFailed, match="one per output channel"):
        checks.nb03.per_channel_weights(per_tensor)

    def by_128(kernel):
        s = np.abs(kernel).max(axis=0) / 128
        s = np.where(s > 0, s, 1.0)
        return np.clip(np.round(kernel / s), -128, 127).astype(np.int8), s

    with pytest.raises(checks.CheckFailed, match="narrow range"):
        checks.nb03.per_channel_weights(by_128)
    with np.errstate(all="ignore"), pytest.raises(checks.CheckFailed, match="all zeros"):
        checks.nb03.per_channel_weights(lambda k: (np.zeros(k.shape, np.int8), np.abs(k).max(axis=0) / 127))


def test_nb03_sqnr():
    from effcourse import checks

    def solution(ref, approx):
        return 10 * np.log10(np.sum(ref**2) / np.sum((ref - approx) ** 2))

    checks.nb03.sqnr(solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.sqnr(_todo)
    with pytest.raises(checks.CheckFailed, match="10 log10"):
        checks.nb03.sqnr(lambda r, a: 20 * np.log10(np.sum(r**2) / np.sum((r - a) ** 2)))
    with pytest.raises(checks.CheckFailed, match="signal over noise"):
        checks.nb03.sqnr(lambda r, a: -solution(r, a))


def test_nb03_quantize_input():
    from effcourse import checks

    checks.nb03.quantize_input(lambda x, s, z: np.clip(np.round(x / s + z), -128, 127).astype(np.int8))
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.quantize_input(_todo)
    with pytest.raises(checks.CheckFailed, match="saturate|clip"):
        checks.nb03.quantize_input(lambda x, s, z: np.round(x / s + z).astype(np.int64).astype(np.int8))
    with pytest.raises(checks.CheckFailed, match="int8"):
        checks.nb03.quantize_input(lambda x, s, z: np.clip(np.round(x / s + z), -128, 127))
