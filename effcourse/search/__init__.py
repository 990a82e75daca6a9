"""Automated, hardware-aware compression with Optuna (notebook 08).

A thin layer over Optuna (``optuna.org``): the space (``space``: ``Float``, ``Int``,
``Choice``), the study stored in SQLite under ``build/search/`` so that a re-run resumes
(``study``: ``open_study``, ``run``, ``best``, ``table``; TPE for one
objective with a pruner, NSGA-II for several, both seeded, budgets as constraints), and the
objectives built from the course's own helpers (``objectives``: ``compression_objective``,
``channel_objective``, the latency floor). Every trial can be logged to TensorBoard's
HParams dashboard (``log_study`` on ``effcourse.tracking``). ``__init__`` re-exports every public name.
"""

from .objectives import (
    LatencyBudgetError,
    channel_objective,
    check_latency_budget,
    compression_objective,
    held_sparsity,
    latency_floor_ms,
    one_shot_prune,
)
from .space import Choice, Float, Int, SpaceError, check, check_config, check_layers, per_layer, suggest
from .study import (
    Budget,
    BudgetError,
    StudyFileError,
    artifact,
    best,
    log_study,
    open_study,
    run,
    start_model,
    table,
)

__all__ = [
    "Budget",
    "BudgetError",
    "Choice",
    "Float",
    "Int",
    "LatencyBudgetError",
    "SpaceError",
    "StudyFileError",
    "artifact",
    "best",
    "channel_objective",
    "check",
    "check_latency_budget",
    "check_config",
    "check_layers",
    "compression_objective",
    "held_sparsity",
    "log_study",
    "latency_floor_ms",
    "one_shot_prune",
    "open_study",
    "per_layer",
    "run",
    "start_model",
    "suggest",
    "table",
]
