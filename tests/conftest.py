"""Shared fixtures. Tests run under the quick profile, never touch the network, and write
only into temporary folders (EFFCOURSE_ROOT points at one per test that writes)."""

import os

os.environ.setdefault("EFFCOURSE_PROFILE", "quick")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import effcourse  # noqa: E402  (selects Keras 2 before TensorFlow is imported)
from effcourse import data, profile  # noqa: E402


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download fails loudly; no progress bars in unit tests."""
    monkeypatch.setenv("EFFCOURSE_PROGRESS", "0")

    def refuse(*args, **kwargs):
        raise AssertionError("tests must not download anything")

    monkeypatch.setattr(data, "_download", refuse)


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    """A throwaway course root: build/ outputs land in tmp_path."""
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setenv("EFFCOURSE_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def quick():
    return profile.get("quick")


@pytest.fixture(scope="session")
def mnist(quick):
    try:
        return data.load(quick)
    except data.DataError as err:
        pytest.fail(
            "Tests need MNIST offline: set EFFCOURSE_DATA_DIR to a folder holding "
            f"mnist.npz (CI uses ../shared/datasets).\n{err}"
        )


@pytest.fixture
def tiny_model():
    """A small Functional model with a conv and two dense layers, deterministic weights."""
    keras = effcourse.keras
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)
    out = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture
def foreign_models():
    """Models the course's tfmot helpers must refuse: a Keras 3 model and a subclassed tf_keras one."""
    import keras as keras3

    k3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])

    class Sub(effcourse.keras.Model):
        def __init__(self):
            super().__init__()
            self.d = effcourse.keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3), "float32"))
    return {"keras3": k3, "subclassed": sub}
