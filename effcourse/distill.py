"""Knowledge distillation (Hinton, Vinyals, Dean 2015): a student learns a teacher's soft targets.

Notebook 04 has the learner write the loss and trains with it (``train_student(loss=...)``);
notebooks 02 and 08 distil pruned models through ``with_soft_targets`` / ``Recipe``, so the loss
keeps one definition here. For teacher logits ``v``, student logits ``z`` and temperature ``T``:

    L = (1 - alpha) * CE(y, softmax(z)) + alpha * T^2 * KL(softmax(v / T) || softmax(z / T))

``T^2`` keeps the soft term's gradients the same size whatever ``T`` (Hinton et al. section 2);
``alpha = 0`` is ordinary training on the labels, which is how ``train_student`` trains the
student alone. The teacher's logits are computed once (no augmentation) and packed with the
labels, ``[label, logits...]`` per row, so distillation costs about what training alone costs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import env, models, train


def _check(temperature, alpha) -> tuple[float, float]:
    temperature, alpha = float(temperature), float(alpha)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(
            f"temperature must be > 0 (T = 1 is the plain softmax; Hinton et al. use 2 to 20), got {temperature}."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is the weight of the soft-target term and must be in [0, 1], got {alpha}.")
    return temperature, alpha


def distillation_loss(labels, student_logits, teacher_logits, temperature: float, alpha: float):
    """Batch mean of (1 - alpha) CE(y, z) + alpha T^2 KL(softmax(v/T) || softmax(z/T)), a tensor.

    ``labels`` are integer classes; ``student_logits`` ``z`` and ``teacher_logits`` ``v`` have
    shape (batch, classes). Differentiable in ``z``.

    Introduced in notebook 04.
    """
    import tensorflow as tf

    temperature, alpha = _check(temperature, alpha)
    z = tf.convert_to_tensor(student_logits, tf.float32)
    v = tf.convert_to_tensor(teacher_logits, tf.float32)
    if z.shape[-1] != v.shape[-1]:
        raise ValueError(
            f"student and teacher logits have different sizes ({z.shape[-1]} and {v.shape[-1]}): "
            "distillation needs both to predict the same classes."
        )
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)
    log_p_student = tf.nn.log_softmax(z / temperature, axis=-1)
    log_p_teacher = tf.nn.log_softmax(v / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return tf.reduce_mean((1.0 - alpha) * hard + alpha * temperature**2 * kl)


class _PackedLoss:
    """Keras loss on y_true = [label, teacher logits...] packed in one float tensor."""

    __name__ = "distillation_loss"

    def __init__(self, temperature, alpha, loss=None):
        self.temperature, self.alpha, self.loss = temperature, alpha, loss or distillation_loss

    def __call__(self, y_true, y_pred):
        return self.loss(y_true[:, 0], y_pred, y_true[:, 1:], self.temperature, self.alpha)


def _label_accuracy(y_true, y_pred):
    import tensorflow as tf

    labels = tf.cast(y_true[:, 0], tf.int64)
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), labels), tf.float32))


def _pack(labels, logits) -> np.ndarray:
    return np.concatenate([np.asarray(labels)[:, None].astype(np.float32), logits], axis=1)


def teacher_logits(teacher, x, batch_size: int = 512) -> np.ndarray:
    """The teacher's logits on ``x`` (float32), computed once and reused every epoch.

    Introduced in notebook 04.
    """
    models.check_model(teacher, need_graph=False, what="distill.teacher_logits")
    return teacher.predict(x, batch_size=batch_size, verbose=0).astype(np.float32)


def with_soft_targets(data, teacher, temperature: float, alpha: float):
    """``(packed, loss, metrics)`` to train any model on ``data`` distilled from ``teacher``.

    ``packed`` is ``data`` with the teacher's logits packed into its training and validation
    labels; compile with ``loss`` and ``metrics`` (the label accuracy) and fit on ``packed``.

    Introduced in notebook 04.
    """
    temperature, alpha = _check(temperature, alpha)
    packed = dataclasses.replace(
        data,
        y_train=_pack(data.y_train, teacher_logits(teacher, data.x_train)),
        y_val=_pack(data.y_val, teacher_logits(teacher, data.x_val)),
    )
    return packed, _PackedLoss(temperature, alpha), [_label_accuracy]


class Recipe:
    """How a model is compiled for fine-tuning: on the labels, or distilled from ``teacher``.

    The teacher's soft targets (``with_soft_targets``) are packed on the first distilled
    compile and shared by every later one (notebook 08's trials reuse one recipe); the label
    accuracy is logged as ``accuracy``, so progress bars and pruners read it as usual.

    Introduced in notebook 02.
    """

    def __init__(self, data, teacher=None, temperature: float = 4.0, alpha: float = 0.5):
        self.data, self.teacher, self.temperature, self.alpha = data, teacher, temperature, alpha
        self._soft = None

    def compile(self, model, optimizer, distilled: bool = True):
        """Compile ``model`` with ``optimizer``; return the data to fit it on."""
        import tf_keras

        if not distilled or self.teacher is None:
            models.compile_classifier(model, optimizer=optimizer)
            return self.data
        if self._soft is None:
            self._soft = with_soft_targets(self.data, self.teacher, self.temperature, self.alpha)
        packed, loss, (metric,) = self._soft
        accuracy = tf_keras.metrics.MeanMetricWrapper(metric, name="accuracy")
        model.compile(optimizer=optimizer, loss=loss, metrics=[accuracy])
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
    """Train a copy of ``student`` on ``data``, alone (``teacher=None``) or distilled from ``teacher``.

    Both ways share the optimizer (Adam, cosine-decayed from ``learning_rate``), batches and seed;
    only the loss differs (``loss(labels, student_logits, teacher_logits, T, alpha)``, by default
    ``distillation_loss``; alone is ``alpha = 0``). ``teacher_train_logits`` saves recomputing the
    teacher's logits across a sweep.

    Introduced in notebook 04.
    """
    import tf_keras

    models.check_model(student, what="distill.train_student")
    shape = (len(data.x_train), student.output_shape[-1])
    if teacher is None:
        alpha, soft = 0.0, np.zeros(shape, np.float32)
    elif teacher.output_shape[-1] != shape[1]:
        raise ValueError(
            f"the teacher predicts {teacher.output_shape[-1]} classes and the student {shape[1]}: "
            "distillation needs the same output size."
        )
    else:
        soft = teacher_logits(teacher, data.x_train) if teacher_train_logits is None else teacher_train_logits
        if soft.shape != shape:
            raise ValueError(f"teacher_train_logits has shape {soft.shape}; expected {shape}.")
    temperature, alpha = _check(temperature, alpha)
    packed = _pack(data.y_train, soft)
    env.seed_everything(seed)
    model = models.clone(student, compile_like=False)
    lr = train.cosine_schedule(learning_rate, len(data.x_train), batch_size, epochs, alpha=train.TRAIN_FLOOR)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(lr),
        loss=_PackedLoss(temperature, alpha, loss),
        metrics=[_label_accuracy],
    )
    if desc is None and teacher is None:
        desc = f"training {student.name} alone"
    elif desc is None:
        desc = f"distilling into {student.name} (T={temperature:g}, alpha={alpha:g})"
    labelled = dataclasses.replace(data, y_train=packed)
    train.fit(model, labelled, epochs, batch_size, verbose=verbose, seed=seed, validation=False, desc=desc)
    return models.compile_classifier(model)
