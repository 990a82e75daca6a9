"""The search space: named parameters and their ranges, suggested through Optuna (notebook 08).

A space is a dict {name: Float | Int | Choice | fixed value}. Names may carry a layer after a
dot (``"sparsity.fc1"``, ``"clusters.fc2"``, ``"keep.conv1"``): the objectives group them
with ``per_layer``. ``check`` refuses an empty or inconsistent space before any trial runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import EffcourseError


class SpaceError(EffcourseError, ValueError):
    """A search space that is empty or inconsistent (what is wrong, and how to fix it).

    Introduced in notebook 08.
    """


@dataclass(frozen=True)
class Float:
    """A real parameter in [low, high] (``step``: a grid; ``log``: sampled on a log scale).

    Introduced in notebook 08.
    """

    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class Int:
    """A whole-number parameter in [low, high] with ``step``.

    Introduced in notebook 08.
    """

    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """A categorical parameter: one of ``values`` (numbers, strings or bools).

    Introduced in notebook 08.
    """

    values: tuple


def _check_range(name, p):
    for what in ("low", "high"):
        v = getattr(p, what)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SpaceError(f"{name}: {what} must be a finite number, got {v!r}.")
    if p.low > p.high:
        raise SpaceError(f"{name}: low {p.low} is above high {p.high}; swap them.")
    if p.log and p.low <= 0:
        raise SpaceError(f"{name}: a log-scale range needs low > 0, got {p.low}.")
    if p.step is not None:
        if p.step <= 0:
            raise SpaceError(f"{name}: step must be > 0, got {p.step}.")
        if p.log:
            raise SpaceError(f"{name}: a range has either a step or a log scale, not both.")
        n = (p.high - p.low) / p.step
        if abs(n - round(n)) > 1e-9:
            raise SpaceError(
                f"{name}: the step {p.step} does not divide high - low = {p.high - p.low:g}; "
                "choose a high on the grid low + k * step."
            )


def check(space) -> dict:
    """``space`` if it is a non-empty dict of valid parameters; else a ``SpaceError`` saying what to fix.

    Introduced in notebook 08.
    """
    if not isinstance(space, dict) or not space:
        raise SpaceError(
            "The search space is empty: give a dict {name: Float(low, high) | Int(low, high) | "
            "Choice(values) | fixed value}, e.g. {'sparsity.fc1': Float(0.8, 0.98)}."
        )
    searched = 0
    for name, p in space.items():
        if not isinstance(name, str) or not name:
            raise SpaceError(f"Parameter names are non-empty strings, got {name!r}.")
        if isinstance(p, (Float, Int)):
            _check_range(name, p)
            if isinstance(p, Int) and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in (p.low, p.high, p.step)
            ):
                raise SpaceError(f"{name}: Int needs whole-number low, high and step, got {p}.")
            searched += p.low < p.high
        elif isinstance(p, Choice):
            values = tuple(p.values)
            if not values:
                raise SpaceError(f"{name}: Choice needs at least one value.")
            if len(set(values)) != len(values):
                raise SpaceError(f"{name}: Choice lists a value twice: {values}.")
            if not all(isinstance(v, (bool, int, float, str)) for v in values):
                raise SpaceError(f"{name}: Choice values must be numbers, strings or bools, got {values}.")
            searched += len(values) > 1
        elif isinstance(p, (list, tuple, set, dict)):
            raise SpaceError(f"{name}: wrap a list of options in Choice(...), got {p!r}.")
        elif p is None:
            raise SpaceError(f"{name}: no value; give a range, a Choice or a fixed value.")
    if not searched:
        raise SpaceError("Every parameter of the space is fixed: there is nothing to search.")
    return space


def check_config(config: dict, space: dict, what: str = "The configuration to try first") -> dict:
    """``config`` if every value lies in its parameter's range or choices; else a ``SpaceError``
    naming the parameter, the value and the range (Optuna would only warn, then sample a
    different value, so the hand-tuned plan would silently not be the first trial).

    Introduced in notebook 08.
    """
    unknown = sorted(set(config) - set(space))
    if unknown:
        raise SpaceError(f"{what} names {unknown}, which are not in the space.")
    for name, value in config.items():
        p = space[name]
        if isinstance(p, (Float, Int)):
            tol = 1e-9 * max(1.0, abs(p.high))
            inside = isinstance(value, (int, float)) and p.low - tol <= value <= p.high + tol
            if inside and p.step:
                k = (value - p.low) / p.step
                inside = abs(k - round(k)) < 1e-6
            if not inside:
                grid = f" in steps of {p.step:g}" if p.step else ""
                raise SpaceError(
                    f"{what} sets {name} = {value!r}, outside the space's {p.low:g}..{p.high:g}{grid}: "
                    "widen the range in the profile so that it holds the value."
                )
        elif isinstance(p, Choice) and value not in tuple(p.values):
            raise SpaceError(
                f"{what} sets {name} = {value!r}, not one of {tuple(p.values)}: add it to the profile's choices."
            )
    return config


def suggest(trial, space: dict) -> dict:
    """One configuration: each parameter suggested by the Optuna ``trial`` (fixed values as given).

    Introduced in notebook 08.
    """
    config = {}
    for name, p in space.items():
        if isinstance(p, Float):
            config[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, Int):
            config[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, Choice):
            config[name] = trial.suggest_categorical(name, list(p.values))
        else:
            config[name] = p
    return config


def per_layer(config: dict, prefix: str) -> dict:
    """{layer: value} of the parameters named ``prefix.<layer>`` (e.g. ``per_layer(c, "sparsity")``).

    Introduced in notebook 08.
    """
    head = prefix + "."
    return {k[len(head) :]: v for k, v in config.items() if k.startswith(head)}


def check_layers(space: dict, prefix: str, layers) -> None:
    """Refuse ``prefix.<layer>`` parameters naming layers the model does not have.

    Introduced in notebook 08.
    """
    names = set(per_layer(space, prefix))
    unknown = sorted(names - set(layers))
    if unknown:
        raise SpaceError(
            f"The space names {prefix} for layers {unknown} that the model does not have; "
            f"its layers are {sorted(layers)}."
        )
