"""One timing core for every speed comparison in the course (notebooks 02-07).

1. **warm-up**: each task runs ``warmup`` times untimed (tracing, allocation, caches);
2. **interleaved rounds**: in each round every task is timed ``runs`` times in a row, and the
   order of the tasks rotates from round to round (A B C, B C A, C A B), so a burst of load
   or a drifting machine falls on all alike;
3. **medians**: per task and round the median (and p90) of its runs; per task the median over
   rounds, with the spread (smallest and largest round median).

``sync`` is called after each timed call, before the clock is read (on an accelerator the
call only queues work: ``gpu_sync``). The clock is injectable, so tests check the arithmetic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TaskTiming:
    """The timings of one task: every run in seconds, ``times[round][run]``.
    Introduced in notebook 02."""

    name: str
    times: list = field(default_factory=list)

    @property
    def round_medians(self) -> np.ndarray:
        return np.array([np.median(r) for r in self.times])

    @property
    def median(self) -> float:
        """Median over rounds of each round's median (seconds)."""
        return float(np.median(self.round_medians))

    @property
    def p90(self) -> float:
        """Median over rounds of each round's 90th percentile (seconds)."""
        return float(np.median([np.percentile(r, 90) for r in self.times]))

    @property
    def spread(self) -> tuple[float, float]:
        """Smallest and largest round median (seconds): how much the machine drifted."""
        return float(self.round_medians.min()), float(self.round_medians.max())


@dataclass
class Comparison:
    """The result of ``interleaved``: one ``TaskTiming`` per task, and the round orders used.
    Introduced in notebook 02."""

    tasks: dict
    orders: list
    runs: int
    warmup: int

    def __getitem__(self, name) -> TaskTiming:
        return self.tasks[name]


def rotation(names: list, round_index: int) -> list:
    """The order of the tasks in round ``round_index``: the list rotated left by that much.
    Introduced in notebook 03."""
    k = round_index % len(names) if names else 0
    return list(names[k:]) + list(names[:k])


def interleaved(tasks, rounds=3, runs=1, warmup=1, clock=time.perf_counter, sync=None, progress_desc=None):
    """Time zero-argument callables against each other, interleaved (see the module docstring).
    Introduced in notebook 03. ``tasks`` maps a name to a callable doing one unit of work."""
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
    orders = [rotation(names, r) for r in range(rounds)]
    from . import progress

    for order in progress.bar(orders, desc=progress_desc, unit="round") if progress_desc else orders:
        for name in order:
            fn, row = tasks[name], []
            for _ in range(runs):
                start = clock()
                fn()
                if sync is not None:
                    sync()
                row.append(clock() - start)
            timings[name].times.append(row)
    return Comparison(tasks=timings, orders=orders, runs=runs, warmup=warmup)


def gpu_sync() -> None:
    """Wait until every device has finished its queued work (a no-op on CPU-only machines).
    Introduced in notebook 05. Pass ``sync=timing.gpu_sync`` to ``interleaved`` for GPU ops."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        tf.test.experimental.sync_devices()


def device_sync(list_gpus=None):
    """The ``sync`` hook for timing TensorFlow ops here, decided once: None without a GPU, else
    TensorFlow's wait for all devices.
    Introduced in notebook 05. ``list_gpus`` (default: TensorFlow's logical GPUs) is for tests."""
    import tensorflow as tf

    gpus = (list_gpus or (lambda: tf.config.list_logical_devices("GPU")))()
    return tf.test.experimental.sync_devices if gpus else None
