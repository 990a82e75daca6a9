import numpy as np
import pytest

from effcourse import search


def test_grid_and_sample_are_complete_and_seeded():
    space = {"a": [1, 2, 3], "b": ["x", "y"]}
    assert len(search.grid(space)) == 6
    s1, s2 = search.sample(space, 4, seed=3), search.sample(space, 4, seed=3)
    assert s1 == s2 and len({tuple(sorted(c.items())) for c in s1}) == 4
    first = [{"a": 3, "b": "y"}]
    assert search.sample(space, 2, first=first)[0] == first[0]
    with pytest.raises(ValueError):
        search.grid({"a": []})


def _evaluate(config):
    # size falls with sparsity and bits; accuracy collapses beyond 80% sparsity or 2 bits
    sparsity, bits = config["sparsity"], config["bits"]
    size = int(10_000 * (1 - sparsity) * bits / 32) + 100
    acc = 0.99 - 0.002 * sparsity - (0.3 if sparsity > 0.8 else 0) - (0.2 if bits == 2 else 0)
    return {"accuracy": acc, "size_bytes": size, "artifact": b"x" * size}


def test_search_never_returns_a_model_over_budget():
    space = {"sparsity": [0.0, 0.5, 0.8, 0.9, 0.95], "bits": [2, 4, 8, 32]}
    result = search.search(_evaluate, space, baseline_accuracy=0.99, max_drop=0.003, trials=20)
    table = result.table()
    assert table["meets_budget"].any() and (~table["meets_budget"]).any()  # the budget bites
    assert result.best.accuracy >= 0.99 - 0.003
    assert result.best.size_bytes == table[table.meets_budget]["size_bytes"].min()
    assert result.best.config == {"sparsity": 0.8, "bits": 4}
    assert result.best.artifact == b"x" * result.best.size_bytes
    # a smaller model existed but missed the budget: it was not chosen
    assert table["size_bytes"].min() < result.best.size_bytes


def test_search_with_a_trial_budget_still_respects_accuracy():
    space = {"sparsity": list(np.linspace(0, 0.95, 20)), "bits": [2, 4, 8, 32]}
    for seed in range(5):
        result = search.search(
            _evaluate, space, 0.99, 0.003, trials=15, seed=seed, first=[{"sparsity": 0.0, "bits": 32}]
        )
        assert result.best.accuracy >= result.floor


def test_no_configuration_meets_the_budget():
    with pytest.raises(search.BudgetError, match="Widen the budget"):
        search.search(_evaluate, {"sparsity": [0.9, 0.95], "bits": [2]}, 0.99, 0.001, trials=2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_drop"):
        search.search(_evaluate, {"sparsity": [0.5], "bits": [8]}, 0.99, 1.5, trials=1)
    with pytest.raises(ValueError, match="trials"):
        search.search(_evaluate, {"sparsity": [0.5], "bits": [8]}, 0.99, 0.01, trials=0)
    with pytest.raises(KeyError, match="size_bytes"):
        search.search(lambda c: {"accuracy": 1.0}, {"s": [1]}, 0.99, 0.01, trials=1)


def test_objective_trains_each_setting_once_and_measures_on_validation(monkeypatch, mnist):
    from effcourse import cluster, convert, measure, prune

    calls = {"prune": 0, "cluster": 0}

    def fake_prune(model, data, sparsity, epochs, batch_size):
        calls["prune"] += 1
        return ("pruned", sparsity)

    def fake_cluster(model, data, clusters, epochs, batch_size, preserve_sparsity):
        assert preserve_sparsity and model[0] == "pruned"
        calls["cluster"] += 1
        return ("clustered", model[1], clusters)

    seen = {}
    monkeypatch.setattr(prune, "prune_and_finetune", fake_prune)
    monkeypatch.setattr(cluster, "cluster_and_finetune", fake_cluster)
    monkeypatch.setattr(
        convert, "to_tflite", lambda model, mode, representative: repr((model, mode)).encode()
    )
    monkeypatch.setattr(measure, "compressed_size", len)

    def fake_accuracy(blob, x, y):
        seen["n"] = len(x)
        return 0.5

    monkeypatch.setattr(measure, "accuracy", fake_accuracy)
    evaluate = search.prune_cluster_objective("base", mnist, 1, 1, 32, 10)
    for config in (
        {"sparsity": 0.5, "clusters": 0, "mode": "int8"},
        {"sparsity": 0.5, "clusters": 16, "mode": "int8"},
        {"sparsity": 0.5, "clusters": 16, "mode": "float16"},
        {"sparsity": 0.8, "clusters": 16, "mode": "int8"},
    ):
        out = evaluate(config)
        assert out["size_bytes"] == len(out["artifact"]) and out["accuracy"] == 0.5
    assert calls == {"prune": 2, "cluster": 2}
    assert seen["n"] == len(mnist.x_val)  # chosen on validation, never on test
    with pytest.raises(TypeError, match="effcourse.data.load"):
        search.prune_cluster_objective("base", (1, 2), 1, 1, 32, 10)
