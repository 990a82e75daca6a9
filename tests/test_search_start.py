"""Searches that continue from a pruned start model, and choices with extra conditions (notebook 08)."""

import numpy as np
import pytest

from effcourse import data, models, search
from effcourse.search import Budget, Choice, Float


class _Reporter:
    number, prunable = 0, False

    def __init__(self):
        self.reported = []

    def should_stop(self, value, step):
        self.reported.append((step, value))
        return False

    def report(self, value, step):
        self.should_stop(value, step)

    def stop_if_pruned(self):
        pass


def _mlp():
    import tf_keras

    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((28, 28, 1)),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(32, activation="relu", name="fc1"),
            tf_keras.layers.Dense(10, name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    return models.compile_classifier(model)


@pytest.fixture
def small(mnist):
    n = 512
    return data.MNIST(
        mnist.x_train[:n],
        mnist.y_train[:n],
        mnist.x_val[:200],
        mnist.y_val[:200],
        mnist.x_test[:200],
        mnist.y_test[:200],
        "quick",
    )


def test_a_search_continues_from_a_pruned_start_model(small):
    base = _mlp()
    start = search.one_shot_prune(base, {"fc1": 0.5, "logits": 0.2})
    held = search.held_sparsity(start)
    assert held == pytest.approx({"fc1": 0.5, "logits": 0.2}, abs=1e-3)
    assert search.held_sparsity(base)["fc1"] == 0.0  # the base model is not changed
    evaluate = search.compression_objective(base, small, batch_size=64, start=start)
    same = {"sparsity.fc1": 0.5, "sparsity.logits": 0.2, "prune_epochs": 0, "quantization": "float32"}
    r = _Reporter()
    out = evaluate(same, r)  # exactly the start's sparsities: no pruning at all
    assert out["accuracy"] == pytest.approx(
        float(np.mean(np.argmax(start.predict(small.x_val, verbose=0), -1) == small.y_val)), abs=0.01
    )
    assert r.reported and r.reported[-1][0] == 0  # validation accuracy reported before conversion
    more = evaluate({**same, "sparsity.fc1": 0.8}, _Reporter())  # one-shot, further
    assert more["size_bytes"] < out["size_bytes"]
    trained = evaluate({**same, "sparsity.fc1": 0.8, "prune_epochs": 1}, _Reporter())
    assert trained["size_bytes"] < out["size_bytes"]
    with pytest.raises(search.SpaceError, match="only prune further"):
        evaluate({**same, "sparsity.fc1": 0.3}, _Reporter())


def test_the_start_model_is_built_once_and_read_back_on_resume(tmp_path, small):
    built = []

    def build():
        built.append(1)
        return search.one_shot_prune(_mlp(), {"fc1": 0.5})

    def study():
        return search.open_study("st", {"size_bytes": "minimize"}, path=tmp_path / "st.db")

    s = study()
    first = search.start_model(s, build)
    assert len(built) == 1 and s.user_attrs["start_seconds"] > 0
    search.run(s, lambda c, r: {"size_bytes": c["x"]}, {"x": Float(0.0, 1.0)}, n_trials=1)
    again = search.start_model(study(), build)  # resumed: read back, not built again
    assert len(built) == 1
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "st.db").unlink()
    search.start_model(study(), build)  # a fresh study never inherits a stale start
    assert len(built) == 2


def test_best_with_extra_conditions_picks_a_dominating_trial(tmp_path):
    s = search.open_study(
        "ex",
        {"latency_ms": "minimize", "accuracy": "maximize"},
        [Budget("accuracy", "min", 0.9)],
        path=tmp_path / "ex.db",
        population_size=4,
    )
    points = {"a": (1.0, 0.99), "b": (0.5, 0.95), "c": (0.7, 0.995), "d": (0.2, 0.5)}
    search.run(
        s,
        lambda c, r: dict(zip(("latency_ms", "accuracy"), points[c["p"]])),
        {"p": Choice(tuple(points))},
        n_trials=4,
        enqueue=[{"p": p} for p in points],
    )
    assert search.best(s, order=["latency_ms", "accuracy"])["latency_ms"] == 0.5  # b; d misses the budget
    won = search.best(s, order=["latency_ms", "accuracy"], extra=[Budget("accuracy", "min", 0.99)])
    assert (won["latency_ms"], won["accuracy"]) == (0.7, 0.995)  # c: faster than a and as accurate
    with pytest.raises(search.BudgetError, match="accuracy >= 0.999"):
        search.best(s, extra=[Budget("accuracy", "min", 0.999)])


def test_a_configuration_over_the_latency_limit_is_not_fine_tuned(small, quick):
    base = _mlp()
    config = {"keep.fc1": 0.5, "epochs": 1, "mode": "float32"}
    slow = search.channel_objective(base, small, quick, batch_size=64, skip_over_ms=1e-9)(config, _Reporter())
    assert slow["trained"] == 0 and slow["latency_ms"] > 1e-9  # timed, then skipped
    fast = search.channel_objective(base, small, quick, batch_size=64, skip_over_ms=1e3)(config, _Reporter())
    assert fast["trained"] == 1 and fast["accuracy"] != slow["accuracy"]  # fine-tuned


def test_a_configuration_proposed_again_is_not_measured_again(tmp_path):
    calls = []

    def evaluate(config, reporter):
        calls.append(config["p"])
        return {"size_bytes": {"a": 3, "b": 2}[config["p"]]}

    s = search.open_study("tw", {"size_bytes": "minimize"}, path=tmp_path / "tw.db")
    search.run(s, evaluate, {"p": Choice(("a", "b"))}, n_trials=6)
    assert len(search.table(s)) == 6 and sorted(set(calls)) == sorted(calls)  # each measured once
    repeats = [t for t in s.trials if "repeat_of" in t.user_attrs]
    assert len(repeats) == 6 - len(calls)
    for t in repeats:
        assert t.user_attrs["metrics"] == s.trials[t.user_attrs["repeat_of"]].user_attrs["metrics"]


def test_distilled_trials_report_accuracy_and_pack_the_teacher_once(small, quick, monkeypatch):
    from effcourse import distill

    calls = []
    real = distill.teacher_logits
    monkeypatch.setattr(
        distill, "teacher_logits", lambda t, x, *a, **k: calls.append(len(x)) or real(t, x, *a, **k)
    )
    base = _mlp()
    evaluate = search.channel_objective(base, small, quick, batch_size=64, teacher=base)
    config = {"keep.fc1": 0.5, "epochs": 2, "mode": "float32"}
    plain_reports, soft_reports = _Reporter(), _Reporter()
    plain = evaluate(dict(config, distill=False), plain_reports)
    assert calls == []  # no teacher work for a trial that does not distil
    soft = evaluate(dict(config, distill=True), soft_reports)
    again = evaluate(dict(config, distill=True, epochs=1), _Reporter())
    assert calls == [len(small.x_train), len(small.x_val)]  # soft targets packed once, for both trials
    # the pruner hears the validation accuracy of the labels after every distilled epoch, as without
    assert [s for s, _ in soft_reports.reported] == [s for s, _ in plain_reports.reported] == [0, 1]
    assert all(0 <= a <= 1 for _, a in soft_reports.reported)
    assert soft["trained"] == again["trained"] == 1
    assert soft["artifact"] != plain["artifact"]  # the soft targets changed the training


def test_a_distilled_configuration_without_a_teacher_is_refused(small, quick):
    evaluate = search.channel_objective(_mlp(), small, quick, batch_size=64)
    with pytest.raises(search.SpaceError, match="teacher="):
        evaluate({"keep.fc1": 0.5, "epochs": 1, "mode": "float32", "distill": True}, _Reporter())


def test_a_taught_compression_objective_distils_its_pruning_and_packs_the_teacher_once(small, monkeypatch):
    from effcourse import distill

    calls = []
    real = distill.teacher_logits
    monkeypatch.setattr(
        distill, "teacher_logits", lambda t, x, *a, **k: calls.append(len(x)) or real(t, x, *a, **k)
    )
    base, teacher = _mlp(), _mlp()
    start = search.one_shot_prune(base, {"fc1": 0.5, "logits": 0.2})
    config = {"sparsity.fc1": 0.7, "sparsity.logits": 0.2, "prune_epochs": 2, "quantization": "float32"}

    def run(**taught):
        reports = _Reporter()
        out = search.compression_objective(base, small, batch_size=64, start=start, **taught)(config, reports)
        return out, reports

    labels, labels_reports = run()
    assert calls == []
    silent, _ = run(teacher=teacher, alpha=0.0)  # no weight on the soft targets: the labels-only training
    assert calls == [len(small.x_train), len(small.x_val)]
    assert silent["artifact"] == labels["artifact"]
    taught, taught_reports = run(teacher=teacher, alpha=0.9)
    assert taught["artifact"] != labels["artifact"]  # the teacher's soft targets changed the pruned weights
    # the pruner hears the label accuracy after every distilled epoch (then once after clustering), as without
    assert [s for s, _ in taught_reports.reported] == [s for s, _ in labels_reports.reported] == [0, 1, 2]
    assert all(0 <= a <= 1 for _, a in taught_reports.reported)
