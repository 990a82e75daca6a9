"""effcourse.distill: the loss equals a hand computation, the T^2 factor, bad input, training."""

import numpy as np
import pytest
import tensorflow as tf

import effcourse
from effcourse import data, distill

LABELS = np.array([0, 2, 1])
STUDENT = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-2.0, 3.0, 0.0]], dtype=np.float32)
TEACHER = np.array([[4.0, 1.0, -2.0], [0.0, -1.0, 2.5], [1.0, 5.0, -3.0]], dtype=np.float32)


def by_hand(labels, z, v, T, alpha):
    """The loss of Hinton et al. written out in NumPy, one example at a time."""
    total = 0.0
    for y, zi, vi in zip(labels, z.astype(float), v.astype(float)):
        hard = -(zi[y] - np.log(np.sum(np.exp(zi))))
        p_teacher = np.exp(vi / T) / np.sum(np.exp(vi / T))
        p_student = np.exp(zi / T) / np.sum(np.exp(zi / T))
        kl = np.sum(p_teacher * np.log(p_teacher / p_student))
        total += (1 - alpha) * hard + alpha * T**2 * kl
    return total / len(labels)


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 0.3), (2.5, 1.0)])
def test_loss_equals_hand_computation(T, alpha):
    got = float(distill.distillation_loss(LABELS, STUDENT, TEACHER, T, alpha))
    assert got == pytest.approx(by_hand(LABELS, STUDENT, TEACHER, T, alpha), rel=1e-5)


def test_alpha_zero_is_plain_cross_entropy_and_matching_the_teacher_costs_nothing():
    plain = float(
        tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=LABELS, logits=STUDENT))
    )
    assert float(distill.distillation_loss(LABELS, STUDENT, TEACHER, 3.0, 0.0)) == pytest.approx(
        plain, rel=1e-6
    )
    assert float(distill.distillation_loss(LABELS, TEACHER, TEACHER, 3.0, 1.0)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_t_squared_keeps_the_soft_gradient_at_logit_matching_scale():
    # Hinton et al. eq. 4: at high T, d/dz_i of T^2 * KL -> (z_i - v_i) / N for zero-mean logits
    z = tf.Variable(STUDENT[:1] - STUDENT[:1].mean())
    v = TEACHER[:1] - TEACHER[:1].mean()
    for T in (50.0, 200.0):
        with tf.GradientTape() as tape:
            loss = distill.distillation_loss(LABELS[:1], z, v, T, 1.0)
        grad = tape.gradient(loss, z).numpy()
        np.testing.assert_allclose(grad, (z.numpy() - v) / 3, atol=0.05)


def test_bad_input_is_a_clear_error():
    for T in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            distill.distillation_loss(LABELS, STUDENT, TEACHER, T, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        distill.distillation_loss(LABELS, STUDENT, TEACHER, 2.0, 1.5)
    with pytest.raises(ValueError, match="different sizes"):
        distill.distillation_loss(LABELS, STUDENT, TEACHER[:, :2], 2.0, 0.5)


def student_cnn(filters=(2, 4)):
    """A small convolutional student (notebook 04 builds its own the same way)."""
    layers = effcourse.keras.layers
    return effcourse.keras.Sequential(
        [
            layers.Input((28, 28, 1)),
            layers.Conv2D(filters[0], 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(filters[1], 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(10),
        ],
        name="student",
    )


def student_mlp(hidden=(16, 8)):
    layers = effcourse.keras.layers
    return effcourse.keras.Sequential(
        [layers.Input((28, 28, 1)), layers.Flatten()]
        + [layers.Dense(n, activation="relu") for n in hidden]
        + [layers.Dense(10)],
        name="student_mlp",
    )


def small_mnist(mnist, n=512):
    return data.MNIST(
        mnist.x_train[:n],
        mnist.y_train[:n],
        mnist.x_val[:128],
        mnist.y_val[:128],
        mnist.x_test[:256],
        mnist.y_test[:256],
        "test",
    )


def test_teacher_and_student_must_predict_the_same_classes(mnist):
    keras = effcourse.keras
    student = student_cnn((2, 4))
    teacher = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    with pytest.raises(ValueError, match="same output size"):
        distill.train_student(student, small_mnist(mnist), 1, teacher=teacher)
    with pytest.raises(ValueError, match="temperature"):
        distill.train_student(student, small_mnist(mnist), 1, teacher=student, temperature=0)


def test_distilled_student_moves_towards_the_teacher(mnist):
    subset = small_mnist(mnist)
    teacher = effcourse.models.pretrained("lenet5")  # the quick-profile baseline
    student = student_cnn((2, 4))
    before = [w.copy() for w in student.get_weights()]
    logits = distill.teacher_logits(teacher, subset.x_train)
    taught = distill.train_student(
        student,
        subset,
        2,
        teacher=teacher,
        temperature=4.0,
        alpha=1.0,
        teacher_train_logits=logits,
        learning_rate=3e-3,
    )
    for a, b in zip(before, student.get_weights()):
        np.testing.assert_array_equal(a, b)  # the student passed in is never trained
    assert not any(k.startswith("effcourse_") for k in vars(taught))  # nothing stuck on the model
    x = subset.x_test

    def kl(model):
        return float(
            distill.distillation_loss(
                np.zeros(len(x)), model.predict(x, verbose=0), teacher.predict(x, verbose=0), 4.0, 1.0
            )
        )

    assert kl(taught) < kl(student)  # the soft-target loss fell: it learned the teacher's outputs
    loss, acc = taught.evaluate(x, subset.y_test, verbose=0)  # compiled as a plain classifier
    assert np.isfinite(loss) and 0 <= acc <= 1


def test_check_distillation_loss_exercise(capsys):
    from effcourse import checks

    def answer(labels, z, v, T, alpha):  # the package's TensorFlow version as the learner's answer
        return distill.distillation_loss(labels, z, v, T, alpha)

    def in_numpy(labels, z, v, T, alpha):  # right numbers, but no gradient for Keras
        return np.float32(answer(labels, z, v, T, alpha))

    def no_t_squared(labels, z, v, T, alpha):
        return answer(labels, z, v, 1.0, 0.0) * (1 - alpha) + alpha * (answer(labels, z, v, T, 1.0) / T**2)

    def int_labels_only(labels, z, v, T, alpha):
        return answer(tf.constant(np.asarray(labels)), z, v, T, alpha) if labels.dtype.is_integer else 1 / 0

    assert checks.nb04.distillation_loss(answer) is None
    out = capsys.readouterr().out
    assert out.count("PASS") == 1, out  # one PASS line per check, not one per case
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb04.distillation_loss(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(checks.CheckFailed, match="T\\^2"):
        checks.nb04.distillation_loss(no_t_squared)
    with pytest.raises(checks.CheckFailed, match="swapped"):
        checks.nb04.distillation_loss(lambda l, z, v, T, a: answer(l, z, v, T, 1 - a))
    with pytest.raises(checks.CheckFailed, match="differentiate"):
        checks.nb04.distillation_loss(in_numpy)
    with pytest.raises(checks.CheckFailed):
        checks.nb04.distillation_loss(int_labels_only)


def test_alone_and_distilled_differ_only_in_the_loss(mnist):
    # With alpha = 0 the distillation loss is plain cross-entropy, so a run "distilled" at alpha 0
    # must end with exactly the weights of the run alone: same initial weights, optimizer,
    # batches (order included) and seed. Any other difference between the two runs breaks this.
    subset = small_mnist(mnist, 256)
    teacher = effcourse.models.pretrained("lenet5")
    effcourse.env.seed_everything(5)
    student = student_mlp((16, 8))
    alone = distill.train_student(student, subset, 2, seed=3, learning_rate=3e-3)
    same = distill.train_student(student, subset, 2, teacher=teacher, alpha=0.0, seed=3, learning_rate=3e-3)
    for a, b in zip(alone.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(a, b)
    other_seed = distill.train_student(
        student, subset, 2, teacher=teacher, alpha=0.0, seed=4, learning_rate=3e-3
    )
    assert any(not np.array_equal(a, b) for a, b in zip(alone.get_weights(), other_seed.get_weights()))
    # a loss passed in (the learner's, in notebook 04) is the one trained with: the package's own
    # formula gives the same weights, a different loss does not
    own = distill.train_student(
        student,
        subset,
        2,
        teacher=teacher,
        alpha=0.5,
        seed=3,
        learning_rate=3e-3,
        loss=distill.distillation_loss,
    )
    default = distill.train_student(
        student, subset, 2, teacher=teacher, alpha=0.5, seed=3, learning_rate=3e-3
    )
    for a, b in zip(own.get_weights(), default.get_weights()):
        np.testing.assert_array_equal(a, b)
    calls = []

    def hard_only(labels, z, v, T, alpha):
        calls.append(T)
        return distill.distillation_loss(labels, z, v, T, 0.0)

    other = distill.train_student(
        student, subset, 2, teacher=teacher, alpha=0.5, seed=3, learning_rate=3e-3, loss=hard_only
    )
    assert calls and any(not np.array_equal(a, b) for a, b in zip(other.get_weights(), default.get_weights()))
