import numpy as np
import pytest
import tensorflow as tf

import effcourse
from effcourse import models, train

keras = effcourse.keras


def test_parameter_counts_match_the_papers():
    assert models.lenet_300_100().count_params() == 266_610
    assert models.lenet5().count_params() == 431_080
    assert models.cnn().count_params() == 121_930
    for name in models.BUILDERS:
        assert models.build(name).output_shape == (None, 10)


def test_unknown_model_name():
    with pytest.raises(KeyError, match="choose from"):
        models.build("resnet")


def test_pretrained_trains_once_then_loads(tmp_root, quick):
    m1 = models.pretrained("lenet_300_100", quick)
    cache = tmp_root / "build" / "cache" / "quick"
    assert sorted(p.name for p in cache.iterdir()) == ["lenet_300_100.json", "lenet_300_100.keras"]
    record = models.training_record("lenet_300_100", quick)
    assert record.test_accuracy > 0.85  # a real, trained model
    mtime = (cache / "lenet_300_100.keras").stat().st_mtime_ns
    m2 = models.pretrained("lenet_300_100", quick)
    assert (cache / "lenet_300_100.keras").stat().st_mtime_ns == mtime  # loaded, not retrained
    assert models.training_record("lenet_300_100", quick) == record  # read from the sidecar, not retrained
    assert (cache / "lenet_300_100.keras").stat().st_mtime_ns == mtime
    assert record.epochs == quick.baseline_epochs["lenet_300_100"] and record.model == "lenet_300_100"
    assert len(record.history["val_accuracy"]) == record.epochs
    assert not any(k.startswith("effcourse_") for k in vars(m1)) and not any(
        k.startswith("effcourse_") for k in vars(m2)
    )  # typed record, nothing stuck on the models
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_is_deterministic(mnist, quick):
    m1, r1 = models.train_baseline("lenet_300_100", quick, data=mnist)
    m2, r2 = models.train_baseline("lenet_300_100", quick, data=mnist)
    assert isinstance(r1, models.TrainRecord) and r1.history == r2.history
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_check_model_rejects_keras3_subclassed_and_non_models(foreign_models):
    with pytest.raises(models.ModelError, match="Keras 3"):
        models.check_model(foreign_models["keras3"])
    with pytest.raises(models.ModelError, match="subclassed"):
        models.check_model(foreign_models["subclassed"])
    with pytest.raises(models.ModelError, match="tf_keras Model"):
        models.check_model("model.h5")


def test_clone_does_not_share_layers(tiny_model):
    copy = models.clone(tiny_model)
    assert all(a is not b for a, b in zip(copy.layers, tiny_model.layers))
    copy.layers[-1].kernel.assign(tf.zeros_like(copy.layers[-1].kernel))
    assert np.any(tiny_model.layers[-1].get_weights()[0] != 0)


def test_finetune_recipe_steps_and_schedule():

    assert train.steps_for(1000, 128, 3) == 8 * 3
    assert train.steps_for(1024, 128, 1) == 8
    sched = train.cosine_schedule(1e-3, 1000, 128, 2, alpha=0.1)
    assert float(sched(0)) == pytest.approx(1e-3)
    assert float(sched(16)) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="learning_rate"):
        train.cosine_schedule(0.0, 10, 2, 1)


def test_validate_positive_int_and_mnist():
    from effcourse import validate

    assert validate.positive_int(np.int64(3), "epochs") == 3
    with pytest.raises(TypeError, match="epochs must be a whole number"):
        validate.positive_int(2.5, "epochs")
    with pytest.raises(TypeError, match="whole number"):
        validate.positive_int(True, "epochs")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        validate.positive_int(0, "batch_size")
    with pytest.raises(TypeError, match="effcourse.data.load"):
        validate.mnist_like((np.zeros(3), np.zeros(3)), "prune_and_finetune")
