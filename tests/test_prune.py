"""effcourse.prune: real sparsity in stripped kernels, 2:4 groups, exact channel surgery,
no mutation of the caller's model, clear errors for bad input."""

import dataclasses

import numpy as np
import pytest

import effcourse
from effcourse import measure, models, prune

keras = effcourse.keras


@pytest.fixture(scope="module")
def small_data(mnist):
    """A few hundred MNIST images: enough to run the training loop, fast."""
    return dataclasses.replace(
        mnist,
        x_train=mnist.x_train[:512],
        y_train=mnist.y_train[:512],
        x_val=mnist.x_val[:256],
        y_val=mnist.y_val[:256],
    )


def _mlp():
    model = models.lenet_300_100()
    models.compile_classifier(model)
    return model


def _weights(model):
    return [w.copy() for w in model.get_weights()]


# --- magnitude pruning ------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["polynomial", "constant"])
def test_prune_and_finetune_reaches_sparsity_and_leaves_input_alone(small_data, schedule):
    model = _mlp()
    before = _weights(model)
    pruned = prune.prune_and_finetune(model, small_data, 0.8, epochs=2, batch_size=64, schedule=schedule)
    sparsity = prune.kernel_sparsity(pruned)
    assert set(sparsity) == {"fc1", "fc2", "logits"}
    for name, value in sparsity.items():
        assert value == pytest.approx(0.8, abs=0.005), name  # zeros really counted in the kernels
    assert not any("prune_low_magnitude" in layer.name for layer in pruned.layers)  # stripped
    assert pruned.optimizer is not None  # compiled
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert prune.kernel_sparsity(model) == {"fc1": 0.0, "fc2": 0.0, "logits": 0.0}
    assert measure.count_nonzero(pruned) < 0.25 * measure.count_params(pruned)


def test_per_layer_sparsities_and_dense_layers(small_data):
    pruned = prune.prune_and_finetune(
        models.lenet_300_100(),
        small_data,
        0.5,
        epochs=1,
        batch_size=64,
        per_layer={"fc1": 0.9, "logits": 0.0},
    )
    got = prune.kernel_sparsity(pruned)
    assert got["fc1"] == pytest.approx(0.9, abs=0.005)
    assert got["fc2"] == pytest.approx(0.5, abs=0.005)
    assert got["logits"] == 0.0


def test_pruning_summaries_are_written_step_by_step(small_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    prune.prune_and_finetune(
        models.lenet_300_100(), small_data, 0.6, epochs=1, batch_size=32, log_dir=tmp_path / "logs"
    )
    acc = EventAccumulator(str(tmp_path / "logs" / "metrics"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = [t for t in acc.Tags()["tensors"] if t.endswith("sparsity")]
    assert any("fc1" in t for t in tags)
    steps = sorted({e.step for e in acc.Tensors(tags[0])})
    assert len(steps) > 2  # more than the one start-of-epoch point tfmot logs by itself
    with pytest.raises(ValueError, match="every"):
        prune.pruning_summaries(tmp_path, every=0)


def test_wrap_does_not_share_layers_and_strip_keeps_zeros(tiny_model):
    before = _weights(tiny_model)
    wrapped = prune.wrap(tiny_model, 0.5, schedule="constant", begin_step=0, end_step=1, frequency=1)
    assert all(a is not b for a in wrapped.layers for b in tiny_model.layers)
    models.compile_classifier(wrapped, learning_rate=1e-2)
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    y = np.arange(16) % 3
    wrapped.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=prune.callbacks())
    stripped = prune.strip(wrapped)
    for name, value in prune.kernel_sparsity(stripped).items():
        assert value == pytest.approx(0.5, abs=0.02), name
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny_model.get_weights()))


def test_m_by_n_pattern_holds_in_every_group(small_data):
    pruned = prune.prune_and_finetune(
        models.lenet_300_100(), small_data, 0.5, epochs=1, batch_size=64, m_by_n=(2, 4)
    )
    for name in ("fc1", "fc2", "logits"):
        kernel = pruned.get_layer(name).kernel.numpy()  # (in, out): groups of 4 along the inputs
        groups = kernel.T.reshape(kernel.shape[1], -1, 4)
        assert np.all(np.sum(groups != 0, axis=-1) <= 2), name
    for name, value in prune.kernel_sparsity(pruned).items():
        assert value == pytest.approx(0.5, abs=0.01), name


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_outside_range(small_data, bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.prune_and_finetune(_mlp(), small_data, bad, epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.wrap(_mlp(), bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.wrap(_mlp(), 0.5, per_layer={"fc1": bad})


def test_unknown_layers_and_schedules():
    with pytest.raises(ValueError, match="per_layer"):
        prune.wrap(_mlp(), 0.5, per_layer={"nope": 0.5})
    with pytest.raises(ValueError, match="schedule"):
        prune.wrap(_mlp(), 0.5, schedule="cosine")


def test_rejects_keras3_subclassed_and_wrapped(tiny_model):
    import keras as keras3

    k3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2, name="d")])
    for fn in (
        lambda m: prune.wrap(m, 0.5),
        lambda m: prune.channel_prune(m, {"d": 1}),
        lambda m: prune.kernel_sparsity(m),
    ):
        with pytest.raises(models.ModelError, match="Keras 3"):
            fn(k3)
    subclassed = type("Sub", (keras.Model,), {"call": lambda self, x: x})()
    with pytest.raises(models.ModelError, match="Sequential or Functional"):
        prune.wrap(subclassed, 0.5)
    with pytest.raises(models.ModelError, match="Sequential or Functional"):
        prune.channel_prune(subclassed, {"d": 1})
    wrapped = prune.wrap(tiny_model, 0.5)
    with pytest.raises(ValueError, match="already"):
        prune.wrap(wrapped, 0.5)
    with pytest.raises(TypeError, match="MNIST"):
        prune.prune_and_finetune(tiny_model, (np.zeros(3), np.zeros(3)), 0.5, epochs=1)


# --- channel pruning --------------------------------------------------------------------------


def _conv_chain():
    inp = keras.Input((10, 10, 2))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(12, name="fc")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(x))
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.4, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _masked(model, keep):
    """The wide model with the removed filters' kernels and biases zeroed (ReLU after each)."""
    wide = models.clone(model, compile_like=False)
    for name, amount in keep.items():
        kernel, bias = wide.get_layer(name).get_weights()
        width = kernel.shape[-1]
        count = amount if isinstance(amount, int) else max(1, round(amount * width))
        norms = prune.channel_norms(model)[name]
        removed = np.argsort(-norms, kind="stable")[count:]
        kernel[..., removed], bias[removed] = 0.0, 0.0
        wide.get_layer(name).set_weights([kernel, bias])
    return wide


@pytest.mark.parametrize("build", [_conv_chain, models.lenet5], ids=["functional", "lenet5"])
def test_narrow_model_equals_masked_wide_model(build):
    model = build()
    if model.name == "lenet5":
        keep = {"conv1": 8, "conv2": 0.4, "fc1": 100}
        x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    else:
        keep = {"c1": 3, "c2": 0.5, "fc": 5}
        x = np.random.default_rng(0).random((8, 10, 10, 2), dtype=np.float32)
    before = _weights(model)
    narrow = prune.channel_prune(model, keep)
    wide = _masked(model, keep)
    np.testing.assert_allclose(narrow.predict(x, verbose=0), wide.predict(x, verbose=0), atol=1e-5)
    assert measure.count_params(narrow) < measure.count_params(model)
    assert measure.macs(narrow) < measure.macs(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # the kept channels are the largest-norm ones: the narrow kernel's columns are theirs
    name = next(iter(keep))
    norms = prune.channel_norms(model)[name]
    kept = np.sort(np.argsort(-norms)[: narrow.get_layer(name).kernel.shape[-1]])
    np.testing.assert_array_equal(
        narrow.get_layer(name).kernel.numpy(), model.get_layer(name).kernel.numpy()[..., kept]
    )
    assert norms[kept].min() >= np.delete(norms, kept).max()


def test_lenet5_channel_pruning_cuts_macs():
    model = models.lenet5()
    narrow = prune.channel_prune(model, {"conv1": 10, "conv2": 25, "fc1": 250})
    table = measure.macs_table(narrow).set_index("layer")["macs"]
    assert table["conv1"] == 24 * 24 * 25 * 10
    assert table["conv2"] == 8 * 8 * 25 * 10 * 25
    assert table["fc1"] == 4 * 4 * 25 * 250


def test_channel_pruning_bad_input():
    model = models.lenet5()
    with pytest.raises(ValueError, match="output"):
        prune.channel_prune(model, {"logits": 5})
    with pytest.raises(ValueError, match="narrows these layers"):
        prune.channel_prune(model, {"pool1": 5})
    with pytest.raises(ValueError, match="1 to 20"):
        prune.channel_prune(model, {"conv1": 0})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        prune.channel_prune(model, {"conv1": 1.5})
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c")(inp)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.Flatten()(x)
    unsupported = keras.Model(inp, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="DepthwiseConv2D"):
        prune.channel_prune(unsupported, {"c": 2})
    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(inp)
    merged = keras.layers.Add(name="add")([a, b])
    branched = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(merged)))
    with pytest.raises(ValueError, match="chain"):
        prune.channel_prune(branched, {"a": 2})


# --- the subpackage: every public name importable from effcourse.prune ----------------------


def test_package_reexports_every_public_name():
    import importlib
    import inspect

    for mod in ("kernels", "magnitude", "sensitivity", "channels", "training"):
        module = importlib.import_module(f"effcourse.prune.{mod}")
        own = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
        ]
        for name in own:
            assert getattr(prune, name) is getattr(module, name), f"prune.{name} (from prune.{mod})"
            assert name in prune.__all__


def test_finetuning_recipe_steps_and_alpha():
    """The optimizer of prune_and_finetune / finetune: cosine decay over ceil(n / batch) * epochs steps to 5%."""
    from effcourse.prune.training import _plan_steps
    from effcourse.train import finetune_optimizer as _optimizer

    opt = _optimizer(1e-3, 1000, 128, 3)
    assert type(opt).__name__ == "Adam"
    schedule = opt.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["decay_steps"] == 8 * 3 and schedule["config"]["alpha"] == 0.05
    assert schedule["config"]["initial_learning_rate"] == 1e-3
    assert type(_optimizer(1e-3, 1000, 128, 3, weight_decay=1e-4)).__name__ == "AdamW"
    assert _plan_steps(1000, 3, 128) == (24, 12, 1)
    with pytest.raises(ValueError, match="learning_rate"):
        _optimizer(0.0, 1000, 128, 3)
    with pytest.raises(TypeError, match="epochs must be a whole number"):
        _plan_steps(1000, 1.5, 128)


# --- notebook 02 exercise checks ---------------------------------------------------------------

from effcourse import checks  # noqa: E402


def _todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def test_magnitude_mask_keeps_the_largest_magnitudes():
    mask = prune.magnitude_mask(np.array([3.0, -1.0, 0.5, -4.0]), 0.5)
    assert mask.tolist() == [True, False, False, True]
    assert prune.magnitude_mask(np.ones((2, 3)), 0.0).all()
    with pytest.raises(ValueError, match="sparsity"):
        prune.magnitude_mask(np.ones(4), 1.0)


def test_nb02_magnitude_mask_check(capsys):
    def signed(w, s):  # a typical mistake: ranks by value, not magnitude
        keep = np.ones(w.size, dtype=bool)
        keep[np.argsort(w.ravel())[: int(round(s * w.size))]] = False
        return keep.reshape(w.shape)

    checks.nb02.magnitude_mask(prune.magnitude_mask)
    assert capsys.readouterr().out.startswith("PASS")
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb02.magnitude_mask(_todo)
    with pytest.raises(checks.CheckFailed, match=r"\|w\|"):
        checks.nb02.magnitude_mask(signed)
    with pytest.raises(checks.CheckFailed, match="not the pruned"):
        checks.nb02.magnitude_mask(lambda w, s: w * prune.magnitude_mask(w, s))
    with pytest.raises(checks.CheckFailed, match="LARGEST"):
        checks.nb02.magnitude_mask(
            lambda w, s: ~prune.magnitude_mask(w, 1 - s) if s else np.ones_like(w, bool)
        )
    with pytest.raises(checks.CheckFailed, match="exactly"):
        checks.nb02.magnitude_mask(lambda w, s: np.abs(w) > np.quantile(np.abs(w), s) + 0.01)


def _global_solution(kernels, target):
    from effcourse.checks.nb02 import _global_reference

    return _global_reference(kernels, target)


def test_nb02_global_allocation_check(capsys):
    checks.nb02.global_allocation(_global_solution)
    assert capsys.readouterr().out.startswith("PASS")
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb02.global_allocation(_todo)
    with pytest.raises(checks.CheckFailed, match="uniform"):
        checks.nb02.global_allocation(lambda kernels, t: dict.fromkeys(kernels, t))
    with pytest.raises(checks.CheckFailed, match="kept fraction"):
        checks.nb02.global_allocation(lambda k, t: {n: 1 - s for n, s in _global_solution(k, t).items()})

    def rounded_down(kernels, target):  # removes one weight too few in every layer
        sizes = {n: w.size for n, w in kernels.items()}
        return {n: s - 1 / sizes[n] if s else s for n, s in _global_solution(kernels, target).items()}

    with pytest.raises(checks.CheckFailed, match="less than"):
        checks.nb02.global_allocation(rounded_down)

    def per_layer_quantile(kernels, target):  # each layer its own threshold: not one across layers
        out = _global_solution(kernels, target)
        return {n: (s + target) / 2 for n, s in out.items()}

    with pytest.raises(checks.CheckFailed, match="off by"):
        checks.nb02.global_allocation(per_layer_quantile)


def test_nb02_filters_check(capsys):
    def norms(kernel):
        return np.sqrt((kernel**2).reshape(-1, kernel.shape[-1]).sum(axis=0))

    def wrong_axis(kernel, k):  # ranks the input channels
        inputs = np.sqrt((np.moveaxis(kernel, -2, -1).reshape(-1, kernel.shape[-2]) ** 2).sum(0))
        return np.argsort(-inputs)[: min(k, inputs.size)]

    checks.nb02.filters_to_keep(lambda kernel, k: np.argsort(-norms(kernel))[:k])
    assert capsys.readouterr().out.startswith("PASS")
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb02.filters_to_keep(_todo)
    with pytest.raises(checks.CheckFailed, match="LAST axis"):
        checks.nb02.filters_to_keep(wrong_axis)
    with pytest.raises(checks.CheckFailed, match="LARGEST"):
        checks.nb02.filters_to_keep(lambda kernel, k: np.argsort(norms(kernel))[:k])
    with pytest.raises(checks.CheckFailed, match="raised"):  # a Conv2D-only answer
        checks.nb02.filters_to_keep(
            lambda kernel, k: np.argsort(-np.sqrt((kernel**2).sum(axis=(0, 1, 2))))[:k]
        )


def test_a_later_prune_keeps_earlier_zeros(small_data):
    """initial_sparsity (notebook 02's iterative stages, 08's start model): earlier zeros stay zero."""
    start = dict.fromkeys(("fc1", "fc2", "logits"), 0.6)
    first = prune.prune_and_finetune(_mlp(), small_data, 0.6, epochs=1)
    second = prune.prune_and_finetune(first, small_data, 0.9, epochs=2, initial_sparsity=start)
    for layer in ("fc1", "fc2", "logits"):
        before = first.get_layer(layer).kernel.numpy() == 0
        after = second.get_layer(layer).kernel.numpy() == 0
        assert np.mean(before) == pytest.approx(0.6, abs=2e-3)
        assert np.all(after[before]), layer  # every earlier zero is still zero
        assert np.mean(after) == pytest.approx(0.9, abs=2e-3)


def test_retraining_distilled_from_the_dense_model_differs_only_in_the_loss(small_data):
    # At alpha 0 the distillation loss is plain cross-entropy: the pruned retraining "taught" by
    # the dense model must end with exactly the weights of the one on labels alone (same masks,
    # batches, optimizer and seed); at alpha > 0 the teacher's soft targets change the weights.
    # Both results are ordinary classifiers again (integer labels, accuracy metric).
    base = models.pretrained("lenet_300_100")
    run = dict(per_layer={"fc1": 0.9, "fc2": 0.8, "logits": 0.5}, epochs=1, seed=2)
    alone = prune.prune_and_finetune(base, small_data, 0.0, **run)
    same = prune.prune_and_finetune(base, small_data, 0.0, teacher=base, alpha=0.0, **run)
    taught = prune.prune_and_finetune(base, small_data, 0.0, teacher=base, alpha=0.9, temperature=4, **run)
    assert all(np.array_equal(a, b) for a, b in zip(alone.get_weights(), same.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(alone.get_weights(), taught.get_weights()))
    assert np.mean(taught.get_layer("fc1").kernel.numpy() == 0) == pytest.approx(0.9, abs=2e-3)
    loss, acc = taught.evaluate(small_data.x_val, small_data.y_val, verbose=0)
    assert 0 <= acc <= 1 and np.isfinite(loss)
    assert taught.loss.__class__.__name__ == "SparseCategoricalCrossentropy"
    with pytest.raises(ValueError, match="alpha"):
        prune.prune_and_finetune(base, small_data, 0.0, teacher=base, alpha=1.5, **run)


def test_soft_targets_pack_labels_and_teacher_logits(small_data):
    from effcourse import distill

    teacher = models.pretrained("lenet_300_100")
    packed, loss, metrics = distill.with_soft_targets(small_data, teacher, 4.0, 0.5)
    assert packed.y_train.shape == (len(small_data.x_train), 11)
    assert packed.y_val.shape == (len(small_data.x_val), 11)
    np.testing.assert_array_equal(packed.y_train[:, 0], small_data.y_train)
    np.testing.assert_allclose(
        packed.y_val[:, 1:], teacher.predict(small_data.x_val, verbose=0), rtol=1e-5, atol=1e-5
    )
    assert packed.x_train is small_data.x_train and small_data.y_train.ndim == 1  # the input is not changed
