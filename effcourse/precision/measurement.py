"""Models trained side by side with interleaved timing, and single operations per dtype (notebook 05).

Both time on ``effcourse.timing.interleaved``: rounds in rotating order and medians, so that
a burst of load on a shared machine falls on every variant alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class SideBySide:
    """Per-step losses and per-chunk seconds (round 0, the warm-up, first) of models trained side by side.

    Introduced in notebook 05.
    """

    chunk: int
    losses: dict  # name -> list of per-step losses
    chunk_seconds: dict  # name -> seconds of each chunk, scaled to a full chunk

    def step_ms(self) -> dict:
        """Median milliseconds per step of each model, warm-up round left out."""
        return {
            n: 1000 * float(np.median(np.asarray(s[1:] or s) / self.chunk))
            for n, s in self.chunk_seconds.items()
        }

    def ratios(self, reference: str) -> dict:
        """Median over rounds of (this model's chunk time / the reference's in the same round)."""
        ref = np.asarray(self.chunk_seconds[reference])
        return {
            n: float(np.median((np.asarray(s) / ref)[1:] if len(s) > 1 else np.asarray(s) / ref))
            for n, s in self.chunk_seconds.items()
        }


def train_side_by_side(
    runs: dict,
    x,
    y,
    steps: int,
    chunk: int,
    batch_size: int = 128,
    seed: int = 0,
    on_chunk=None,
    desc: str = "training side by side",
    clock=time.perf_counter,
) -> SideBySide:
    """Train compiled models on the same batches, in interleaved timed chunks of steps.

    Every model sees the same batches (fixed shuffles of (x, y), one after the other). In
    each round every model runs ``chunk`` steps of ``train_on_batch``, the order rotating
    from round to round (``timing.interleaved``, one timed run per round); round 0 traces
    the training function. A short last chunk is scaled to a full one. ``on_chunk(name,
    model, step)`` runs after each chunk, off the clock. One progress bar counts every step.

    Introduced in notebook 05.
    """
    from .. import progress, timing

    if steps < 1 or chunk < 1:
        raise ValueError(f"steps and chunk must be >= 1, got steps={steps}, chunk={chunk}.")
    uncompiled = [name for name, model in runs.items() if model.optimizer is None]
    if uncompiled:
        raise ValueError(f"{uncompiled} not compiled: call model.compile(optimizer, loss, metrics) first.")
    x, y = np.asarray(x), np.asarray(y)
    rng, per_epoch = np.random.default_rng(seed), max(1, len(x) // batch_size)
    order = np.concatenate(
        [rng.permutation(len(x))[: per_epoch * batch_size] for _ in range(int(np.ceil(steps / per_epoch)))]
    )
    losses, done, paused = {n: [] for n in runs}, {n: 0 for n in runs}, [0.0]
    bar = progress.bar(total=steps * len(runs), desc=desc, unit="step")

    def run_chunk(name):
        first, last = done[name], min(steps, done[name] + chunk)
        for step in range(first, last):
            idx = order[step * batch_size : (step + 1) * batch_size]
            out = runs[name].train_on_batch(x[idx], y[idx])
            losses[name].append(float(out[0] if isinstance(out, (list, tuple)) else out))
        done[name] = last
        bar.update(last - first)
        if on_chunk is not None:
            t0 = clock()
            on_chunk(name, runs[name], last)
            paused[0] += clock() - t0

    rounds = int(np.ceil(steps / chunk))
    timed = timing.interleaved(
        {n: (lambda n=n: run_chunk(n)) for n in runs},
        rounds=rounds,
        runs=1,
        warmup=0,
        clock=lambda: clock() - paused[0],
    )
    bar.close()
    lengths = [min(steps, (r + 1) * chunk) - r * chunk for r in range(rounds)]
    seconds = {n: [row[0] * chunk / k for row, k in zip(timed[n].times, lengths)] for n in runs}
    return SideBySide(chunk=chunk, losses=losses, chunk_seconds=seconds)


def _op_functions(dtype: str, b: int) -> dict:
    """The CNN's second convolution (3x3, 32->64 on 13x13 maps) and dense layer (1600->64), forward
    and backward, on random tensors in ``dtype``. A convolution's two gradients are two operations,
    each with its own kernel per dtype (on some CPUs only one of them is slow in float16)."""
    import tensorflow as tf

    def rand(*shape):
        return tf.cast(tf.random.uniform(shape), dtype)

    x, w, dy = rand(b, 13, 13, 32), rand(3, 3, 32, 64), rand(b, 11, 11, 64)
    a, k, da = rand(b, 1600), rand(1600, 64), rand(b, 64)
    back = dict(strides=[1, 1, 1, 1], padding="VALID", out_backprop=dy)
    return {
        "conv2d 3x3 32->64, forward": lambda: tf.nn.conv2d(x, w, 1, "VALID"),
        "conv2d backward, input gradient": lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, **back
        ),
        "conv2d backward, filter gradient": lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), **back
        ),
        "dense 1600->64, forward": lambda: tf.matmul(a, k),
        "dense backward (input and weight gradients)": lambda: (
            tf.matmul(da, k, transpose_b=True),
            tf.matmul(a, da, transpose_a=True),
        ),
    }


def time_ops(
    dtypes=("float32", "float16", "bfloat16"),
    batch_size: int = 128,
    rounds: int = 3,
    runs: int = 2,
    desc: str | None = "timing rounds",
    clock=time.perf_counter,
):
    """Time the CNN's heaviest operations, forward and backward, in each dtype, interleaved.

    Every (operation, dtype) is a ``tf.function``, warmed up once, then timed ``runs`` times
    per round for ``rounds`` rounds (``timing.interleaved``; on a GPU the clock waits for the
    device). Returns a table indexed by (operation, dtype): the median ``ms`` and ``time /
    float32``, the median over rounds of the ratio of the two round medians (same round, same load).

    Introduced in notebook 05.
    """
    import pandas as pd
    import tensorflow as tf

    from .. import timing

    tasks = {(op, d): tf.function(f) for d in dtypes for op, f in _op_functions(d, batch_size).items()}
    timed = timing.interleaved(
        tasks, rounds=rounds, runs=runs, warmup=1, clock=clock, progress_desc=desc, sync=timing.device_sync()
    )
    rows = [
        {
            "operation": op,
            "dtype": d,
            "ms": 1000 * t.median,
            f"time / {dtypes[0]}": float(np.median(t.round_medians / timed[(op, dtypes[0])].round_medians)),
        }
        for (op, d), t in timed.tasks.items()
    ]
    return pd.DataFrame(rows).set_index(["operation", "dtype"]).sort_index(level=0, sort_remaining=False)
