"""Optuna studies for notebook 08: stored, seeded, budgeted, resumable.

Optuna does the searching (samplers, pruners, storage). This module adds what the course's
long searches need around it: the study in an SQLite file under ``build/search/<profile>/``
so that a re-run resumes (``open_study``: seeded TPE for one objective, NSGA-II for several,
``Budget``s as constraints), trials measured until the study holds ``n_trials``, with each
trial's deployable file kept beside the study and every trial logged to TensorBoard HParams
(``run``), and the rule that the winner meets every budget (``best``). A trial's metrics live
in its user attributes and the budgets in the study's, so whether a trial meets the budgets
is judged when it is read: a study resumed with a re-measured budget judges its trials again.
The space is a dict of Optuna distributions, which check themselves when built.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import EffcourseError


class BudgetError(EffcourseError, RuntimeError):
    """No trial met every budget: which budget was missed, and by how much.

    Introduced in notebook 08.
    """


class StudyFileError(EffcourseError, RuntimeError):
    """A study file that cannot be opened (the file, and how to start over).

    Introduced in notebook 08.
    """


@dataclass(frozen=True)
class Budget:
    """A constraint on one measured metric: ``metric >= limit`` (kind "min") or ``<= limit`` ("max").

    Introduced in notebook 08.
    """

    metric: str
    kind: str
    limit: float
    unit: str = ""

    def __post_init__(self):
        if self.kind not in ("min", "max") or not math.isfinite(self.limit):
            raise ValueError(
                f"A Budget is (metric, 'min' | 'max', a finite limit), got {self.kind!r}, {self.limit!r}."
            )

    def violation(self, metrics) -> float:
        """How far ``metrics`` miss this budget (<= 0: met). A missing or NaN metric misses it."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return math.inf
        return self.limit - float(value) if self.kind == "min" else float(value) - self.limit

    def __str__(self):
        return f"{self.metric} {'>=' if self.kind == 'min' else '<='} {self.limit:.6g}{self.unit}"


def _storage(path: Path):
    """Optuna's storage on an SQLite file, in WAL mode without an fsync per commit.

    A study commits several times per trial; SQLite's default fsync each time costs more than
    a small trial on a busy disk. WAL with ``synchronous=NORMAL`` stays consistent if the
    process dies (only a power cut can lose the last trials).
    """
    import optuna
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")

    def pragmas(connection, _record):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections made while creating the tables get the pragmas too
    return storage


def open_study(
    name: str,
    objectives: dict,
    budgets=(),
    seed: int = 0,
    path=None,
    pruner=None,
    n_startup_trials: int = 5,
    population_size: int = 8,
):
    """Create, or resume, the Optuna study ``name`` stored in ``build/search/<profile>/<name>.db`` (or ``path``).

    ``objectives`` is {metric: "minimize" | "maximize"}: one metric gives a seeded TPE sampler
    (with ``pruner``, e.g. ``optuna.pruners.ThresholdPruner``), several a seeded NSGA-II
    (population ``population_size``); both treat ``budgets`` (``Budget``s) as constraints. A
    study already in the file is resumed when its objectives are the same; its budgets may
    move (a latency budget measured again). A file that cannot be opened is a ``StudyFileError``.

    Introduced in notebook 08.
    """
    import optuna

    from . import env, profile

    if not objectives or set(objectives.values()) - {"minimize", "maximize"}:
        raise ValueError(f"objectives is {{metric: 'minimize' | 'maximize'}}, got {objectives!r}.")
    budgets = list(budgets)
    path = Path(path) if path is not None else env.build_dir("search", profile.active().name) / f"{name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    reset = f"Delete it to start the study over (rm '{path}'), or give the study another name."

    def constraints(trial) -> list:  # each budget's violation (<= 0: met), from the stored metrics
        return [min(b.violation(trial.user_attrs.get("metrics", {})), 1e12) for b in budgets] or [0.0]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # Optuna marks constraints_func experimental; the course relies on it
        warnings.filterwarnings("ignore", message=".*constraints_func.*")
        if len(objectives) == 1:
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_startup_trials, constraints_func=constraints
            )
        else:
            sampler = optuna.samplers.NSGAIISampler(
                seed=seed, population_size=population_size, constraints_func=constraints
            )
            pruner = None  # Optuna prunes single-objective studies only
    try:
        if path.exists() and path.stat().st_size and path.open("rb").read(16) != b"SQLite format 3\x00":
            raise ValueError("not an SQLite database (corrupt?)")
        study = optuna.create_study(
            study_name=name,
            storage=_storage(path),
            directions=list(objectives.values()),
            sampler=sampler,
            pruner=pruner or optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        stored = study.user_attrs.get("spec")
    except Exception as exc:  # sqlalchemy / optuna errors on a damaged or foreign database
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise StudyFileError(
            f"Could not open the study {name!r} in {path}: {type(exc).__name__}: {first}. {reset}"
        ) from None
    spec = {"objectives": list(objectives.items()), "budgets": [list(vars(b).values()) for b in budgets]}
    spec = json.loads(json.dumps(spec))
    if stored and stored["objectives"] != spec["objectives"]:
        raise StudyFileError(
            f"The study {name!r} in {path} optimises other objectives ({stored['objectives']}); "
            f"this call asks for {spec['objectives']}. {reset}"
        )
    if stored != spec:  # new, or budgets moved (e.g. a latency budget measured again)
        study.set_user_attr("spec", spec)
    return study


def _spec(study):
    """The study's {metric: direction} and its ``Budget``s, as ``open_study`` stored them."""
    spec = study.user_attrs["spec"]
    return dict(spec["objectives"]), [Budget(*b) for b in spec["budgets"]]


def _folder(study) -> Path:
    """The folder beside the study's file that holds each trial's deployable file."""
    storage = getattr(study._storage, "_backend", study._storage)  # Optuna caches the RDB storage
    db = Path(str(storage.url).removeprefix("sqlite:///"))
    folder = db.with_name(f"{db.stem}_artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def artifact(study, number: int) -> bytes:
    """The deployable file (bytes) trial ``number`` of ``study`` produced.

    Introduced in notebook 08.
    """
    name = study.trials[number].user_attrs.get("artifact")
    if not name:
        raise FileNotFoundError(f"Trial {number} of study {study.study_name!r} stored no artifact.")
    return Path(name).read_bytes()


def start_model(study, build, name: str = "start"):
    """The model a study's trials continue from: built once by ``build()``, kept beside the study.

    A search that continues from a model pruned by a fixed recipe (the hand-tuned plan) pays
    that recipe once; a resumed study reads it back. A study without finished trials builds
    it again, so a fresh study never inherits a stale start.

    Introduced in notebook 08.
    """
    from . import models

    path = _folder(study) / f"{name}.keras"
    if path.exists() and any(t.state.is_finished() for t in study.get_trials(deepcopy=False)):
        return models.compile_classifier(models.load_model(path, compile=False))
    model = build()
    models.save_model(model, path)
    return model


def _suggest(trial, name: str, d):
    """The ``trial``'s value for parameter ``name`` of Optuna distribution ``d``."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    suggest = trial.suggest_int if isinstance(d, IntDistribution) else trial.suggest_float
    return suggest(name, d.low, d.high, step=d.step, log=d.log)


def _plain(v):
    """A value JSON stores as it is: numpy scalars as Python numbers, NaN and infinities as None."""
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and not math.isfinite(v) else v


def run(
    study, evaluate, space: dict, n_trials: int, timeout=None, enqueue=(), desc="search trials", log_dir=None
):
    """Run trials until ``study`` holds ``n_trials`` finished ones (a re-run resumes; none if full).

    ``space`` is {name: Optuna distribution}. ``evaluate(config, trial)`` builds and measures one
    configuration and returns a dict of metrics holding the study's objectives and budget
    metrics, optionally ``artifact`` (the deployable file's bytes, kept beside the study); it may
    call ``trial.report`` / ``trial.should_prune`` for the pruner. ``enqueue``: configurations
    to try first (the hand-tuned one), added once. ``timeout`` (s) stops starting new trials.
    A configuration proposed again after it finished is not measured again: the trial copies
    its twin's metrics (``repeat_of``). ``log_dir``: every trial logged to TensorBoard HParams.

    Introduced in notebook 08.
    """
    from optuna.trial import TrialState

    from . import env, progress

    if not space:
        raise ValueError("The search space is empty: give {name: an Optuna distribution}.")
    objectives, budgets = _spec(study)
    folder = _folder(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # an interrupted run's
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
    for config in enqueue:
        study.enqueue_trial(config, skip_if_exists=True)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    remaining = n_trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining <= 0:
        return study

    def objective(trial):
        config = {name: _suggest(trial, name, d) for name, d in space.items()}
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        twin = next((t for t in done if t.params == trial.params and "metrics" in t.user_attrs), None)
        if twin is not None:  # a sampler may propose a finished configuration again
            for key in ("metrics", "artifact"):
                if key in twin.user_attrs:
                    trial.set_user_attr(key, twin.user_attrs[key])
            trial.set_user_attr("repeat_of", twin.number)
            return twin.values if len(twin.values) > 1 else twin.values[0]
        metrics = dict(evaluate(config, trial))
        blob = metrics.pop("artifact", None)
        missing = [k for k in [*objectives, *(b.metric for b in budgets)] if k not in metrics]
        if missing:
            raise KeyError(
                f"evaluate(config, trial) must return the metrics {missing} (got {sorted(metrics)})."
            )
        metrics = {k: _plain(v) for k, v in metrics.items()}
        trial.set_user_attr("metrics", metrics)
        if blob is not None:
            target = env.atomic_write_bytes(folder / f"trial_{trial.number:04d}.bin", bytes(blob))
            trial.set_user_attr("artifact", str(target))
        values = [float(metrics[k]) for k in objectives]
        return values if len(values) > 1 else values[0]

    bar = progress.bar(total=remaining, desc=desc, unit="trial")

    def after(st, _trial):
        bar.update(1)
        bar.set_postfix({"within budget": int(table(st)["feasible"].sum())}, refresh=True)

    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[after], catch=())
    finally:
        bar.close()
    if log_dir is not None:
        _log(study, log_dir)
    return study


def _log(study, log_dir) -> Path:
    """Every finished trial as a TensorBoard HParams run ``trial-NNNN``: parameters and state as
    hyperparameters; metrics, ``feasible`` (1: every budget met) and ``seconds`` as scalars."""
    from . import tracking

    rows = table(study)
    params = [c for c in rows.columns if any(c in t.params for t in study.trials)] + ["state"]
    metrics = [c for c in rows.columns if c not in {*params, "trial", "pruned_at_step", "elapsed_s"}]
    records = rows.assign(feasible=rows["feasible"].astype(int)).to_dict("records")
    names = [f"trial-{t:04d}" for t in rows["trial"]]
    return tracking.log_runs(records, log_dir, metrics, params, names=names)


def table(study):
    """Every finished trial of ``study`` as a DataFrame row: number, state, parameters, metrics, ``feasible``.

    ``feasible``: complete and within every budget; ``pruned_at_step``: where the pruner stopped
    it; ``seconds``: its wall time; ``elapsed_s``: the search time up to its end (over all runs).

    Introduced in notebook 08.
    """
    import pandas as pd
    from optuna.trial import TrialState

    _, budgets = _spec(study)
    rows = []
    for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ):
        metrics = t.user_attrs.get("metrics")
        ok = t.state == TrialState.COMPLETE and metrics is not None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                **t.params,
                **(metrics or {}),
                "feasible": ok and all(b.violation(metrics) <= 0 for b in budgets),
                "pruned_at_step": t.last_step if t.state == TrialState.PRUNED else None,
                "seconds": t.duration.total_seconds() if t.duration else float("nan"),
            }
        )
    out = pd.DataFrame(rows)
    return out.assign(elapsed_s=out["seconds"].fillna(0).cumsum()) if len(out) else out


def best(study, order=None, extra=()):
    """The winner: among trials meeting every budget, the best by the objectives in order.

    ``order`` (default: the study's objectives) lists metrics, each minimised or maximised as the
    study says (ties broken by the next, then the trial number). A trial that misses a budget is
    never returned; when none meets them all, ``BudgetError`` says which budget was missed and by
    how much. ``extra`` (``Budget``s): further conditions for this choice only (e.g. "at least as
    accurate as the hand-tuned trial"). Returns the trial's row of ``table(study)``.

    Introduced in notebook 08.
    """
    objectives, budgets = _spec(study)
    rows = table(study)
    done = rows[rows["state"] == "complete"] if len(rows) else rows
    if done.empty:
        raise BudgetError(f"The study {study.study_name!r} has no finished trial yet: run more trials.")
    ok = done[done["feasible"] & done.apply(lambda r: all(b.violation(r) <= 0 for b in extra), axis=1)]
    if ok.empty:
        parts = []
        for b in [*budgets, *extra]:
            miss = done.apply(b.violation, axis=1)
            i = miss.idxmin()
            if miss[i] > 0:
                parts.append(
                    f"{b}: missed by every trial; the closest, trial {int(done.loc[i, 'trial'])}, reached "
                    f"{done.loc[i, b.metric]:.6g}{b.unit}, {miss[i]:.4g}{b.unit} short"
                )
        parts = parts or [
            f"each budget was met by some trial ({'; '.join(map(str, budgets))}) but never all at once"
        ]
        raise BudgetError(
            f"None of the {len(done)} finished trials met every budget: {'; '.join(parts)}. Widen that "
            "budget, add milder settings to the space, or run more trials."
        )
    order = list(order or objectives)
    ascending = [objectives.get(k, "minimize") == "minimize" for k in order]
    return ok.sort_values([*order, "trial"], ascending=[*ascending, True]).iloc[0]
