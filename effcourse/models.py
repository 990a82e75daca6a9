"""The course's baseline models and the trained-baseline cache (notebook 01).

All models take (28, 28, 1) images in [0, 1] and return **logits** (no softmax): the loss is
``SparseCategoricalCrossentropy(from_logits=True)``, numerically safer, what distillation
(notebook 04) and loss scaling (notebook 05) need, and ``argmax`` is unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from . import env
from .errors import EffcourseError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class ModelError(EffcourseError, TypeError):
    """A model the helper cannot handle (Keras 3, subclassed, not a model at all).

    Introduced in notebook 01.
    """


def check_model(model, need_graph: bool = True, what: str = "this helper"):
    """Raise a clear ModelError unless ``model`` is a Keras 2 (tf_keras) Sequential/Functional model.

    Introduced in notebook 01.
    """
    import tf_keras

    kind = f"{type(model).__module__}.{type(model).__name__}"
    if kind.split(".")[0] == "keras":
        raise ModelError(
            f"{what} needs a Keras 2 (tf_keras) model, got a Keras 3 object ({kind}). Build it with "
            "`from effcourse import keras` (tf_keras), after `import effcourse`, not `import keras`."
        )
    if not isinstance(model, tf_keras.Model):
        raise ModelError(f"{what} needs a tf_keras Model, got {type(model).__name__}.")
    if need_graph and not (isinstance(model, tf_keras.Sequential) or getattr(model, "_is_graph_network", 0)):
        raise ModelError(
            f"{what} needs a Sequential or Functional model (a graph of layers it can walk); got the "
            f"subclassed model {type(model).__name__}. Rebuild it with keras.Sequential([...]) or "
            "keras.Model(inputs, outputs)."
        )
    return model


def _classifier(name: str, body: list):
    """Input, the ``body`` layers, then the 10 logits, as one Sequential model."""
    from tf_keras import Sequential, layers

    logits = layers.Dense(NUM_CLASSES, name="logits")
    return Sequential([layers.Input(INPUT_SHAPE), *body, logits], name=name)


def _conv_pool(filters, size: int) -> list:
    """Two ReLU convolutions of ``size`` x ``size``, each followed by 2x2 max-pooling, then Flatten."""
    from tf_keras import layers

    return [
        layers.Conv2D(filters[0], size, activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(filters[1], size, activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
    ]


def lenet_300_100(name: str = "lenet_300_100"):
    """LeNet-300-100: a 784-300-100-10 MLP with ReLU, 266,610 parameters (LeCun et al. 1998).

    Introduced in notebook 00.
    """
    from tf_keras import layers

    return _classifier(name, [
        layers.Flatten(name="flatten"),
        layers.Dense(300, activation="relu", name="fc1"),
        layers.Dense(100, activation="relu", name="fc2"),
    ])  # fmt: skip


def lenet5(name: str = "lenet5", widths=(20, 50, 500)):
    """LeNet-5, Caffe variant used by Han et al.: conv 20 and 50 5x5, dense 500; 431,080 parameters.

    Caffe's prototxt has no activation after its convolutions; we add ReLU there (a common
    modern choice that trains faster); the layer sizes and parameter count are the paper's.
    ``widths`` (conv1 filters, conv2 filters, fc1 units) builds a narrower or wider variant.

    Introduced in notebook 01.
    """
    from tf_keras import layers

    return _classifier(
        name, [*_conv_pool(widths[:2], 5), layers.Dense(widths[2], activation="relu", name="fc1")]
    )


def cnn(name: str = "cnn"):
    """The small CNN: conv 32 3x3, pool, conv 64 3x3, pool, dense 64, dropout 0.5, dense 10.

    Introduced in notebook 01.
    """
    from tf_keras import layers

    head = [layers.Dense(64, activation="relu", name="fc1"), layers.Dropout(0.5, name="dropout")]
    return _classifier(name, _conv_pool((32, 64), 3) + head)


BUILDERS = {"lenet_300_100": lenet_300_100, "lenet5": lenet5, "cnn": cnn}
# Published test errors the full profile aims at (Han et al. 2015, Table 1 / 2016, Table 1).
PAPER_ERROR = {"lenet_300_100": 0.0164, "lenet5": 0.0080}


def _known(name: str) -> str:
    if name not in BUILDERS:
        raise KeyError(f"Unknown model {name!r}; choose from {sorted(BUILDERS)}.")
    return name


def build(name: str):
    """A fresh, untrained baseline by name: ``lenet_300_100``, ``lenet5`` or ``cnn``.

    Introduced in notebook 05.
    """
    return BUILDERS[_known(name)]()


def compile_classifier(model, learning_rate: float = 1e-3, optimizer=None):
    """Compile for MNIST: Adam (or ``optimizer``), cross-entropy on logits, accuracy.

    Introduced in notebook 00.
    """
    import tf_keras

    model.compile(
        optimizer=optimizer or tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def save_model(model, path: os.PathLike) -> Path:
    """Save a Keras model (.keras or .h5) atomically: a temp file in the same folder, then a rename.

    Introduced in notebook 01.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_model(path: os.PathLike, compile: bool = True):
    """Load a model saved by ``save_model``.

    Introduced in notebook 01.
    """
    import tf_keras

    return tf_keras.models.load_model(path, compile=compile)


def cache_dir(profile=None) -> Path:
    """build/cache/<profile>/, where trained baselines are kept.

    Introduced in notebook 01.
    """
    from . import profile as _profile

    return env.build_dir("cache", (profile or _profile.active()).name)


def _train_config(name: str, prof) -> dict:
    """How the profile trains baseline ``name``: the cache key (a changed value retrains it)."""
    return {
        "model": name,
        "profile": prof.name,
        "train_size": prof.train_size,
        "val_size": prof.val_size,
        "epochs": prof.baseline_epochs[name],
        "batch_size": prof.batch_size,
        "optimizer": "adam+cosine",
        "learning_rate": 1e-3,
        "seed": 42,
        "version": 1,
    }


@dataclasses.dataclass(frozen=True)
class TrainRecord:
    """How a cached baseline was trained, and how well: the JSON sidecar of its .keras file.

    ``history`` maps each Keras metric (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``) to one float per epoch.

    Introduced in notebook 01.
    """

    model: str
    profile: str
    train_size: int
    val_size: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    seed: int
    version: int
    train_seconds: float
    test_accuracy: float
    history: dict = dataclasses.field(default_factory=dict)
    tensorflow: str = ""


def train_baseline(name: str, profile=None, data=None, verbose: int = 0):
    """Train a baseline from scratch, deterministically, as the profile says; return (model, TrainRecord).

    Introduced in notebook 01.
    """
    import tensorflow as tf
    import tf_keras

    from . import data as _data
    from . import profile as _profile
    from . import train

    prof = profile or _profile.active()
    data = data or _data.load(prof)
    cfg = _train_config(name, prof)
    env.seed_everything(cfg["seed"], deterministic=True)
    schedule = train.cosine_schedule(
        cfg["learning_rate"], len(data.x_train), cfg["batch_size"], cfg["epochs"], alpha=train.TRAIN_FLOOR
    )
    model = compile_classifier(build(name), optimizer=tf_keras.optimizers.Adam(schedule))
    start = time.perf_counter()
    desc = f"training baseline {name} ({cfg['epochs']} epochs)"
    hist = train.fit(
        model, data, cfg["epochs"], cfg["batch_size"], verbose=verbose, seed=cfg["seed"], desc=desc
    )
    seconds = time.perf_counter() - start
    _, test_acc = model.evaluate(data.x_test, data.y_test, batch_size=512, verbose=0)
    history = {k: [float(v) for v in values] for k, values in hist.history.items()}
    record = TrainRecord(**cfg, train_seconds=round(seconds, 2), test_accuracy=float(test_acc),
                         history=history, tensorflow=tf.__version__)  # fmt: skip
    return model, record


def _cached(name: str, prof) -> tuple[Path, TrainRecord | None]:
    """The cached model's path and its sidecar's record, None unless it matches the profile's settings."""
    path = cache_dir(prof) / f"{name}.keras"
    try:
        info = json.loads(path.with_suffix(".json").read_text())
        if all(info.get(k) == v for k, v in _train_config(name, prof).items()):
            known = {f.name for f in dataclasses.fields(TrainRecord)}
            return path, TrainRecord(**{k: v for k, v in info.items() if k in known})
    except (OSError, ValueError, TypeError):
        pass  # missing, unreadable or incomplete sidecar
    return path, None


def pretrained(name: str, profile=None, retrain: bool = False, verbose: int = 0):
    """The trained baseline ``name`` for the profile: loaded from the cache, or trained and cached.

    The cache is build/cache/<profile>/<name>.keras with a JSON sidecar of the training settings
    (a changed setting retrains); atomic writes, so notebooks running at once never see half a file.

    Introduced in notebook 01.
    """
    from . import profile as _profile

    prof = profile or _profile.active()
    path, record = _cached(_known(name), prof)
    if not retrain and record is not None and path.exists():
        try:
            return compile_classifier(load_model(path, compile=False))
        except (OSError, ValueError):
            pass  # unreadable cache: retrain below
    model, record = train_baseline(name, prof, verbose=verbose)
    save_model(model, path)
    env.atomic_write_bytes(
        path.with_suffix(".json"), json.dumps(dataclasses.asdict(record), indent=1).encode()
    )
    return model


def training_record(name: str, profile=None) -> TrainRecord:
    """How the cached baseline ``name`` was trained: epochs, time, history, test accuracy.

    Reads the sidecar ``pretrained`` writes; without an up-to-date one, trains the baseline first.

    Introduced in notebook 01.
    """
    from . import profile as _profile

    prof = profile or _profile.active()
    record = _cached(_known(name), prof)[1]
    if record is None:
        pretrained(name, prof)
        record = _cached(name, prof)[1]
    return record


def clone(model, compile_like: bool = True):
    """A copy of a model with its own layers and the same weights (tfmot wrappers share layers).

    Introduced in notebook 01.
    """
    import tf_keras

    check_model(model, what="clone")
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    if compile_like and model.optimizer is not None:
        compile_classifier(copy)
    return copy
