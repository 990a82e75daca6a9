import numpy as np
import pytest

from effcourse import data

REAL_DOWNLOAD = data._download  # saved before the no_network fixture replaces it


def test_shared_copy_verifies_and_splits(mnist, quick):
    assert len(mnist.x_train) == quick.train_size
    assert len(mnist.x_val) == quick.val_size and len(mnist.x_test) == quick.test_size
    assert mnist.x_train.shape[1:] == (28, 28, 1) and mnist.x_train.dtype == np.float32
    assert 0.0 <= mnist.x_train.min() and mnist.x_train.max() <= 1.0
    assert mnist.y_train.dtype == np.int32 and set(np.unique(mnist.y_train)) == set(range(10))


def test_full_train_statistics_match_mnist():
    raw = data.load_raw()
    x = raw["x_train"] / 255.0
    assert abs(x.mean() - 0.1306605) < 1e-6 and abs(x.std() - 0.3081078) < 1e-6
    assert data.class_counts(raw["y_train"]).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]


def _write_npz(path, **override):
    raw = data.load_raw()
    arrays = {k: v for k, v in raw.items()}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def test_corrupt_content_is_caught(tmp_path):
    raw = data.load_raw()
    bad = raw["x_test"].copy()
    bad[0, 0, 0] ^= 1
    path = _write_npz(tmp_path / "mnist.npz", x_test=bad)
    with pytest.raises(data.DataError, match="x_test.*does not match") as err:
        data.load_raw(path)
    assert str(path) in str(err.value) and "EFFCOURSE_DATA_DIR" in str(err.value)


def test_wrong_shape_and_missing_key_and_garbage(tmp_path):
    raw = data.load_raw()
    with pytest.raises(data.DataError, match="shape"):
        data.load_raw(_write_npz(tmp_path / "a.npz", y_test=raw["y_test"][:5]))
    np.savez(tmp_path / "b.npz", x_train=raw["x_train"])
    with pytest.raises(data.DataError, match="lacks the array"):
        data.load_raw(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(data.DataError, match="not a readable"):
        data.load_raw(tmp_path / "c.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    np.savez(
        tmp_path / "p.npz",
        x_train=np.array([{"a": 1}], dtype=object),
        y_train=np.zeros(1),
        x_test=np.zeros(1),
        y_test=np.zeros(1),
    )
    with pytest.raises(data.DataError):
        data.load_raw(tmp_path / "p.npz")


def test_missing_data_dir_file_names_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFCOURSE_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DataError) as err:
        data.locate()
    msg = str(err.value)
    assert str(tmp_path / "mnist.npz") in msg and "download" in msg and "data" in msg


def test_offline_without_file_fails_clearly(tmp_root, monkeypatch):
    monkeypatch.delenv("EFFCOURSE_DATA_DIR", raising=False)
    with pytest.raises(data.DataError, match="downloads are off"):
        data.locate(download=False)


def test_download_goes_to_data_dir_with_keras_hash(tmp_root, monkeypatch):
    monkeypatch.delenv("EFFCOURSE_DATA_DIR", raising=False)
    seen = {}

    def fake_get_file(fname, origin, file_hash, cache_dir, cache_subdir):
        seen.update(fname=fname, origin=origin, file_hash=file_hash, cache_dir=cache_dir)
        raise OSError("no network here")

    import tf_keras.utils

    monkeypatch.setattr(tf_keras.utils, "get_file", fake_get_file)
    monkeypatch.setattr(data, "_download", REAL_DOWNLOAD)  # get_file is faked above
    with pytest.raises(data.DataError, match="Could not download"):
        data.locate()
    assert seen["origin"] == data.KERAS_URL and seen["file_hash"] == data.KERAS_FILE_SHA256
    assert seen["cache_dir"] == str(tmp_root / "data")


def test_pipeline_batches(mnist):
    ds = data.pipeline(mnist.x_val, mnist.y_val, batch_size=100)
    xb, yb = next(iter(ds))
    assert xb.shape == (100, 28, 28, 1) and yb.shape == (100,)
