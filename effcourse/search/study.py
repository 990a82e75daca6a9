"""Optuna studies for the course: stored, seeded, budgeted, resumable (notebook 08).

``open_study`` creates or resumes a study in an SQLite file under ``build/search/<profile>/``
(TPE for one objective, NSGA-II for several, both seeded; a pruner for the one-objective
case); ``run`` measures trials until the study holds ``n_trials`` (a re-run resumes where
the last one stopped); ``best`` returns the winner among the trials that meet every budget
and never one that misses a budget; ``table`` gives every trial as a DataFrame row.

A trial's metrics live in the trial's user attributes and the budgets in the study's, so a
resumed study knows everything the first run measured; whether a trial meets the budgets is
always computed from its metrics and the study's current budgets.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import EffcourseError
from . import space as _space

SQLITE_HEADER = b"SQLite format 3\x00"
DIRECTIONS = ("minimize", "maximize")


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
        if self.kind not in ("min", "max"):
            raise ValueError(
                f"Budget kind is 'min' (metric >= limit) or 'max' (metric <= limit), got {self.kind!r}."
            )
        if not isinstance(self.limit, (int, float)) or not math.isfinite(self.limit):
            raise ValueError(f"Budget limit for {self.metric} must be a finite number, got {self.limit!r}.")

    def violation(self, metrics: dict) -> float:
        """How far ``metrics`` miss this budget (<= 0: met). A missing or NaN metric misses it."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return math.inf
        return self.limit - float(value) if self.kind == "min" else float(value) - self.limit

    def __str__(self):
        return f"{self.metric} {'>=' if self.kind == 'min' else '<='} {self.limit:.6g}{self.unit}"


def _constraint_func(budgets):
    """Optuna's constraints_func: each budget's violation (<= 0: met) from the trial's stored metrics."""

    def constraints(frozen) -> list:
        metrics = frozen.user_attrs.get("metrics", {})
        return [min(b.violation(metrics), 1e12) for b in budgets] or [0.0]

    return constraints


def _study_path(name: str, profile: str | None = None) -> Path:
    """build/search/<profile>/<name>.db, the SQLite file a study lives in.

    Introduced in notebook 08.
    """
    from .. import env
    from .. import profile as _profile

    return env.build_dir("search", profile or _profile.active().name) / f"{name}.db"


def _reset_hint(path: Path) -> str:
    return f"Delete it to start the study over (rm '{path}'), or give the study another name."


def _check_file(path: Path) -> None:
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head != SQLITE_HEADER:
            raise StudyFileError(
                f"The study file {path} is not an SQLite database (corrupt?). {_reset_hint(path)}"
            )


def _storage(path: Path):
    """Optuna's RDB storage on an SQLite file, in WAL mode without an fsync per commit.

    A study commits several times per trial; with SQLite's default (an fsync each time) that
    costs more than a small trial on a busy disk. WAL with ``synchronous=NORMAL`` stays
    consistent if the process dies (only a power cut can lose the last trials).
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
    """Create, or resume, the Optuna study ``name`` stored in SQLite (default ``_study_path(name)``).

    ``objectives`` is {metric: "minimize" | "maximize"}: one metric gives a seeded TPE sampler
    (with ``pruner``, e.g. ``optuna.pruners.ThresholdPruner``), several a seeded NSGA-II
    (population ``population_size``); both treat ``budgets`` (``Budget``s) as constraints. A
    study already in the file is resumed when its objectives are the same (otherwise the error
    says so); its budgets may move (a latency budget measured again): every stored trial is
    then judged against the new ones. A corrupt file is a ``StudyFileError`` naming it.

    Introduced in notebook 08.
    """
    import optuna

    if not isinstance(objectives, dict) or not objectives:
        raise ValueError("objectives is {metric: 'minimize' | 'maximize'}, e.g. {'size_bytes': 'minimize'}.")
    bad = {k: v for k, v in objectives.items() if v not in DIRECTIONS}
    if bad:
        raise ValueError(f"objective directions must be 'minimize' or 'maximize', got {bad}.")
    budgets = list(budgets)
    path = Path(path) if path is not None else _study_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_file(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # Optuna marks constraints_func experimental; the course relies on it
        warnings.filterwarnings("ignore", message=".*constraints_func.*")
        if len(objectives) == 1:
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_startup_trials, constraints_func=_constraint_func(budgets)
            )
        else:
            sampler = optuna.samplers.NSGAIISampler(
                seed=seed, population_size=population_size, constraints_func=_constraint_func(budgets)
            )
            pruner = None  # Optuna prunes single-objective studies only
    try:
        study = optuna.create_study(
            study_name=name,
            storage=_storage(path),
            directions=list(objectives.values()),
            sampler=sampler,
            pruner=pruner or optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        stored = study.user_attrs
    except Exception as exc:  # sqlalchemy / optuna errors on a damaged or foreign database
        if isinstance(exc, EffcourseError):
            raise
        raise StudyFileError(
            f"Could not open the study {name!r} in {path}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}. {_reset_hint(path)}"
        ) from None
    spec = {
        "objectives": list(objectives.items()),
        "budgets": [[b.metric, b.kind, b.limit, b.unit] for b in budgets],
    }
    spec = json.loads(json.dumps(spec))
    if "spec" in stored and stored["spec"]["objectives"] != spec["objectives"]:
        raise StudyFileError(
            f"The study {name!r} in {path} optimises other objectives ({stored['spec']['objectives']}); "
            f"this call asks for {spec['objectives']}. {_reset_hint(path)}"
        )
    if stored.get("spec") != spec:  # new, or budgets moved (e.g. a latency budget measured again)
        study.set_user_attr("spec", spec)
    return study


def _objectives_of(study) -> dict:
    """{metric: direction} the study was opened with.

    Introduced in notebook 08.
    """
    return dict(study.user_attrs["spec"]["objectives"])


def _budgets_of(study) -> list:
    """The ``Budget``s the study was opened with.

    Introduced in notebook 08.
    """
    return [Budget(*b) for b in study.user_attrs["spec"]["budgets"]]


class _Reporter:
    """What an objective calls while it trains: ``report(value, step)`` may stop a hopeless trial.

    ``report`` hands the intermediate value (e.g. validation accuracy after an epoch) to
    Optuna's pruner and raises ``optuna.TrialPruned`` when the pruner says stop;
    ``should_stop`` asks without raising (for a Keras callback that ends the epoch loop).

    Introduced in notebook 08.
    """

    def __init__(self, trial, prunable: bool):
        self.trial, self.prunable, self.stopped_at = trial, prunable, None

    @property
    def number(self) -> int:
        """The trial's number in its study."""
        return self.trial.number

    def should_stop(self, value: float, step: int) -> bool:
        """Report ``value`` at ``step``; True when the pruner would stop the trial here."""
        if not self.prunable:
            return False
        self.trial.report(float(value), int(step))
        if self.trial.should_prune():
            self.stopped_at = (int(step), float(value))
            return True
        return False

    def report(self, value: float, step: int) -> None:
        """Report ``value`` at ``step``; raise ``optuna.TrialPruned`` if the pruner stops the trial."""
        import optuna

        if self.should_stop(value, step):
            raise optuna.TrialPruned(f"stopped at step {step}: {value:.4f}")

    def stop_if_pruned(self) -> None:
        """Raise ``optuna.TrialPruned`` if ``should_stop`` said stop earlier in this trial."""
        import optuna

        if self.stopped_at is not None:
            raise optuna.TrialPruned(f"stopped at step {self.stopped_at[0]}: {self.stopped_at[1]:.4f}")


def _artifact_dir(study) -> Path:
    """The folder next to the study's file where each trial's deployable file is kept.

    Introduced in notebook 08.
    """
    from .. import env

    db = _storage_file(study)
    if db is None:  # an in-memory study
        return env.build_dir("search", "artifacts", study.study_name)
    folder = db.parent / f"{db.stem}_artifacts"
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
    """The model a study's trials continue from: built once by ``build()``, kept next to the study.

    A search that continues from a model pruned by a fixed recipe (the hand-tuned plan)
    pays that recipe once: the model is saved in ``_artifact_dir(study)`` and read back when
    the study is resumed. A study without finished trials builds it again (a fresh study
    never inherits a stale start). The seconds spent building are kept in the study
    (``start_seconds``), so the notebook can say where the time went.

    Introduced in notebook 08.
    """
    from .. import models

    path = _artifact_dir(study) / f"{name}.keras"
    if path.exists() and any(t.state.is_finished() for t in study.get_trials(deepcopy=False)):
        return models.compile_classifier(models.load_model(path, compile=False))
    t0 = time.perf_counter()
    model = build()
    models.save_model(model, path)
    study.set_user_attr("start_seconds", time.perf_counter() - t0)
    return model


def _fail_stale(study) -> None:
    """Trials left RUNNING by an interrupted run are marked FAIL, so a resume does not wait on them."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)


def run(
    study,
    evaluate,
    space: dict,
    n_trials: int,
    timeout: float | None = None,
    enqueue=(),
    desc: str = "search trials",
    log_dir=None,
    on_trial=None,
):
    """Run trials until ``study`` holds ``n_trials`` finished ones (a re-run resumes; none if full).

    ``evaluate(config, reporter)`` builds and measures one configuration (suggested from
    ``space``, see ``space.suggest``) and returns a dict of metrics holding the study's
    objectives and budget metrics, optionally ``artifact`` (the deployable file's bytes, kept
    next to the study). It may call ``reporter.report(value, step)`` so the pruner can stop
    it. ``enqueue``: configurations to try first (e.g. the hand-tuned one), added once.
    ``timeout`` (seconds) stops starting new trials after that long. ``log_dir``: every
    trial logged to TensorBoard HParams afterwards (``log_study``). ``on_trial(row)``
    is called with each finished trial's row. A configuration the sampler proposes again
    after it finished is not measured again: the trial copies its twin's metrics
    (``repeat_of`` in its user attributes). Returns the study.

    Introduced in notebook 08.
    """
    from optuna.trial import TrialState

    from .. import env, progress
    from ..validate import positive_int

    _space.check(space)
    n_trials = positive_int(n_trials, "n_trials")
    objectives, budgets = _objectives_of(study), _budgets_of(study)
    prunable = len(objectives) == 1
    folder = _artifact_dir(study)
    _fail_stale(study)
    for config in enqueue:
        _space.check_config(config, space)
        study.enqueue_trial({k: v for k, v in config.items() if not _is_fixed(space[k])}, skip_if_exists=True)
    done = len(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    )
    remaining = max(0, n_trials - done)
    if remaining == 0:
        return study

    def objective(trial):
        config = _space.suggest(trial, space)
        same = _finished_twin(study, trial)
        if same is not None:  # a sampler may propose a finished configuration again: not re-measured
            trial.set_user_attr("metrics", same.user_attrs["metrics"])
            trial.set_user_attr("repeat_of", same.number)
            if same.user_attrs.get("artifact"):
                trial.set_user_attr("artifact", same.user_attrs["artifact"])
            return same.values[0] if len(same.values) == 1 else list(same.values)
        reporter = _Reporter(trial, prunable)
        metrics = dict(evaluate(dict(config), reporter))
        blob = metrics.pop("artifact", None)
        missing = [k for k in list(objectives) + [b.metric for b in budgets] if k not in metrics]
        if missing:
            raise KeyError(
                f"evaluate(config, reporter) must return the metrics {missing} (got {sorted(metrics)})."
            )
        clean = {k: _plain(v) for k, v in metrics.items()}
        trial.set_user_attr("metrics", clean)
        if blob is not None:
            target = folder / f"trial_{trial.number:04d}.bin"
            env.atomic_write_bytes(target, bytes(blob))
            trial.set_user_attr("artifact", str(target))
        values = [float(clean[k]) for k in objectives]
        return values[0] if len(values) == 1 else values

    bar = progress.bar(total=remaining, desc=desc, unit="trial")

    def after(st, frozen):
        bar.update(1)
        try:
            row = table(st).iloc[-1]
            ok = table(st)["feasible"].sum()
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({"within budget": int(ok)}, refresh=True)
            if on_trial is not None:
                on_trial(row)
        except Exception:  # a bar caption must never stop a study
            if on_trial is not None:
                raise

    start = time.perf_counter()
    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[after], catch=())
    finally:
        bar.close()
    study.set_user_attr("last_run_seconds", time.perf_counter() - start)
    if log_dir is not None:
        log_study(study, log_dir)
    return study


def log_study(study, log_dir) -> Path:
    """Every finished trial of ``study`` as one TensorBoard HParams run (``tracking.log_runs``), named ``trial-NNNN``.

    Parameters are the trial's suggested values plus its state (complete / pruned / fail);
    metrics are what the objective measured, ``feasible`` (1 if every budget was met) and ``seconds``.

    Introduced in notebook 08.
    """
    from .. import tracking

    rows = table(study)
    if rows.empty:
        raise ValueError(f"The study {study.study_name!r} has no finished trial to log.")
    params = [p for p in rows.columns if p in {k for t in study.trials for k in t.params}] + ["state"]
    skip = set(params) | {"trial", "pruned_at_step", "elapsed_s"}
    records = rows.assign(feasible=rows["feasible"].astype(int)).to_dict("records")
    names = [f"trial-{int(t):04d}" for t in rows["trial"]]
    return tracking.log_runs(
        records, log_dir, [c for c in rows.columns if c not in skip], params, names=names
    )


def _finished_twin(study, trial):
    """The earliest complete trial of ``study`` with exactly ``trial``'s parameters, or None."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != trial.number and t.params == trial.params and "metrics" in t.user_attrs:
            return t
    return None


def _is_fixed(p) -> bool:
    return not isinstance(p, (_space.Float, _space.Int, _space.Choice))


def _storage_file(study):
    url = getattr(study._storage, "url", None) or getattr(
        getattr(study._storage, "_backend", None), "url", ""
    )
    url = str(url)
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def _plain(v):
    import numpy as np

    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def table(study):
    """Every trial of ``study`` as a DataFrame row: number, state, parameters, metrics, ``feasible``, seconds.

    ``feasible`` is True for a finished trial that meets every budget; ``seconds`` is the
    trial's wall time and ``elapsed_s`` the search time spent up to its end (summed over runs).

    Introduced in notebook 08.
    """
    import pandas as pd

    budgets = _budgets_of(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("RUNNING", "WAITING"):
            continue
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else float("nan")
        )
        metrics = t.user_attrs.get("metrics")
        feasible = (
            t.state.name == "COMPLETE"
            and metrics is not None
            and all(b.violation(metrics) <= 0 for b in budgets)
        )
        steps = t.intermediate_values
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                **t.params,
                **t.user_attrs.get("metrics", {}),
                "feasible": bool(feasible),
                "pruned_at_step": max(steps) if t.state.name == "PRUNED" and steps else None,
                "seconds": seconds,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["elapsed_s"] = out["seconds"].fillna(0).cumsum()
    return out


def best(study, order=None, extra=()):
    """The winner: among trials meeting every budget, the best by the objectives in order.

    ``order`` (default: the study's objectives, in order) is a list of metrics; each is
    minimised or maximised as the study says (ties broken by the next). A trial that misses
    a budget is never returned, however good; when none meets them all, ``BudgetError`` says
    which budget was missed and by how much. ``extra`` (``Budget``s) are further conditions
    for this choice only, e.g. "at least as accurate as the hand-tuned trial" to pick a
    trial that dominates it. Returns the trial's row of ``table(study)``.

    Introduced in notebook 08.
    """
    objectives, budgets = _objectives_of(study), _budgets_of(study)
    rows = table(study)
    if rows.empty or not (rows["state"] == "complete").any():
        raise BudgetError(
            f"The study {study.study_name!r} has no finished trial yet (states: "
            f"{dict(rows['state'].value_counts()) if len(rows) else 'none'}); run more trials."
        )
    extra = list(extra)
    if extra:
        rows = rows.assign(
            feasible=rows["feasible"]
            & rows.apply(lambda r: all(b.violation(r.to_dict()) <= 0 for b in extra), axis=1)
        )
    ok = rows[rows["feasible"]]
    if ok.empty:
        raise BudgetError(_budget_message(rows[rows["state"] == "complete"], budgets + extra))
    order = list(order or objectives)
    asc = [objectives.get(k, "minimize") == "minimize" for k in order]
    return ok.sort_values(order + ["trial"], ascending=asc + [True]).iloc[0]


def _budget_message(done, budgets) -> str:
    parts = []
    for b in budgets:
        miss = done.apply(lambda r, b=b: b.violation(r.to_dict()), axis=1)
        i = miss.idxmin()
        if miss[i] > 0:
            parts.append(
                f"{b}: missed by every trial; the closest, trial {int(done.loc[i, 'trial'])}, "
                f"reached {done.loc[i, b.metric]:.6g}{b.unit}, {miss[i]:.4g}{b.unit} short"
            )
    if not parts:
        parts.append(
            "each budget was met by some trial ("
            + "; ".join(str(b) for b in budgets)
            + ") but never all at once"
        )
    return (
        f"None of the {len(done)} finished trials met every budget: "
        + "; ".join(parts)
        + ". Widen that budget, add milder settings to the space, or run more trials."
    )
