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
    report = prune.m_by_n_report(pruned, (2, 4))
    assert set(report) == {"fc1", "fc2", "logits"}
    assert all(v == 1.0 for v in report.values())
    for name, value in prune.kernel_sparsity(pruned).items():
        assert value == pytest.approx(0.5, abs=0.01), name
    # a random dense kernel does not pass
    assert all(v < 0.01 for v in prune.m_by_n_report(models.lenet_300_100(), (2, 4)).values())


def test_m_by_n_groups_run_along_input_channels():
    kernel = np.ones((8, 3), dtype=np.float32)  # (in, out) as in Dense
    kernel[[0, 1, 4, 5], :] = 0.0  # 2 zeros in each group of 4 inputs, for every output
    assert prune.m_by_n_fraction(kernel, (2, 4)) == 1.0
    kernel[0, 0] = 1.0
    assert prune.m_by_n_fraction(kernel, (2, 4)) == pytest.approx(5 / 6)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_outside_range(small_data, bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.prune_and_finetune(_mlp(), small_data, bad, epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.wrap(_mlp(), bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.wrap(_mlp(), 0.5, per_layer={"fc1": bad})


def test_schedule_ending_after_training(small_data):
    late = prune.make_schedule(0.8, "polynomial", begin_step=0, end_step=10_000, frequency=10)
    with pytest.raises(ValueError, match="training ends"):
        prune.prune_and_finetune(_mlp(), small_data, 0.8, epochs=1, schedule=late)
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


# --- sensitivity and allocation -------------------------------------------------------------


def test_sensitivity_scan_and_allocation(mnist):
    model = models.lenet_300_100()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in model.get_weights()])
    before = _weights(model)
    scan = prune.sensitivity_scan(model, mnist.x_val[:200], mnist.y_val[:200], [0.5, 0.9])
    assert list(scan["layer"].unique()) == ["fc1", "fc2", "logits"]
    assert len(scan) == 9 and scan["accuracy"].between(0, 1).all()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    per_layer = prune.allocate_sparsity(scan, model, 0.85)
    assert prune.overall_sparsity(model, per_layer) >= 0.85
    assert per_layer["fc1"] == 0.9  # the big layer carries the cut
    with pytest.raises(ValueError, match="cannot reach"):
        prune.allocate_sparsity(scan, model, 0.95)
    mask = prune.magnitude_mask(np.array([3.0, -1.0, 0.5, -4.0]), 0.5)
    assert mask.tolist() == [True, False, False, True]


def _layered_mlp():
    """LeNet-300-100 whose layers have clearly different weight scales (fc1 small, logits large)."""
    model = models.lenet_300_100()
    rng = np.random.default_rng(0)
    scale = {"fc1/kernel": 0.01, "fc2/kernel": 0.05, "logits/kernel": 0.3}
    model.set_weights(
        [
            rng.normal(0, next((s for k, s in scale.items() if k in v.name), 0.1), v.shape).astype("float32")
            for v in model.weights
        ]
    )
    return model


def test_sparsity_for_ratio_counts_biases_as_nonzeros():
    model = models.lenet_300_100()  # 266,200 kernel weights, 410 biases
    s = prune.sparsity_for_ratio(model, 12)
    kept = (1 - s) * 266_200 + 410
    assert 266_610 / 12 - 5 <= kept <= 266_610 / 12 - 3  # rounded down, one weight of slack per layer
    for layer_rounding in (0.5, -0.5):  # each of the 3 masks may round its kept count either way
        assert 266_610 / (kept + 3 * layer_rounding) >= 12
    assert s > 1 - 1 / 12  # the dense biases cost a little extra kernel sparsity
    for bad in (1, 0.5, float("nan"), 266_610 / 400):
        with pytest.raises(ValueError, match="ratio"):
            prune.sparsity_for_ratio(model, bad)


def test_allocation_rules_share_the_same_budget():
    model = _layered_mlp()
    sizes = {"fc1": 235_200, "fc2": 30_000, "logits": 1_000}
    target = prune.sparsity_for_ratio(model, 8)
    uniform = prune.uniform_allocation(model, target)
    assert uniform == dict.fromkeys(sizes, target)
    han = {"fc1": 0.92, "fc2": 0.91, "logits": 0.74}
    scaled = prune.scaled_allocation(model, han, target)
    glob = prune.global_magnitude_allocation(model, target)
    for per in (scaled, glob):
        assert prune.overall_sparsity(model, per) == pytest.approx(target, abs=1e-5)
    # scaled keeps the reference's proportions of kept weights
    kept = {n: 1 - scaled[n] for n in sizes}
    assert kept["logits"] / kept["fc1"] == pytest.approx(0.26 / 0.08, rel=1e-6)
    assert prune.scaled_allocation(model, han, prune.overall_sparsity(model, han)) == pytest.approx(han)
    # a kept fraction cannot exceed 1: the layer stays dense and the others carry the cut
    capped = prune.scaled_allocation(model, {"fc1": 0.99, "fc2": 0.5, "logits": 0.0}, 0.5)
    assert capped["logits"] == 0.0 and prune.overall_sparsity(model, capped) == pytest.approx(0.5, abs=1e-6)
    # one threshold across layers: the layer of small weights loses most, the large-weight one least
    assert glob["fc1"] > target > glob["logits"]
    masks = {n: prune.magnitude_mask(model.get_layer(n).kernel.numpy(), glob[n]) for n in sizes}
    smallest_kept = min(np.abs(model.get_layer(n).kernel.numpy())[masks[n]].min() for n in sizes)
    largest_cut = max(np.abs(model.get_layer(n).kernel.numpy())[~masks[n]].max() for n in sizes)
    assert largest_cut <= smallest_kept  # every removed weight is smaller than every kept one, across layers
    assert prune.global_magnitude_allocation(model, 0.0) == dict.fromkeys(sizes, 0.0)
    with pytest.raises(ValueError, match="layer collapse"):  # fc1's weights are all below the threshold
        prune.global_magnitude_allocation(model, prune.sparsity_for_ratio(model, 40))
    with pytest.raises(ValueError, match="missing"):
        prune.scaled_allocation(model, {"fc1": 0.9}, 0.8)


# --- channel pruning --------------------------------------------------------------------------


def _conv_bn_model():
    inp = keras.Input((10, 10, 2))
    x = keras.layers.Conv2D(6, 3, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(12, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    out = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    weights = [rng.normal(0, 0.4, w.shape).astype("float32") for w in model.get_weights()]
    weights[5] = np.abs(weights[5]) + 0.5  # BN moving variance > 0
    model.set_weights(weights)
    return model


@pytest.mark.parametrize("build", [_conv_bn_model, models.lenet5], ids=["functional_bn", "lenet5"])
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
    wide = prune.channel_mask(model, keep)
    np.testing.assert_allclose(narrow.predict(x, verbose=0), wide.predict(x, verbose=0), atol=1e-5)
    assert measure.count_params(narrow) < measure.count_params(model)
    assert measure.macs(narrow) < measure.macs(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # the kept channels are the largest-norm ones
    name = next(iter(keep))
    norms = prune.channel_norms(model)[name]
    kept = prune.kept_channels(model, keep)[name]
    assert norms[kept].min() >= np.delete(norms, kept).max()
    assert narrow.get_layer(name).kernel.shape[-1] == len(kept)


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
    with pytest.raises(ValueError, match="MaxPooling2D"):
        prune.channel_prune(model, {"pool1": 5})
    with pytest.raises(ValueError, match="between 1"):
        prune.channel_prune(model, {"conv1": 0})
    with pytest.raises(ValueError, match="not a layer"):
        prune.channel_prune(model, {"nope": 3})
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
    with pytest.raises(ValueError, match="branch"):
        prune.channel_prune(branched, {"a": 2})


# --- the subpackage: every public name importable from effcourse.prune ----------------------


def test_package_reexports_every_public_name():
    import importlib
    import inspect

    for mod in ("kernels", "magnitude", "sensitivity", "channels", "training", "evaluation", "iterative"):
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
    from effcourse.prune.training import _optimizer, _plan_steps

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


# --- measuring a variant (notebook 02's tables and the results log) ----------------------------


def test_measure_variant_row_and_results_log(small_data, quick, tmp_root):
    from effcourse import convert, results

    base = _mlp()
    pruned = base  # the arithmetic is the same for any model: measure the dense one against itself
    test = dataclasses.replace(small_data, x_test=small_data.x_test[:64], y_test=small_data.y_test[:64])
    row = prune.measure_variant(
        pruned,
        base,
        "lenet_300_100",
        "dense as a variant",
        test,
        "02_test",
        profile=quick,
        sparsity=0.0,
        epochs=1,
    )
    blob = convert.to_tflite(pruned)
    assert row["model"] == "lenet_300_100" and row["variant"] == "dense as a variant"
    assert row["sparsity"] == 0.0 and row["epochs"] == 1
    assert row["tflite_bytes"] == len(blob) and row["size_bytes"] == measure.compressed_size(blob)
    assert row["nonzero"] == measure.count_nonzero(pruned)
    assert row["nonzero_ratio"] == measure.count_params(base) / row["nonzero"]
    assert row["macs"] == measure.macs(pruned) and row["latency_ms"] > 0
    assert row["accuracy"] == pytest.approx(measure.accuracy(pruned, test.x_test, test.y_test), abs=1 / 64)
    logged = results.load().iloc[0]
    assert (logged["notebook"], logged["technique"], logged["variant"]) == (
        "02_test",
        "pruning",
        "dense as a variant",
    )
    assert logged["dense_fp32_bytes"] == measure.dense_fp32_bytes(base)
    assert results.extra(results.load(), "nonzero").iloc[0] == row["nonzero"]
    with pytest.raises(TypeError, match="MNIST"):
        prune.measure_variant(pruned, base, "lenet_300_100", "v", (test.x_test, test.y_test), "02_test")


# --- notebook 02 exercise checks ---------------------------------------------------------------

from effcourse import checks  # noqa: E402


def _todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def test_nb02_magnitude_prune_check():
    def solution(w, s):
        return w * prune.magnitude_mask(w, s)

    def signed(w, s):  # a typical mistake: ranks by value, not magnitude
        n = int(round(s * w.size))
        out = w.copy().ravel()
        out[np.argsort(out)[:n]] = 0
        return out.reshape(w.shape)

    checks.nb02.magnitude_prune(solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb02.magnitude_prune(_todo)
    with pytest.raises(checks.CheckFailed, match=r"\|w\|"):
        checks.nb02.magnitude_prune(signed)


def test_nb02_filters_check():
    def solution(kernel, k):
        return np.argsort(-np.sqrt((kernel**2).sum(axis=(0, 1, 2))))[:k]

    def wrong_axis(kernel, k):
        return np.argsort(-np.sqrt((kernel**2).sum(axis=(0, 1, 3))))[: min(k, 4)]

    checks.nb02.filters_to_keep(solution)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb02.filters_to_keep(_todo)
    with pytest.raises(checks.CheckFailed, match="LAST axis"):
        checks.nb02.filters_to_keep(wrong_axis)
    with pytest.raises(checks.CheckFailed, match="LARGEST"):
        checks.nb02.filters_to_keep(
            lambda kernel, k: np.argsort(np.sqrt((kernel**2).sum(axis=(0, 1, 2))))[:k]
        )


def test_nb02_per_layer_check(small_data, monkeypatch):
    """The check fine-tunes both allocations and asks for at least the margin: a tie or a loss fails."""
    model = models.lenet_300_100()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in model.get_weights()])
    args = (model, small_data, 0.9, 0.001)
    with pytest.raises(checks.CheckFailed, match="at least"):
        checks.nb02.per_layer_beats_uniform({"fc1": 0.5, "fc2": 0.5, "logits": 0.5}, *args)
    with pytest.raises(checks.CheckFailed, match="missing"):
        checks.nb02.per_layer_beats_uniform({"fc1": 0.95}, *args)
    with pytest.raises(checks.CheckFailed, match="IS uniform"):
        checks.nb02.per_layer_beats_uniform({"fc1": 0.9, "fc2": 0.9, "logits": 0.9}, *args)
    # The measured accuracies decide: replace the fine-tuning by fixed outcomes.
    outcome = {}

    class Fake:
        def __init__(self, acc):
            self.acc = acc

        def evaluate(self, *a, **k):
            return [0.0, self.acc]

    def fake_finetune(model, data, sparsity, epochs, per_layer=None, **kw):
        return Fake(outcome["per_layer" if per_layer else "uniform"])

    monkeypatch.setattr(prune, "prune_and_finetune", fake_finetune)
    good = {"fc1": 0.93, "fc2": 0.9, "logits": 0.7}
    for ours, uniform, verdict in [
        (0.95, 0.95, "ties with"),
        (0.9505, 0.95, "too little"),
        (0.94, 0.95, "loses"),
    ]:
        outcome.update(per_layer=ours, uniform=uniform)
        with pytest.raises(checks.CheckFailed, match=verdict):
            checks.nb02.per_layer_beats_uniform(good, *args)
    outcome.update(per_layer=0.952, uniform=0.95)
    checks.nb02.per_layer_beats_uniform(good, *args)  # 0.2 points >= 0.1


# --- Han et al.'s iterative recipe ----------------------------------------------------------


def test_iterative_prune_reaches_every_stage_and_the_final_kernels_hold_it(small_data):
    model = _mlp()
    before = _weights(model)
    final = {"fc1": 0.9, "fc2": 0.8, "logits": 0.5}
    res = prune.iterative_prune(
        model, small_data, per_layer=final, epochs_per_stage=1, stages=(0.5, 0.8, 1.0)
    )
    stages = res.stages
    assert stages["stage"].tolist() == [1, 2, 3]
    for layer, s in final.items():
        assert stages[f"{layer} target"].tolist() == pytest.approx([s * 0.5, s * 0.8, s])
        # each stage reached its sparsity: zeros counted in the stripped kernels of that stage
        assert stages[f"{layer} sparsity"].tolist() == pytest.approx(
            stages[f"{layer} target"].tolist(), abs=2e-3
        )
    # the final kernels hold it: count the zeros directly
    for layer, s in final.items():
        kernel = res.model.get_layer(layer).kernel.numpy()
        assert np.mean(kernel == 0) == pytest.approx(s, abs=2e-3), layer
    sizes = {"fc1": 784 * 300, "fc2": 300 * 100, "logits": 100 * 10}
    want = sum(final[n] * sizes[n] for n in sizes) / sum(sizes.values())
    assert stages["overall sparsity"].iloc[-1] == pytest.approx(want, abs=1e-3)
    assert stages["non-zero weights"].is_monotonic_decreasing
    assert stages["non-zero weights"].iloc[-1] == measure.count_nonzero(res.model)
    assert stages["val accuracy"].between(0, 1).all()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # input untouched
    assert not any("prune_low_magnitude" in layer.name for layer in res.model.layers)


def test_iterative_prune_keeps_earlier_zeros_and_uniform_default(small_data):
    """A weight pruned in one stage stays zero: the next stage's schedule starts at the sparsity already there."""
    model = _mlp()
    first_run = prune.iterative_prune(model, small_data, 0.6, epochs_per_stage=1, stages=(1.0,))
    first = first_run.model
    start = dict.fromkeys(("fc1", "fc2", "logits"), 0.6)
    second = prune.prune_and_finetune(first, small_data, 0.9, epochs=2, initial_sparsity=start)
    for layer in ("fc1", "fc2", "logits"):
        before = first.get_layer(layer).kernel.numpy() == 0
        after = second.get_layer(layer).kernel.numpy() == 0
        assert np.mean(before) == pytest.approx(0.6, abs=2e-3)
        assert np.all(after[before]), layer  # every earlier zero is still zero
        assert np.mean(after) == pytest.approx(0.9, abs=2e-3)
    held_out = (small_data.x_val[:100], small_data.y_val[:100])
    both = prune.iterative_prune(
        model, small_data, 0.9, epochs_per_stage=(1, 2), stages=(0.7, 1.0), report_on=held_out
    )
    assert both.stages["test accuracy"].iloc[-1] == measure.accuracy(both.model, *held_out)
    assert "test accuracy" not in first_run.stages  # only reported when asked
    with pytest.raises(ValueError, match="report_on"):
        prune.iterative_prune(model, small_data, 0.9, stages=(1.0,), report_on=(held_out[0], held_out[1][:5]))
    assert both.stages["overall target"].tolist() == pytest.approx([0.63, 0.9])
    assert both.stages["epochs"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="one epoch count per stage"):
        prune.iterative_prune(model, small_data, 0.9, epochs_per_stage=(1, 2, 3), stages=(0.7, 1.0))


def test_stage_targets_and_han_dropout():
    assert prune.stage_targets({"a": 0.8, "b": 0.4}, (0.5, 1.0)) == [
        {"a": 0.4, "b": 0.2},
        {"a": 0.8, "b": 0.4},
    ]
    for bad in [(), (0.5, 0.9), (0.6, 0.5, 1.0), (0.0, 1.0), (0.5, 1.2)]:
        with pytest.raises(ValueError, match="stage"):
            prune.stage_targets({"a": 0.8}, bad)
    assert prune.han_dropout_rate(0.5, 0.25) == pytest.approx(0.25)  # D_r = D_o sqrt(C_r / C_o)
    assert prune.han_dropout_rate(0.5, 1.0) == 0.5
    with pytest.raises(ValueError):
        prune.han_dropout_rate(1.2, 0.5)
    from effcourse.prune.iterative import _adjusted_dropout

    cnn = models.cnn()  # dropout 0.5 before the logits
    assert _adjusted_dropout(cnn, {"logits": 0.75}) == {"dropout": pytest.approx(0.25)}
    assert _adjusted_dropout(models.lenet_300_100(), {"fc1": 0.9}) == {}


def test_accuracy_without_finetuning_leaves_the_model_alone(mnist):
    model = _mlp()
    before = _weights(model)
    x, y = mnist.x_val[:100], mnist.y_val[:100]
    assert prune.accuracy_without_finetuning(model, {}, x, y) == measure.accuracy(model, x, y)
    assert 0 <= prune.accuracy_without_finetuning(model, {"fc1": 0.99}, x, y) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ValueError, match="not a prunable"):
        prune.accuracy_without_finetuning(model, {"nope": 0.5}, x, y)


def test_m_by_n_counts_kept_weights_not_zeros():
    """1:4 keeps at most one weight in four (tfmot's meaning), so one zero per group is not enough."""
    kernel = np.zeros((8, 2))
    kernel[0, :] = kernel[4, :] = 1.0  # one non-zero per group: 1:4 and 2:4 both hold
    assert prune.m_by_n_fraction(kernel, (1, 4)) == 1.0
    kernel[1, 0] = 1.0  # two non-zeros in one group of output 0: 1:4 breaks there, 2:4 still holds
    assert prune.m_by_n_fraction(kernel, (1, 4)) == pytest.approx(3 / 4)
    assert prune.m_by_n_fraction(kernel, (2, 4)) == 1.0


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
    tuned = prune.finetune(taught, small_data, 1, teacher=base, alpha=0.0, seed=1)
    plain = prune.finetune(taught, small_data, 1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), tuned.get_weights()))
    assert tuned.loss.__class__.__name__ == "SparseCategoricalCrossentropy"
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
