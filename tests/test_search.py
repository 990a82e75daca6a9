import optuna
import pytest

from effcourse import search, tracking
from effcourse.search import Budget, Choice, Float, Int

SPACE = {"sparsity": Float(0.0, 0.95, step=0.05), "bits": Choice((2, 4, 8, 32)), "epochs": Int(1, 4)}


def _evaluate(config, reporter):
    # size falls with sparsity and bits; accuracy collapses beyond 80% sparsity or at 2 bits
    sparsity, bits = config["sparsity"], config["bits"]
    size = int(10_000 * (1 - sparsity) * bits / 32) + 100
    acc = 0.99 - 0.002 * sparsity - (0.3 if sparsity > 0.8 + 1e-9 else 0) - (0.2 if bits == 2 else 0)
    return {"accuracy": acc, "size_bytes": size, "artifact": b"x" * size}


BUDGET = (Budget("accuracy", "min", 0.987),)


def _study(tmp_path, name="s", budgets=BUDGET, seed=0, **kw):
    return search.open_study(
        name, {"size_bytes": "minimize"}, budgets, seed=seed, path=tmp_path / f"{name}.db", **kw
    )


def test_the_winner_never_misses_a_budget(tmp_path):
    study = search.run(_study(tmp_path), _evaluate, SPACE, n_trials=16)
    rows = search.table(study)
    assert len(rows) == 16 and rows["feasible"].any() and (~rows["feasible"]).any()  # the budget bites
    won = search.best(study)
    assert won["accuracy"] >= 0.987 and won["feasible"]
    assert won["size_bytes"] == rows.loc[rows["feasible"], "size_bytes"].min()
    assert rows["size_bytes"].min() < won["size_bytes"]  # a smaller trial existed but missed the budget
    assert search.artifact(study, int(won["trial"])) == b"x" * int(won["size_bytes"])


def test_two_budgets_and_several_objectives(tmp_path):
    def evaluate(config, reporter):
        out = _evaluate(config, reporter)
        out["latency_ms"] = 0.01 * config["bits"]
        return out

    budgets = (Budget("accuracy", "min", 0.987), Budget("latency_ms", "max", 0.1))
    study = search.open_study(
        "mo",
        {"latency_ms": "minimize", "accuracy": "maximize"},
        budgets,
        path=tmp_path / "mo.db",
        population_size=6,
    )
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    search.run(study, evaluate, SPACE, n_trials=18)
    won = search.best(study)
    assert won["latency_ms"] <= 0.1 and won["accuracy"] >= 0.987
    rows = search.table(study)
    assert won["latency_ms"] == rows.loc[rows["feasible"], "latency_ms"].min()


def test_a_resumed_study_continues_from_its_stored_trials(tmp_path):
    first = search.run(_study(tmp_path), _evaluate, SPACE, n_trials=8)
    before = search.table(first)
    best_before = search.best(first)
    again = _study(tmp_path)  # a new process would do the same: open the file again
    assert len(search.table(again)) == 8
    assert search.best(again)["trial"] == best_before["trial"]  # the same best, read from the file
    search.run(again, _evaluate, SPACE, n_trials=12)
    after = search.table(again)
    assert len(after) == 12  # four more, not twelve more
    assert after.iloc[:8][["trial", "sparsity", "bits", "size_bytes"]].equals(
        before[["trial", "sparsity", "bits", "size_bytes"]]
    )
    assert search.best(again)["size_bytes"] <= best_before["size_bytes"]
    search.run(again, _evaluate, SPACE, n_trials=12)  # already complete: nothing runs
    assert len(search.table(again)) == 12


def test_the_same_seed_suggests_the_same_configurations(tmp_path):
    seq = []
    for run in range(2):
        study = _study(tmp_path, name=f"seed{run}", seed=7, n_startup_trials=3)
        search.run(study, _evaluate, SPACE, n_trials=6)
        seq.append([t.params for t in study.trials])
    other = search.run(
        _study(tmp_path, name="other", seed=8, n_startup_trials=3), _evaluate, SPACE, n_trials=6
    )
    assert seq[0] == seq[1]
    assert [t.params for t in other.trials] != seq[0]


def test_the_pruner_stops_a_hopeless_trial(tmp_path):
    epochs_run = []

    def evaluate(config, reporter):
        hopeless = config["bits"] == 2  # a constructed objective: 2 bits can never reach the budget
        for epoch in range(5):
            epochs_run.append((config["bits"], epoch))
            reporter.report(0.5 if hopeless else 0.99, epoch)
        return _evaluate(config, reporter)

    pruner = optuna.pruners.ThresholdPruner(lower=0.9)
    study = _study(tmp_path, pruner=pruner)
    search.run(
        study,
        evaluate,
        {"bits": Choice((2, 8)), "sparsity": 0.5},
        n_trials=4,
        enqueue=[{"bits": 2}, {"bits": 8}],
    )
    rows = search.table(study)
    hopeless = rows[rows["bits"] == 2]
    assert (hopeless["state"] == "pruned").all() and (hopeless["pruned_at_step"] == 0).all()
    assert not hopeless["feasible"].any()
    assert (rows.loc[rows["bits"] == 8, "state"] == "complete").all()
    assert [e for b, e in epochs_run if b == 2] == [0] * len(hopeless)  # stopped after its first epoch
    assert search.best(study)["bits"] == 8


def test_the_hand_tuned_configuration_is_tried_first(tmp_path):
    hand = {"sparsity": 0.8, "bits": 4, "epochs": 2}
    study = search.run(_study(tmp_path), _evaluate, SPACE, n_trials=3, enqueue=[hand])
    assert study.trials[0].params == hand
    search.run(study, _evaluate, SPACE, n_trials=5, enqueue=[hand])  # resumed: not enqueued twice
    assert sum(t.params == hand for t in study.trials) == 1


def test_every_trial_is_logged_to_hparams(tmp_path):
    study = search.run(_study(tmp_path), _evaluate, SPACE, n_trials=5, log_dir=tmp_path / "tb")
    runs = tracking.read_runs(tmp_path / "tb")
    assert sorted(runs) == [f"trial-{i:04d}" for i in range(5)]
    for t in study.trials:
        run = runs[f"trial-{t.number:04d}"]
        assert run["params"]["bits"] == pytest.approx(t.params["bits"])
        assert run["params"]["sparsity"] == pytest.approx(t.params["sparsity"])
        assert run["params"]["state"] == "complete"
        assert run["metrics"]["size_bytes"] == t.user_attrs["metrics"]["size_bytes"]
        assert run["metrics"]["accuracy"] == pytest.approx(t.user_attrs["metrics"]["accuracy"])
        assert "feasible" in run["metrics"] and "seconds" in run["metrics"]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, match",
    [
        ({}, "empty"),
        (None, "empty"),
        ({"s": Float(0.9, 0.5)}, "above high"),
        ({"s": Float(0.0, 1.0, step=0.3)}, "does not divide"),
        ({"s": Float(0.0, 1.0, log=True)}, "low > 0"),
        ({"s": Choice(())}, "at least one"),
        ({"s": Choice((1, 1))}, "twice"),
        ({"s": [0.5, 0.9]}, "Choice"),
        ({"s": Int(1, 4, step=2)}, "does not divide"),
        ({"s": 0.5, "k": "int8"}, "nothing to search"),
    ],
)
def test_empty_or_inconsistent_spaces_are_refused(tmp_path, space, match):
    with pytest.raises(search.SpaceError, match=match):
        search.run(_study(tmp_path), _evaluate, space, n_trials=1)


def test_a_space_naming_layers_the_model_lacks():
    with pytest.raises(search.SpaceError, match=r"\['fc9'\].*its layers are \['fc1', 'fc2'\]"):
        search.check_layers({"sparsity.fc1": 0.5, "sparsity.fc9": 0.5}, "sparsity", ["fc1", "fc2"])


def test_an_unmeetable_budget_says_which_and_by_how_much(tmp_path):
    budgets = (Budget("accuracy", "min", 0.995), Budget("size_bytes", "max", 1e9))
    study = search.run(_study(tmp_path, budgets=budgets), _evaluate, SPACE, n_trials=6)
    with pytest.raises(
        search.BudgetError, match=r"accuracy >= 0\.995: missed by every trial.*reached 0\.99, 0\.005 short"
    ) as e:
        search.best(study)
    assert "size_bytes <=" not in str(e.value)  # the budget that was met is not blamed


def test_budgets_met_separately_but_never_together(tmp_path):
    def evaluate(config, reporter):
        return {"accuracy": 0.99 if config["bits"] == 32 else 0.5, "size_bytes": 10 * config["bits"]}

    budgets = (Budget("accuracy", "min", 0.9), Budget("size_bytes", "max", 100))
    study = search.run(
        _study(tmp_path, budgets=budgets),
        evaluate,
        {"bits": Choice((4, 32))},
        n_trials=4,
        enqueue=[{"bits": 4}, {"bits": 32}],
    )
    with pytest.raises(search.BudgetError, match="never all at once"):
        search.best(study)


def test_a_corrupt_study_file_names_the_file_and_the_reset(tmp_path):
    bad = tmp_path / "broken.db"
    bad.write_bytes(b"this is not a database" * 10)
    with pytest.raises(search.StudyFileError, match=r"broken\.db.*rm '.*broken\.db'"):
        search.open_study("broken", {"size_bytes": "minimize"}, path=bad)
    trunc = tmp_path / "trunc.db"
    search.run(_study(tmp_path, name="trunc"), _evaluate, SPACE, n_trials=2)
    trunc.write_bytes(trunc.read_bytes()[:200])  # a copy cut short
    with pytest.raises(search.StudyFileError, match=r"trunc\.db.*Delete it"):
        search.open_study("trunc", {"size_bytes": "minimize"}, path=trunc)


def test_a_study_reopened_with_other_objectives_is_refused(tmp_path):
    search.run(_study(tmp_path), _evaluate, SPACE, n_trials=2)
    with pytest.raises(search.StudyFileError, match="optimises other objectives"):
        search.open_study("s", {"accuracy": "maximize"}, path=tmp_path / "s.db")


def test_moved_budgets_judge_the_stored_trials_again(tmp_path):
    search.run(
        _study(tmp_path), _evaluate, SPACE, n_trials=6, enqueue=[{"sparsity": 0.5, "bits": 8, "epochs": 1}]
    )
    strict = _study(tmp_path, budgets=(Budget("accuracy", "min", 0.9895),))
    rows = search.table(strict)
    assert (rows["feasible"] == (rows["accuracy"] >= 0.9895)).all()


def test_a_latency_budget_below_what_the_machine_can_measure():
    with pytest.raises(search.LatencyBudgetError, match=r"below what this machine can measure.*20\.0 µs"):
        search.check_latency_budget(0.005, floor_ms=0.02)
    with pytest.raises(search.LatencyBudgetError, match="positive"):
        search.check_latency_budget(-1, floor_ms=0.02)
    assert search.check_latency_budget(0.5, floor_ms=0.02) == 0.5


def test_the_latency_floor_is_measured():
    floor = search.latency_floor_ms(runs=20, warmup=2)
    assert 0 < floor < 5  # a one-unit model: microseconds, never seconds


def test_objective_must_return_the_budgeted_metrics(tmp_path):
    with pytest.raises(KeyError, match="size_bytes"):
        search.run(_study(tmp_path), lambda c, r: {"accuracy": 1.0}, SPACE, n_trials=1)


def test_bad_budgets_and_objectives():
    with pytest.raises(ValueError, match="'min'"):
        Budget("accuracy", ">=", 0.9)
    with pytest.raises(ValueError, match="finite"):
        Budget("accuracy", "min", float("nan"))
    with pytest.raises(ValueError, match="minimize"):
        search.open_study("x", {"size_bytes": "smallest"})


def test_the_targets_compare_the_search_with_the_hand_tuned_rows():
    import json

    import pandas as pd

    from effcourse import report

    def row(nb, tech, model, acc, size=None, lat=None, setting=None, role=None):
        return dict(
            notebook=nb,
            technique=tech,
            model=model,
            variant="x",
            setting=setting,
            role=role,
            accuracy=acc,
            size_bytes=size,
            dense_fp32_bytes=1_066_160.0,
            latency_ms=lat,
            timestamp="2026",
            extra=json.dumps({}),
        )

    nb08, nb04 = "08_automated_compression", "04_clustering_distillation_deep_compression"
    table = pd.DataFrame(
        [
            row("01_sgd_loss_formulation", "baseline", "lenet_300_100", 0.9820, 900_000),
            row(nb04, "deep compression", "lenet_300_100", 0.9815, 25_570),
            row(nb08, "automated search", "lenet_300_100", 0.9812, 21_000, setting="size", role="treated"),
            row(nb08, "automated search", "lenet5", 0.990, lat=0.05, setting="latency", role="reference"),
            row(nb08, "automated search", "lenet5", 0.989, lat=0.03, setting="latency", role="treated"),
        ]
    )
    table["compression"] = table["dense_fp32_bytes"] / table["size_bytes"]

    def search_targets(t):
        out = report.targets(t)
        return out[out["notebook"] == "08"]

    rows = search_targets(table)
    size300 = rows[rows["target"].str.contains("lenet_300_100")].iloc[0]
    assert (
        size300["reached"] == "yes"
        and "21,000 B" in size300["measured here"]
        and "25,570 B" in size300["measured here"]
        and "0.08 points below the baseline" in size300["measured here"]
        and "moonshot 50x: yes" in size300["measured here"]  # 50.8x, within 0.1 points
    )
    better = table.copy()
    better.loc[2, ["accuracy", "size_bytes"]] = [0.9830, 25_000]  # above the baseline, 42.6x: no moonshot
    size300 = search_targets(better).iloc[0]
    assert size300["reached"] == "yes" and "0.10 points above the baseline" in size300["measured here"]
    assert "moonshot 50x: no" in size300["measured here"]
    assert rows[rows["target"].str.contains("automated search, lenet5")].iloc[0]["reached"] == "not measured"
    assert (
        rows[rows["target"].str.startswith("latency")].iloc[0]["reached"] == "no"
    )  # faster but less accurate


def test_a_configuration_to_try_first_must_lie_in_the_space(tmp_path):
    """Optuna only warns and samples another value; the course refuses, naming the parameter."""
    space = {
        "sparsity": search.Float(0.5, 0.9, step=0.1),
        "epochs": search.Int(1, 3),
        "mode": search.Choice(("a", "b")),
    }
    assert search.check_config({"sparsity": 0.7, "epochs": 3, "mode": "b"}, space)
    for bad, words in (
        ({"epochs": 0}, "epochs = 0, outside the space's 1..3"),
        ({"sparsity": 0.95}, "sparsity = 0.95, outside"),
        ({"sparsity": 0.75}, "in steps of 0.1"),
        ({"mode": "c"}, "not one of"),
        ({"width": 2}, "not in the space"),
    ):
        with pytest.raises(search.SpaceError, match=words):
            search.check_config(bad, space)
    with pytest.raises(search.SpaceError, match="epochs = 0"):
        search.run(_study(tmp_path), _evaluate, SPACE, n_trials=1, enqueue=[{"epochs": 0}])
