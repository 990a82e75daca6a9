"""MNIST: finding, verifying and loading it, subsets by profile, tf.data pipelines (notebook 00).

The file is ``$EFFCOURSE_DATA_DIR/mnist.npz`` when that is set, else ``data/mnist.npz``, else a
download of the Keras copy into ``data/`` (sha256 checked). Whatever the source, the four
arrays are checked against known content hashes, so a corrupt file never reaches a notebook.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .env import project_root
from .errors import EffcourseError

FILENAME = "mnist.npz"
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
CLASSES = 10


class DataError(EffcourseError, RuntimeError):
    """MNIST is missing, corrupt or of the wrong shape.
    Introduced in notebook 00."""


def _fixes(path: Path | None = None) -> str:
    where = f" ({path})" if path else ""
    return (
        f"Problem with the MNIST file{where}. Three ways to fix it:\n"
        f"  1. set EFFCOURSE_DATA_DIR to a folder holding a good {FILENAME};\n"
        f"  2. put the standard Keras copy at {project_root() / 'data' / FILENAME} "
        f"(from {KERAS_URL});\n"
        "  3. delete the bad file and run again with internet access: it downloads itself."
    )


def data_dir() -> Path:
    """The course's ``data/`` folder (downloads land here; git-ignored).
    Introduced in notebook 00."""
    return project_root() / "data"


def _download(target_dir: Path) -> Path:
    from tf_keras.utils import get_file

    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            get_file(
                FILENAME, KERAS_URL, file_hash=KERAS_FILE_SHA256, cache_dir=str(target_dir), cache_subdir="."
            )
        )
    except Exception as err:  # no network, hash mismatch, ...
        raise DataError(f"Could not download MNIST: {err}\n" + _fixes()) from err


def locate(download: bool = True) -> Path:
    """Path of the MNIST file, following the order in the module docstring.
    Introduced in notebook 00."""
    env_dir = os.environ.get("EFFCOURSE_DATA_DIR")
    if env_dir:
        path = Path(env_dir).expanduser() / FILENAME
        if not path.exists():
            raise DataError(f"EFFCOURSE_DATA_DIR is set but {path} does not exist.\n" + _fixes(path))
        return path
    local = data_dir() / FILENAME
    if local.exists():
        return local
    if not download:
        raise DataError(f"MNIST not found at {local} and downloads are off.\n" + _fixes(local))
    return _download(data_dir())


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (how the dataset README states its hashes).
    Introduced in notebook 00."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


_VERIFIED: dict[tuple, dict] = {}


def load_raw(path: os.PathLike | None = None, verify: bool = True) -> dict:
    """The four uint8 arrays of MNIST as a dict, verified by shape, dtype and content hash (cached).
    Introduced in notebook 00."""
    path = Path(path) if path else locate()
    try:
        stat = path.stat()
    except OSError as err:
        raise DataError(f"Cannot read {path}: {err}\n" + _fixes(path)) from err
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, verify)
    if key in _VERIFIED:
        return _VERIFIED[key]
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in SHAPES}
    except KeyError as err:
        raise DataError(
            f"{path} lacks the array {err}; expected keys {list(SHAPES)}.\n" + _fixes(path)
        ) from err
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path} is not a readable .npz file ({err}).\n" + _fixes(path)) from err
    for name, shape in SHAPES.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != np.uint8:
            raise DataError(
                f"{path}: {name} has shape {arr.shape} and dtype {arr.dtype}; "
                f"expected {shape} uint8.\n" + _fixes(path)
            )
        if verify and array_digest(arr) != ARRAY_SHA256[name]:
            raise DataError(
                f"{path}: the content of {name} does not match MNIST "
                "(sha256 differs): the file is corrupt or not MNIST.\n" + _fixes(path)
            )
    _VERIFIED[key] = arrays
    return arrays


@dataclass(frozen=True)
class MNIST:
    """Normalised MNIST splits: images float32 in [0, 1] of shape (N, 28, 28, 1), labels int32.
    Introduced in notebook 00."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    profile: str

    def __repr__(self) -> str:
        sizes = f"train={len(self.x_train)}, val={len(self.x_val)}, test={len(self.x_test)}"
        return f"MNIST(profile={self.profile!r}, {sizes})"


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) to float32 in [0, 1] with a channel axis (N, 28, 28, 1).
    Introduced in notebook 00."""
    return (images.astype(np.float32) / 255.0)[..., None]


def load(profile=None, path: os.PathLike | None = None) -> MNIST:
    """MNIST split and subset as the profile says (same profile, same images, every time).
    Introduced in notebook 00.

    Validation: the last ``val_size`` training images; training: the first ``train_size`` of
    the rest (None: all); test: the first ``test_size`` test images.
    """
    from . import profile as _profile

    prof = profile or _profile.active()
    raw = load_raw(path)
    n_val, n_tr, n_te = prof.val_size, prof.train_size, prof.test_size
    x_tr, y_tr = raw["x_train"][:-n_val][:n_tr], raw["y_train"][:-n_val][:n_tr]
    x_val, y_val = raw["x_train"][-n_val:], raw["y_train"][-n_val:]
    x_te, y_te = raw["x_test"][:n_te], raw["y_test"][:n_te]
    splits = [(normalise(x), y.astype(np.int32)) for x, y in ((x_tr, y_tr), (x_val, y_val), (x_te, y_te))]
    return MNIST(*(a for pair in splits for a in pair), prof.name)


def pipeline(x, y=None, batch_size: int = 128, shuffle: bool = False, seed: int = 0):
    """A batched, prefetched ``tf.data.Dataset`` over arrays (shuffled with a fixed seed).
    Introduced in notebook 05."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_counts(labels: np.ndarray) -> np.ndarray:
    """How many examples of each digit 0-9.
    Introduced in notebook 00."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=CLASSES)
