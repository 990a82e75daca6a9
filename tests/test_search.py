"""effcourse.search: stored, seeded, budgeted, resumable Optuna studies (notebook 08)."""

import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution as Choice
from optuna.distributions import FloatDistribution as Float
from optuna.distributions import IntDistribution as Int

from effcourse import models, search, tracking
from effcourse.search import Budget

SPACE = {"sparsity": Float(0.0, 0.95, step=0.05), "bits": Choice((2, 4, 8, 32)), "epochs": Int(1, 4)}


def _evaluate(config, trial):
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
    def evaluate(config, trial):
        return {**_evaluate(config, trial), "latency_ms": 0.01 * config["bits"]}

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
    cols = ["trial", "sparsity", "bits", "size_bytes"]
    assert after.iloc[:8][cols].equals(before[cols])
    assert search.best(again)["size_bytes"] <= best_before["size_bytes"]
    search.run(again, _evaluate, SPACE, n_trials=12)  # already complete: nothing runs
    assert len(search.table(again)) == 12


def test_the_same_seed_suggests_the_same_configurations_as_plain_optuna(tmp_path):
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

    def objective(trial):  # the same study written in plain Optuna
        config = {
            "sparsity": trial.suggest_float("sparsity", 0.0, 0.95, step=0.05),
            "bits": trial.suggest_categorical("bits", (2, 4, 8, 32)),
            "epochs": trial.suggest_int("epochs", 1, 4),
        }
        out = _evaluate(config, trial)
        trial.set_user_attr("c", [0.987 - out["accuracy"]])
        return out["size_bytes"]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*constraints_func.*")
        sampler = optuna.samplers.TPESampler(
            seed=7, n_startup_trials=3, constraints_func=lambda t: t.user_attrs["c"]
        )
    plain = optuna.create_study(sampler=sampler)
    plain.optimize(objective, n_trials=6)
    assert [t.params for t in plain.trials] == seq[0]


def test_the_pruner_stops_a_hopeless_trial(tmp_path):
    epochs_run = []

    def evaluate(config, trial):
        hopeless = config["bits"] == 2  # a constructed objective: 2 bits can never reach the budget
        for epoch in range(5):
            epochs_run.append((config["bits"], epoch))
            trial.report(0.5 if hopeless else 0.99, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return _evaluate({**config, "sparsity": 0.5}, trial)

    study = _study(tmp_path, pruner=optuna.pruners.ThresholdPruner(lower=0.9))
    search.run(study, evaluate, {"bits": Choice((2, 8))}, n_trials=4, enqueue=[{"bits": 2}, {"bits": 8}])
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


def test_a_configuration_proposed_again_is_not_measured_again(tmp_path):
    calls = []

    def evaluate(config, trial):
        calls.append(config["p"])
        return {"size_bytes": {"a": 3, "b": 2}[config["p"]]}

    s = search.open_study("tw", {"size_bytes": "minimize"}, path=tmp_path / "tw.db")
    search.run(s, evaluate, {"p": Choice(("a", "b"))}, n_trials=6)
    assert len(search.table(s)) == 6 and sorted(set(calls)) == sorted(calls)  # each measured once
    repeats = [t for t in s.trials if "repeat_of" in t.user_attrs]
    assert len(repeats) == 6 - len(calls)
    for t in repeats:
        assert t.user_attrs["metrics"] == s.trials[t.user_attrs["repeat_of"]].user_attrs["metrics"]


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


def test_the_start_model_is_built_once_and_read_back_on_resume(tmp_path, tiny_model):
    built = []

    def build():
        built.append(1)
        return models.clone(tiny_model)

    def study():
        return search.open_study("st", {"size_bytes": "minimize"}, path=tmp_path / "st.db")

    first = search.start_model(study(), build)
    search.run(study(), lambda c, t: {"size_bytes": c["x"]}, {"x": Float(0.0, 1.0)}, n_trials=1)
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
        lambda c, t: dict(zip(("latency_ms", "accuracy"), points[c["p"]])),
        {"p": Choice(tuple(points))},
        n_trials=4,
        enqueue=[{"p": p} for p in points],
    )
    assert search.best(s, order=["latency_ms", "accuracy"])["latency_ms"] == 0.5  # b; d misses the budget
    won = search.best(s, order=["latency_ms", "accuracy"], extra=[Budget("accuracy", "min", 0.99)])
    assert (won["latency_ms"], won["accuracy"]) == (0.7, 0.995)  # c: faster than a and as accurate
    with pytest.raises(search.BudgetError, match="accuracy >= 0.999"):
        search.best(s, extra=[Budget("accuracy", "min", 0.999)])


# --- bad input ---------------------------------------------------------------------------------


def test_an_empty_space_or_one_optuna_refuses():
    with pytest.raises(ValueError, match="empty"):
        search.run(None, _evaluate, {}, n_trials=1)
    with pytest.raises(ValueError):
        Float(0.9, 0.5)  # Optuna's own check, before any trial runs


def test_an_unmeetable_budget_says_which_and_by_how_much(tmp_path):
    budgets = (Budget("accuracy", "min", 0.995), Budget("size_bytes", "max", 1e9))
    study = search.run(_study(tmp_path, budgets=budgets), _evaluate, SPACE, n_trials=6)
    with pytest.raises(
        search.BudgetError, match=r"accuracy >= 0\.995: missed by every trial.*reached 0\.99, 0\.005 short"
    ) as e:
        search.best(study)
    assert "size_bytes <=" not in str(e.value)  # the budget that was met is not blamed


def test_budgets_met_separately_but_never_together(tmp_path):
    def evaluate(config, trial):
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


def test_objective_must_return_the_budgeted_metrics(tmp_path):
    with pytest.raises(KeyError, match="size_bytes"):
        search.run(_study(tmp_path), lambda c, t: {"accuracy": 1.0}, SPACE, n_trials=1)


def test_bad_budgets_and_objectives():
    with pytest.raises(ValueError, match="'min'"):
        Budget("accuracy", ">=", 0.9)
    with pytest.raises(ValueError, match="finite"):
        Budget("accuracy", "min", float("nan"))
    with pytest.raises(ValueError, match="minimize"):
        search.open_study("x", {"size_bytes": "smallest"})
