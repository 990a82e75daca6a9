"""Knowledge distillation (Hinton, Vinyals, Dean 2015): a small student learns from a teacher's soft targets (notebook 04).

The teacher's logits ``v`` softened at a temperature ``T``, ``q = softmax(v / T)``, carry
more than the label: how much a 2 looks like a 3 or a 7. The student (logits ``z``) is
trained on

    L = (1 - alpha) * CE(y, softmax(z)) + alpha * T^2 * KL(softmax(v / T) || softmax(z / T))

The ``T^2`` keeps the soft term's gradients the same size whatever ``T`` (they scale as
``1 / T^2``, Hinton et al. section 2); KL equals the cross-entropy with the soft targets
minus the teacher's entropy, a constant, so the gradients are the paper's. ``alpha = 0``
is ordinary training on the labels, which is how ``train_student`` trains the student
alone: both runs share every other setting.

The teacher's logits are computed once for the training images (no augmentation is used,
so they never change) and fed to the student with the labels; distillation then costs
about what training the student alone costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import progress
from .models import check_model


def _check_temperature(temperature) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError) as err:
        raise TypeError(f"temperature must be a number > 0, got {temperature!r}") from err
    if not value > 0 or not math.isfinite(value):
        raise ValueError(
            f"temperature must be > 0 (T = 1 is the plain softmax; Hinton et al. use "
            f"2 to 20), got {temperature}."
        )
    return value


def _check_alpha(alpha) -> float:
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"alpha is the weight of the soft-target term and must be in [0, 1], got {alpha}.")
    return value


def soft_targets(logits, temperature: float) -> np.ndarray:
    """softmax(logits / T) row by row, in NumPy: the teacher's softened probabilities, notebook 04.

    Introduced in notebook 04.
    """
    temperature = _check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def distillation_loss(labels, student_logits, teacher_logits, temperature: float, alpha: float):
    """Mean over the batch of (1 - alpha) * CE(y, z) + alpha * T^2 * KL(softmax(v/T) || softmax(z/T)), notebook 04.

    ``labels`` are integer classes, ``student_logits`` ``z`` and ``teacher_logits`` ``v``
    have shape (batch, classes). Returns a scalar tensor (differentiable in ``z``).

    Introduced in notebook 04.
    """
    import tensorflow as tf

    temperature = _check_temperature(temperature)
    alpha = _check_alpha(alpha)
    z = tf.convert_to_tensor(student_logits, tf.float32)
    v = tf.convert_to_tensor(teacher_logits, tf.float32)
    if z.shape[-1] != v.shape[-1]:
        raise ValueError(
            f"student and teacher logits have different sizes ({z.shape[-1]} and "
            f"{v.shape[-1]}): distillation needs both to predict the same classes."
        )
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)
    log_p_student = tf.nn.log_softmax(z / temperature, axis=-1)
    log_p_teacher = tf.nn.log_softmax(v / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return tf.reduce_mean((1.0 - alpha) * hard + alpha * temperature**2 * kl)


class _PackedLoss:
    """Keras loss on y_true = [label, teacher logits...] packed in one float tensor."""

    def __init__(self, temperature, alpha):
        self.temperature, self.alpha = temperature, alpha
        self.__name__ = "distillation_loss"

    def __call__(self, y_true, y_pred):
        return distillation_loss(y_true[:, 0], y_pred, y_true[:, 1:], self.temperature, self.alpha)


def _label_accuracy(y_true, y_pred):
    import tensorflow as tf

    labels = tf.cast(y_true[:, 0], tf.int64)
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), labels), tf.float32))


def teacher_logits(teacher, x, batch_size: int = 512) -> np.ndarray:
    """The teacher's logits on ``x`` (float32), computed once and reused every epoch, notebook 04.

    Introduced in notebook 04.
    """
    check_model(teacher, need_graph=False, what="distill.teacher_logits")
    return teacher.predict(x, batch_size=batch_size, verbose=0).astype(np.float32)


def with_soft_targets(data, teacher, temperature: float, alpha: float):
    """``(packed, loss, metrics)`` to train any model on ``data`` distilled from ``teacher``, notebook 04.

    ``packed`` is a copy of the ``effcourse.data.MNIST`` whose training and validation
    labels carry the teacher's logits (``[label, logits...]`` per row, computed once);
    compile with ``loss`` and ``metrics`` (the accuracy on the labels) and fit on
    ``packed``. Used by pruning's retraining (``prune.iterative_prune(teacher=...)``), where
    the dense model teaches its own pruned copy.

    Introduced in notebook 04.
    """
    import dataclasses

    check_model(teacher, need_graph=False, what="distill.with_soft_targets (teacher)")
    temperature, alpha = _check_temperature(temperature), _check_alpha(alpha)

    def pack(x, y):
        return np.concatenate([np.asarray(y)[:, None].astype(np.float32), teacher_logits(teacher, x)], axis=1)

    packed = dataclasses.replace(
        data, y_train=pack(data.x_train, data.y_train), y_val=pack(data.x_val, data.y_val)
    )
    return packed, _PackedLoss(temperature, alpha), [_label_accuracy]


def student_cnn(filters: tuple = (8, 16), dense: int = 0, name: str = "student"):
    """A small CNN student for distillation, notebook 04.

    Two 3x3 conv + max-pool blocks with ``filters`` channels, an optional ReLU layer of
    ``dense`` units, then the 10 logits.

    Introduced in notebook 04.
    """
    from tf_keras import Sequential, layers

    from .models import INPUT_SHAPE, NUM_CLASSES

    if len(filters) != 2 or min(filters) < 1 or dense < 0:
        raise ValueError(
            f"filters must be two positive channel counts and dense >= 0, got {filters!r}, {dense!r}"
        )
    hidden = [layers.Dense(dense, activation="relu", name="fc1")] if dense else []
    return Sequential(
        [
            layers.Input(INPUT_SHAPE),
            layers.Conv2D(filters[0], 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(filters[1], 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            *hidden,
            layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name=name,
    )


def student_mlp(hidden: tuple = (800, 800), name: str = "student_mlp"):
    """An unregularised fully connected student (Hinton et al.'s MNIST student: 800-800), notebook 04.

    Flatten, one ReLU layer per entry of ``hidden`` (no dropout, no weight decay), then the
    10 logits: a network that fits its training images and, alone, generalises less well
    than a convolutional teacher.

    Introduced in notebook 04.
    """
    from tf_keras import Sequential, layers

    from .models import INPUT_SHAPE, NUM_CLASSES

    hidden = tuple(hidden)
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must be one or more positive layer widths, got {hidden!r}")
    return Sequential(
        [
            layers.Input(INPUT_SHAPE),
            layers.Flatten(name="flatten"),
            *[layers.Dense(n, activation="relu", name=f"fc{i + 1}") for i, n in enumerate(hidden)],
            layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name=name,
    )


@dataclass(frozen=True)
class StudentRecord:
    """How ``train_student_with_record`` trained a student.

    ``teacher`` is the teacher model's name (None: trained alone, ``alpha`` 0);
    ``history`` maps each Keras metric to one float per epoch.

    Introduced in notebook 04.
    """

    teacher: str | None
    temperature: float
    alpha: float
    epochs: int
    history: dict = field(default_factory=dict)


def train_student(
    student,
    data,
    epochs: int,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.9,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    teacher_train_logits=None,
    seed: int = 0,
    verbose: int = 0,
    desc: str | None = None,
):
    """Train a copy of ``student`` on ``data``, alone (``teacher=None``) or distilled from ``teacher``, notebook 04.

    Both ways use the same optimizer (Adam, cosine-decayed from ``learning_rate``), batches
    and seed; only the loss differs (``distillation_loss`` with the given ``temperature``
    and ``alpha``; alone is ``alpha = 0``). ``teacher_train_logits`` (from
    ``teacher_logits(teacher, data.x_train)``) saves recomputing them across a sweep.
    Returns the trained copy compiled as an ordinary classifier; the input is never changed.
    With ``verbose=0`` a progress bar shows the batches (``desc``, default: what is trained).
    ``train_student_with_record`` (same arguments) also returns a ``StudentRecord``.

    Introduced in notebook 04.
    """
    model, _ = train_student_with_record(
        student,
        data,
        epochs,
        teacher=teacher,
        temperature=temperature,
        alpha=alpha,
        batch_size=batch_size,
        learning_rate=learning_rate,
        teacher_train_logits=teacher_train_logits,
        seed=seed,
        verbose=verbose,
        desc=desc,
    )
    return model


def train_student_with_record(
    student,
    data,
    epochs: int,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.9,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    teacher_train_logits=None,
    seed: int = 0,
    verbose: int = 0,
    desc: str | None = None,
) -> tuple:
    """``train_student`` that also returns how it trained: ``(model, StudentRecord)``, notebook 04.

    The record holds the settings used (``alpha`` 0 and ``teacher`` None when alone) and
    the training history.

    Introduced in notebook 04.
    """
    import tf_keras

    from . import data as _data
    from . import env, models, train
    from .validate import mnist_like, positive_int

    check_model(student, what="distill.train_student")
    mnist_like(data, "distill.train_student")
    epochs, batch_size = positive_int(epochs, "epochs"), positive_int(batch_size, "batch_size")
    n_out = student.output_shape[-1]
    if teacher is None:
        if teacher_train_logits is not None:
            raise ValueError("teacher_train_logits given without a teacher; pass teacher= as well.")
        alpha, soft = 0.0, np.zeros((len(data.x_train), n_out), np.float32)
    else:
        check_model(teacher, need_graph=False, what="distill.train_student (teacher)")
        if teacher.output_shape[-1] != n_out:
            raise ValueError(
                f"the teacher predicts {teacher.output_shape[-1]} classes and the student "
                f"{n_out}: distillation needs the same output size. Give the student a "
                f"final Dense({teacher.output_shape[-1]}) layer."
            )
        soft = (
            teacher_train_logits
            if teacher_train_logits is not None
            else teacher_logits(teacher, data.x_train)
        )
        if soft.shape != (len(data.x_train), n_out):
            raise ValueError(
                f"teacher_train_logits has shape {soft.shape}; expected "
                f"{(len(data.x_train), n_out)} (one row per training image)."
            )
    temperature, alpha = _check_temperature(temperature), _check_alpha(alpha)
    packed = np.concatenate([data.y_train[:, None].astype(np.float32), soft], axis=1)
    env.seed_everything(seed)
    model = models.clone(student, compile_like=False)
    lr = train.cosine_schedule(learning_rate, len(data.x_train), batch_size, epochs, alpha=0.01)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(lr),
        loss=_PackedLoss(temperature, alpha),
        metrics=[_label_accuracy],
    )
    hist = model.fit(
        _data.pipeline(data.x_train, packed, batch_size, shuffle=True, seed=seed),
        epochs=epochs,
        verbose=verbose,
        callbacks=progress.with_bar(
            [],
            desc
            or (
                f"training {student.name} alone"
                if teacher is None
                else f"distilling into {student.name} (T={temperature:g}, alpha={alpha:g})"
            ),
            verbose,
        ),
    )
    models.compile_classifier(model)
    record = StudentRecord(
        teacher=None if teacher is None else teacher.name,
        temperature=temperature,
        alpha=alpha,
        epochs=epochs,
        history=train.history_dict(hist),
    )
    return model, record


def gap_recovered(error_alone: float, error_distilled: float, error_teacher: float) -> float:
    """Share of the student-teacher error gap that distillation closes: (alone - distilled) / (alone - teacher), notebook 04.

    Introduced in notebook 04.
    """
    gap = float(error_alone) - float(error_teacher)
    if gap <= 0:
        raise ValueError(
            f"the student alone (error {error_alone}) is not worse than the teacher "
            f"(error {error_teacher}): there is no gap to recover."
        )
    return (float(error_alone) - float(error_distilled)) / gap


def seed_summary(alone_errors, distilled_errors, teacher_errors) -> dict:
    """Mean and spread of test errors over seeds, and the share of the gap the means close, notebook 04.

    ``alone_errors`` and ``distilled_errors``: one number per seed (the same seeds, in the
    same order, so each pair shares its initial weights and batches); ``teacher_errors``:
    one number. Returns ``alone_mean``, ``alone_std``, ``distilled_mean``, ``distilled_std``
    (sample standard deviations, 0 for one seed), ``gap_recovered`` (of the means, as
    ``gap_recovered``) and ``per_seed_gap`` (each pair's own share).

    Introduced in notebook 04.
    """
    a = np.asarray(alone_errors, dtype=np.float64).ravel()
    d = np.asarray(distilled_errors, dtype=np.float64).ravel()
    if a.size == 0 or a.shape != d.shape:
        raise ValueError(
            f"give one error per seed for the student alone and distilled, the same number of each; "
            f"got {a.size} and {d.size}."
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(d)) and np.isfinite(float(teacher_errors))):
        raise ValueError("errors must be finite numbers.")

    def spread(x):
        return float(np.std(x, ddof=1)) if x.size > 1 else 0.0

    return {
        "alone_mean": float(a.mean()),
        "alone_std": spread(a),
        "distilled_mean": float(d.mean()),
        "distilled_std": spread(d),
        "gap_recovered": gap_recovered(a.mean(), d.mean(), teacher_errors),
        "per_seed_gap": [
            gap_recovered(x, y, teacher_errors) if x > float(teacher_errors) else float("nan")
            for x, y in zip(a, d)
        ],
    }
