"""Automated compression under an accuracy budget (notebook 08).

The search is deliberately simple and explainable: a fixed, seeded sample of
configurations from a discrete space (the course's techniques and their settings), each
built and *measured* by a caller-supplied ``evaluate(config)``; the answer is the smallest
deployable artifact whose accuracy stays within the budget. A configuration that misses
the budget is never returned, however small.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import EffcourseError


class BudgetError(EffcourseError, RuntimeError):
    """No configuration met the accuracy budget within the trial budget.

    Introduced in notebook 08.
    """


@dataclass
class Trial:
    """One measured configuration.

    Introduced in notebook 08.
    """

    config: dict
    accuracy: float
    size_bytes: int
    meets_budget: bool
    seconds: float
    extra: dict = field(default_factory=dict)
    artifact: bytes | None = None


@dataclass
class SearchResult:
    """All trials, the budget, and the chosen (smallest within-budget) trial.

    Introduced in notebook 08.
    """

    trials: list
    baseline_accuracy: float
    max_drop: float
    best: Trial

    @property
    def floor(self) -> float:
        """The lowest accuracy the budget allows."""
        return self.baseline_accuracy - self.max_drop

    def table(self):
        """The trials as a DataFrame, one row per configuration, sorted by size."""
        import pandas as pd

        rows = [
            dict(
                t.config,
                accuracy=t.accuracy,
                size_bytes=t.size_bytes,
                meets_budget=t.meets_budget,
                seconds=round(t.seconds, 2),
                **t.extra,
            )
            for t in self.trials
        ]
        return pd.DataFrame(rows).sort_values("size_bytes").reset_index(drop=True)


def grid(space: dict) -> list[dict]:
    """Every combination of a discrete space {name: [values]} as a list of dicts.

    Introduced in notebook 02.
    """
    if not space or any(len(v) == 0 for v in space.values()):
        raise ValueError("The search space needs at least one value for every setting.")
    names = list(space)
    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def sample(space: dict, trials: int, seed: int = 0, first: list[dict] | None = None) -> list[dict]:
    """``trials`` distinct configurations: the ``first`` ones given, then a seeded random sample.

    Introduced in notebook 00.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    configs = grid(space)
    chosen = [dict(c) for c in (first or [])]
    rest = [c for c in configs if c not in chosen]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rest))
    chosen += [rest[i] for i in order[: max(0, trials - len(chosen))]]
    return chosen[:trials]


def search(
    evaluate,
    space: dict,
    baseline_accuracy: float,
    max_drop: float,
    trials: int,
    seed: int = 0,
    first: list[dict] | None = None,
    progress=None,
    desc: str = "search trials",
) -> SearchResult:
    """Measure up to ``trials`` configurations and return the smallest one within the budget.

    ``evaluate(config)`` must build the compressed model and return a dict with at least
    ``accuracy`` (fraction, on held-out data) and ``size_bytes`` (compressed deployable
    file); it may add ``artifact`` (the file's bytes) and other measurements. A trial meets
    the budget when ``accuracy >= baseline_accuracy - max_drop``. Raises BudgetError if none
    does. ``progress(i, n, trial)`` is called after each trial; a progress bar (``desc``) runs
    over the trials meanwhile.

    Introduced in notebook 08.
    """
    from . import progress as _progress

    if not 0 <= max_drop < 1:
        raise ValueError(f"max_drop is a fraction of accuracy in [0, 1), got {max_drop}")
    if not 0 < baseline_accuracy <= 1:
        raise ValueError(f"baseline_accuracy is a fraction in (0, 1], got {baseline_accuracy}")
    floor = baseline_accuracy - max_drop
    done = []
    configs = sample(space, trials, seed, first)
    bar = _progress.bar(configs, desc=desc, unit="trial")
    for i, config in enumerate(bar):
        start = time.perf_counter()
        measured = dict(evaluate(dict(config)))
        if "accuracy" not in measured or "size_bytes" not in measured:
            raise KeyError("evaluate(config) must return a dict with 'accuracy' and 'size_bytes'.")
        acc, size = float(measured.pop("accuracy")), int(measured.pop("size_bytes"))
        artifact = measured.pop("artifact", None)
        done.append(
            Trial(
                config,
                acc,
                size,
                bool(math.isfinite(acc) and acc >= floor),
                time.perf_counter() - start,
                measured,
                artifact,
            )
        )
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({"within budget": sum(t.meets_budget for t in done)}, refresh=True)
        if progress:
            progress(i + 1, len(configs), done[-1])
    within = [t for t in done if t.meets_budget]
    if not within:
        best_acc = max(done, key=lambda t: t.accuracy)
        raise BudgetError(
            f"None of {len(done)} configurations kept accuracy >= {floor:.4f} (baseline "
            f"{baseline_accuracy:.4f} - budget {max_drop:.4f}); the most accurate reached "
            f"{best_acc.accuracy:.4f} with {best_acc.config}. Widen the budget, add milder "
            "settings to the space, or allow more trials."
        )
    best = min(within, key=lambda t: (t.size_bytes, -t.accuracy))
    return SearchResult(done, baseline_accuracy, max_drop, best)


def prune_cluster_objective(
    base_model, data, prune_epochs: int, cluster_epochs: int, batch_size: int, representative_samples: int
):
    """The course's ``evaluate(config)`` for ``search``: prune, cluster, convert, measure on validation.

    Introduced in notebook 08. A configuration is ``{"sparsity", "clusters", "mode"}``:
    ``prune.prune_and_finetune`` to the sparsity, then (when ``clusters`` is not 0)
    ``cluster.cluster_and_finetune`` with sparsity preserved, then ``convert.to_tflite`` in the
    mode. Pruned and clustered models are cached by their settings, so trials that share a
    sparsity train it once. Returns the function; the validation split chooses, never the test.
    """
    from . import cluster, convert, measure, prune
    from .validate import mnist_like

    mnist_like(data, "prune_cluster_objective")
    pruned, clustered = {}, {}

    def build(sparsity, clusters):
        if sparsity not in pruned:
            pruned[sparsity] = prune.prune_and_finetune(
                base_model, data, sparsity, epochs=prune_epochs, batch_size=batch_size
            )
        if not clusters:
            return pruned[sparsity]
        if (sparsity, clusters) not in clustered:
            clustered[(sparsity, clusters)] = cluster.cluster_and_finetune(
                pruned[sparsity],
                data,
                clusters,
                epochs=cluster_epochs,
                batch_size=batch_size,
                preserve_sparsity=True,
            )
        return clustered[(sparsity, clusters)]

    def evaluate(config):
        model = build(config["sparsity"], config["clusters"])
        blob = convert.to_tflite(model, config["mode"], representative=data.x_train[:representative_samples])
        return {
            "accuracy": measure.accuracy(blob, data.x_val, data.y_val),
            "size_bytes": measure.compressed_size(blob),
            "artifact": blob,
        }

    return evaluate


def print_trial(i: int, n: int, trial: Trial) -> None:
    """One line per finished trial, for ``search(..., progress=print_trial)``.

    Introduced in notebook 08.
    """
    print(
        f"trial {i:2d}/{n}: {trial.config}  val acc {trial.accuracy:.4f}  {trial.size_bytes:7,d} B  "
        f"{'meets' if trial.meets_budget else 'misses'} the budget  ({trial.seconds:.0f} s)"
    )
