"""One timing core for every speed comparison in the course (notebooks 02-07).

Measuring speed on a laptop or a shared machine is noisy: other programs take the CPU in
bursts, caches warm up, the clock ticks coarsely. Every comparison in the course is timed
the same way, here:

1. **warm-up**: each task runs ``warmup`` times untimed (tracing, allocation, caches);
2. **interleaved rounds**: in each of ``rounds`` rounds every task is timed ``runs`` times
   in a row, and the order of the tasks rotates from round to round (A B C, B C A, C A B),
   so a burst of load, or a machine that speeds up or slows down, falls on all alike;
3. **medians**: per task and round, the median (and 90th percentile) of its runs; per task,
   the median over rounds of those, with the spread (smallest and largest round median).

``sync`` is called after each timed call, before the clock is read: on an accelerator the
call only queues work, and the clock must wait for it (``gpu_sync``). The clock itself is
injectable, so the tests check the arithmetic exactly with a fake one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np


@dataclass
class TaskTiming:
    """The timings of one task: every run in seconds, ``times[round][run]``.

    Introduced in notebook 02.
    """

    name: str
    times: list = field(default_factory=list)

    @property
    def round_medians(self) -> np.ndarray:
        return np.array([np.median(r) for r in self.times])

    @property
    def round_p90s(self) -> np.ndarray:
        return np.array([np.percentile(r, 90) for r in self.times])

    @property
    def median(self) -> float:
        """Median over rounds of each round's median (seconds)."""
        return float(np.median(self.round_medians))

    @property
    def p90(self) -> float:
        """Median over rounds of each round's 90th percentile (seconds)."""
        return float(np.median(self.round_p90s))

    @property
    def spread(self) -> tuple[float, float]:
        """Smallest and largest round median (seconds): how much the machine drifted."""
        med = self.round_medians
        return float(med.min()), float(med.max())


@dataclass
class Comparison:
    """The result of ``interleaved``: one ``TaskTiming`` per task, and the round orders used.

    Introduced in notebook 02.
    """

    tasks: dict
    orders: list
    runs: int
    warmup: int

    def __getitem__(self, name) -> TaskTiming:
        return self.tasks[name]

    def ratio(self, name, baseline) -> float:
        """Median time of ``name`` divided by that of ``baseline`` (above 1: ``name`` is slower)."""
        return self.tasks[name].median / self.tasks[baseline].median

    def speedup(self, name, baseline) -> float:
        """How many times faster ``name`` runs than ``baseline`` (baseline median / name median)."""
        return self.tasks[baseline].median / self.tasks[name].median

    def table(self, unit: str = "ms", baseline=None):
        """A DataFrame, one row per task: median, p90, spread (in ``unit``), rounds, runs."""
        import pandas as pd

        scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
        rows = {}
        for name, t in self.tasks.items():
            lo, hi = t.spread
            row = {
                f"median ({unit})": t.median * scale,
                f"p90 ({unit})": t.p90 * scale,
                f"fastest round ({unit})": lo * scale,
                f"slowest round ({unit})": hi * scale,
                "rounds": len(t.times),
                "runs per round": self.runs,
            }
            if baseline is not None:
                row[f"speed-up vs {baseline}"] = self.speedup(name, baseline)
            rows[name] = row
        return pd.DataFrame.from_dict(rows, orient="index")


def rotation(names: list, round_index: int) -> list:
    """The order of the tasks in round ``round_index``: the list rotated left by that much.

    Introduced in notebook 03.
    """
    k = round_index % len(names) if names else 0
    return list(names[k:]) + list(names[:k])


def interleaved(
    tasks: dict,
    rounds: int = 3,
    runs: int = 1,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], object] | None = None,
    rotate: bool = True,
    progress_desc: str | None = None,
) -> Comparison:
    """Time zero-argument callables against each other, interleaved (see the module docstring).

    Introduced in notebook 03. ``tasks`` maps a name to a callable doing one unit of work (one
    inference, one chunk of training steps). Returns a ``Comparison``.
    """
    if not tasks:
        raise ValueError("interleaved needs at least one task: {name: callable}.")
    for name, fn in tasks.items():
        if not callable(fn):
            raise TypeError(f"task {name!r} must be a callable taking no arguments, got {type(fn).__name__}")
    for what, value, least in (("rounds", rounds, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{what} must be a whole number >= {least}, got {value!r}")
    names = list(tasks)
    for name in names:
        for _ in range(warmup):
            tasks[name]()
        if sync is not None and warmup:
            sync()
    timings = {name: TaskTiming(name) for name in names}
    orders = []
    bar = None
    if progress_desc:
        from . import progress

        bar = progress.bar(total=rounds, desc=progress_desc, unit="round")
    for r in range(rounds):
        order = rotation(names, r) if rotate else list(names)
        orders.append(order)
        for name in order:
            fn, row = tasks[name], []
            for _ in range(runs):
                start = clock()
                fn()
                if sync is not None:
                    sync()
                row.append(clock() - start)
            timings[name].times.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Comparison(tasks=timings, orders=orders, runs=runs, warmup=warmup)


def gpu_sync() -> None:
    """Wait until every device has finished its queued work (a no-op on CPU-only machines).

    TensorFlow runs GPU kernels asynchronously: a Python call returns when the work is
    queued, not done, so a clock read right after it measures the launch. Pass
    ``sync=timing.gpu_sync`` to ``interleaved`` when timing TensorFlow ops on a GPU.

    Introduced in notebook 05.
    """
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        tf.test.experimental.sync_devices()


def device_sync(list_gpus=None):
    """The ``sync`` hook for timing TensorFlow ops on this machine, decided once: None where
    TensorFlow has no GPU (nothing to wait for, and no cost inside the timed region), else
    TensorFlow's wait for all devices.

    Introduced in notebook 05. ``list_gpus`` (default: TensorFlow's logical GPUs) lets the
    tests decide for a fake machine.
    """
    import tensorflow as tf

    gpus = (list_gpus or (lambda: tf.config.list_logical_devices("GPU")))()
    return tf.test.experimental.sync_devices if gpus else None
