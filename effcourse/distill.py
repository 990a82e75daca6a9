"""Knowledge distillation (Hinton, Vinyals, Dean 2015): a student learns from a teacher's soft targets (notebook 04).

Notebook 04 has the learner write the loss and trains with it (``train_student(loss=...)``);
notebooks 02 and 08 distil pruned models through ``with_soft_targets``, so the loss keeps
one definition here.

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

    def __init__(self, temperature, alpha, loss=None):
        self.temperature, self.alpha, self.loss = temperature, alpha, loss or distillation_loss
        self.__name__ = "distillation_loss"

    def __call__(self, y_true, y_pred):
        return self.loss(y_true[:, 0], y_pred, y_true[:, 1:], self.temperature, self.alpha)


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


class Recipe:
    """How a model is compiled for fine-tuning: on the labels, or distilled from ``teacher``.

    The teacher's soft targets (``with_soft_targets``) are packed on the first distilled
    compile and shared by every later one (notebook 08's trials reuse one recipe); the label
    accuracy is logged as ``accuracy``, so progress bars and pruners read it as usual.
    Pruning's retraining (``prune.prune_and_finetune(teacher=...)``) and the search use it.

    Introduced in notebook 02.
    """

    def __init__(self, data, teacher=None, temperature: float = 4.0, alpha: float = 0.5):
        self.data, self.teacher, self.temperature, self.alpha = data, teacher, temperature, alpha
        self._soft = None

    def compile(self, model, optimizer, distilled: bool = True):
        """Compile ``model`` with ``optimizer``; return the data to fit it on."""
        import tf_keras

        from . import models

        if not distilled or self.teacher is None:
            models.compile_classifier(model, optimizer=optimizer)
            return self.data
        if self._soft is None:
            packed, loss, metrics = with_soft_targets(self.data, self.teacher, self.temperature, self.alpha)
            self._soft = packed, loss, metrics[0]
        packed, loss, metric = self._soft
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=[tf_keras.metrics.MeanMetricWrapper(metric, name="accuracy")],
        )
        return packed


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
    loss=None,
):
    """Train a copy of ``student`` on ``data``, alone (``teacher=None``) or distilled from ``teacher``, notebook 04.

    Both ways use the same optimizer (Adam, cosine-decayed from ``learning_rate``), batches
    and seed; only the loss differs (``loss(labels, student_logits, teacher_logits, T, alpha)``,
    by default ``distillation_loss``, with the given ``temperature`` and ``alpha``; alone is
    ``alpha = 0``). ``teacher_train_logits`` (from ``teacher_logits(teacher, data.x_train)``)
    saves recomputing them across a sweep. Returns the trained copy compiled as an ordinary
    classifier; the input is never changed. With ``verbose=0`` a progress bar shows the
    batches (``desc``, default: what is trained).

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
    lr = train.cosine_schedule(learning_rate, len(data.x_train), batch_size, epochs, alpha=train.TRAIN_FLOOR)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(lr),
        loss=_PackedLoss(temperature, alpha, loss),
        metrics=[_label_accuracy],
    )
    model.fit(
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
    return models.compile_classifier(model)
