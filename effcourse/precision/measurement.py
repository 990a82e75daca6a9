"""Measurement: activation memory, and models trained side by side with interleaved timing (notebook 05).

``activation_memory`` sums the bytes of the activation tensors of a forward pass;
``train_side_by_side`` trains several models on the same batches in interleaved chunks
timed by ``effcourse.timing.interleaved`` (fair timing on a shared machine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..models import check_model


def activation_memory(model, x, training: bool = False):
    """Bytes of each layer's output tensor for the batch ``x``, measured from the tensors.

    Runs one forward pass through a probe model that returns every layer's output and
    reads each tensor's dtype and shape: these are the activations a training step keeps
    for the backward pass. Sum the ``bytes`` column for the total per batch.

    Introduced in notebook 05.
    """
    import pandas as pd
    import tf_keras

    check_model(model, what="activation_memory")
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    probe = tf_keras.Model(model.inputs, [layer.output for layer in layers])
    outs = probe(x, training=training)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    rows = [
        {
            "layer": layer.name,
            "dtype": t.dtype.name,
            "shape": tuple(t.shape),
            "bytes": int(np.prod(t.shape)) * t.dtype.size,
        }
        for layer, t in zip(layers, outs)
    ]
    return pd.DataFrame(rows, columns=["layer", "dtype", "shape", "bytes"])


@dataclass
class SideBySide:
    """Per-step losses and per-chunk timings of models trained in interleaved chunks.

    Introduced in notebook 05.
    """

    names: list
    chunk: int
    losses: dict = field(default_factory=dict)  # name -> list of per-step losses
    chunk_seconds: dict = field(default_factory=dict)  # name -> seconds of each chunk (round 0 = warm-up)

    def step_ms(self) -> dict:
        """Median milliseconds per step of each model, warm-up round left out."""
        return {
            n: 1000 * float(np.median(np.asarray(s[1:] or s) / self.chunk))
            for n, s in self.chunk_seconds.items()
        }

    def ratios(self, reference: str) -> dict:
        """Median over rounds of (this model's chunk time / the reference's in the same round)."""
        if reference not in self.chunk_seconds:
            raise KeyError(f"{reference!r} was not trained; have {self.names}")
        ref = np.asarray(self.chunk_seconds[reference])
        out = {}
        for n, s in self.chunk_seconds.items():
            r = np.asarray(s) / ref
            out[n] = float(np.median(r[1:] if len(r) > 1 else r))
        return out


def _batch_order(n: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of ``steps`` batches: fixed shuffles of range(n), one after the other."""
    rng = np.random.default_rng(seed)
    per_epoch = max(1, n // batch_size)
    return np.concatenate(
        [rng.permutation(n)[: per_epoch * batch_size] for _ in range(int(np.ceil(steps / per_epoch)))]
    )


def _check_runs(runs: dict, what: str) -> None:
    if not runs:
        raise ValueError(f"{what} needs at least one model: {{name: compiled model}}.")
    for name, model in runs.items():
        check_model(model, need_graph=False, what=what)
        if model.optimizer is None:
            raise ValueError(f"Model {name!r} is not compiled: use precision.compile_mixed(model, policy).")


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
    """Train compiled models on the same batches, interleaving chunks of steps for fair timing.

    Every model sees the same sequence of batches (a fixed shuffle of (x, y), repeated as
    needed). Training goes in rounds (``effcourse.timing.interleaved``, one timed run per
    round): in each round every model runs ``chunk`` steps with ``train_on_batch``, the
    order of the models rotating from round to round, and each chunk is timed. On a machine
    shared with other work, timing chunk by chunk, in alternation, and taking medians keeps
    a burst of load from falling on one variant only. Round 0 also traces the training
    function: it is left out of the timings. A short last chunk is scaled to a full chunk.
    ``on_chunk(name, model, step)`` is called after each chunk (e.g. to collect gradients);
    its time is kept off the clock. A progress bar (``desc``) counts the training steps of
    all the models together. ``clock`` is injectable for tests.

    Introduced in notebook 05.
    """
    from .. import progress, timing

    _check_runs(runs, "train_side_by_side")
    if steps < 1 or chunk < 1:
        raise ValueError(f"steps and chunk must be >= 1, got steps={steps}, chunk={chunk}.")
    x, y = np.asarray(x), np.asarray(y)
    order = _batch_order(len(x), steps, batch_size, seed)
    names = list(runs)
    result = SideBySide(
        names=names, chunk=chunk, losses={n: [] for n in names}, chunk_seconds={n: [] for n in names}
    )
    rounds = int(np.ceil(steps / chunk))
    done = {n: 0 for n in names}  # steps each model has run
    paused = [0.0]  # seconds spent in on_chunk: subtracted from the clock
    bar = progress.bar(total=steps * len(names), desc=desc, unit="step")

    def run_chunk(name):
        model, first = runs[name], done[name]
        last = min(steps, first + chunk)
        for step in range(first, last):
            idx = order[step * batch_size : (step + 1) * batch_size]
            out = model.train_on_batch(x[idx], y[idx])
            result.losses[name].append(float(out[0] if isinstance(out, (list, tuple)) else out))
        done[name] = last
        bar.update(last - first)
        if on_chunk is not None:
            t0 = clock()
            on_chunk(name, model, last)
            paused[0] += clock() - t0

    tasks = {n: (lambda n=n: run_chunk(n)) for n in names}
    timed = timing.interleaved(tasks, rounds=rounds, runs=1, warmup=0, clock=lambda: clock() - paused[0])
    bar.close()
    lengths = [min(steps, (r + 1) * chunk) - r * chunk for r in range(rounds)]
    for n in names:
        # Time per full chunk so that a short last chunk is comparable.
        result.chunk_seconds[n] = [row[0] * chunk / k for row, k in zip(timed[n].times, lengths)]
    return result


def probe_step_times(
    runs: dict,
    x,
    y,
    batch_size: int = 128,
    rounds: int = 2,
    warmup: int = 1,
    desc: str | None = None,
    clock=time.perf_counter,
):
    """Time one training step of each compiled model, interleaved: a probe before a long run.

    Each model runs ``warmup`` untimed steps (tracing), then one timed ``train_on_batch`` on
    the first batch of (x, y) per round, the order rotating (``effcourse.timing.interleaved``).
    The models are trained by it: pass copies you can throw away. Returns the
    ``timing.Comparison``; ``[name].median`` is the seconds per step.

    Introduced in notebook 05.
    """
    from .. import timing

    _check_runs(runs, "probe_step_times")
    xb, yb = np.asarray(x[:batch_size]), np.asarray(y[:batch_size])
    tasks = {n: (lambda m=m: m.train_on_batch(xb, yb)) for n, m in runs.items()}
    return timing.interleaved(tasks, rounds=rounds, runs=1, warmup=warmup, clock=clock, progress_desc=desc)


@dataclass
class SideBySidePlan:
    """How many steps every model trains side by side, and why (``plan_side_by_side``).

    Introduced in notebook 05.
    """

    steps: int  # steps every model trains
    chunk: int  # steps per timed chunk
    requested: int  # what the profile asked for
    budget_s: float  # seconds the whole side-by-side training may take
    min_steps: int
    step_seconds: dict  # name -> measured seconds per step
    reference: str

    @property
    def seconds_per_step(self) -> float:
        """Seconds one step of every model takes together."""
        return float(sum(self.step_seconds.values()))

    @property
    def expected_s(self) -> float:
        """Expected seconds of the side-by-side training."""
        return self.steps * self.seconds_per_step

    @property
    def slowest(self) -> str:
        return max(self.step_seconds, key=self.step_seconds.get)

    def ratio(self, name: str) -> float:
        """Measured step time of ``name`` over the reference's."""
        return self.step_seconds[name] / self.step_seconds[self.reference]

    def explain(self) -> str:
        """What was decided and why, in two sentences."""
        slow, ref = self.slowest, self.reference
        speed = (
            f"No model is slower than {ref} here ({1000 * self.step_seconds[slow]:.0f} ms per step at most in the probe)."
            if self.ratio(slow) <= 1.05
            else f"{slow} takes {self.ratio(slow):.1f}x {ref}'s step time here "
            f"({1000 * self.step_seconds[slow]:.0f} ms against {1000 * self.step_seconds[ref]:.0f} ms per step "
            "in the probe)."
        )
        fits = "within" if self.expected_s <= self.budget_s else "over"
        cost = f"at the probed step times about {_duration(self.expected_s)}, {fits} the budget of {_duration(self.budget_s)}"
        if self.steps == self.requested:
            return f"{speed} Every model trains the {self.steps} steps the profile asks for: {cost}."
        floor = f" ({self.steps} steps is the stated minimum)" if fits == "over" else ""
        return f"{speed} Every model trains {self.steps} steps instead of {self.requested}: {cost}{floor}."


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def plan_side_by_side(
    step_seconds: dict,
    train_steps: int,
    budget_s: float,
    chunk: int,
    min_steps: int = 4,
    min_rounds: int = 2,
    reference: str = "float32",
) -> SideBySidePlan:
    """The number of steps every model can train side by side within ``budget_s`` seconds.

    ``step_seconds`` maps each model to its probed seconds per step (``probe_step_times``).
    All models train the same number of steps K: the most that fit the budget with every
    model running each step, ``floor(budget_s / sum(step_seconds))``, never more than
    ``train_steps`` and never fewer than ``min_steps`` (nor than ``train_steps`` if that is
    smaller). The chunk shrinks so that there are at least ``min_rounds`` rounds (round 0
    traces, and is left out of the timings).

    Introduced in notebook 05.
    """
    for what, v in (
        ("train_steps", train_steps),
        ("chunk", chunk),
        ("min_steps", min_steps),
        ("min_rounds", min_rounds),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what} must be a whole number >= 1, got {v!r}")
    if not (isinstance(budget_s, (int, float, np.integer, np.floating)) and budget_s > 0):
        raise ValueError(f"budget_s must be a number of seconds > 0, got {budget_s!r}")
    if reference not in step_seconds:
        raise KeyError(f"the reference {reference!r} has no step time; have {sorted(step_seconds)}")
    if any(not (s > 0) for s in step_seconds.values()):
        raise ValueError(f"step times must be > 0 seconds, got {step_seconds}")
    per_step = float(sum(step_seconds.values()))
    affordable = int(np.floor(budget_s / per_step))
    steps = int(min(train_steps, max(min_steps, affordable)))
    chunk = int(min(chunk, max(1, steps // min_rounds)))
    return SideBySidePlan(
        steps=steps,
        chunk=chunk,
        requested=int(train_steps),
        budget_s=float(budget_s),
        min_steps=int(min_steps),
        step_seconds={k: float(v) for k, v in step_seconds.items()},
        reference=reference,
    )


def op_functions(dtype: str, batch_size: int = 128) -> dict:
    """The CNN's second convolution and its dense layer, forward and backward, in one dtype.

    The convolution's two gradients are separate operations (each has its own kernel per
    dtype, and on some CPUs only one of them is slow in float16).

    Zero-argument callables (not yet ``tf.function``) on random tensors shaped like the
    course CNN's activations: conv2d 3x3 32->64 on 13x13 maps and dense 1600->64.

    Introduced in notebook 05.
    """
    import tensorflow as tf

    b = batch_size

    def rand(*shape):
        return tf.cast(tf.random.uniform(shape), dtype)

    x, w, dy = rand(b, 13, 13, 32), rand(3, 3, 32, 64), rand(b, 11, 11, 64)
    a, k, da = rand(b, 1600), rand(1600, 64), rand(b, 64)
    conv_back = dict(strides=[1, 1, 1, 1], padding="VALID", out_backprop=dy)
    return {
        "conv2d 3x3 32->64, forward": lambda: tf.nn.conv2d(x, w, 1, "VALID"),
        "conv2d backward, input gradient": lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, **conv_back
        ),
        "conv2d backward, filter gradient": lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), **conv_back
        ),
        "dense 1600->64, forward": lambda: tf.matmul(a, k),
        "dense backward (input and weight gradients)": lambda: (
            tf.matmul(da, k, transpose_b=True),
            tf.matmul(a, da, transpose_a=True),
        ),
    }


def op_table(timed, reference: str = "float32"):
    """A ``timing.Comparison`` over (operation, dtype) tasks as a table against ``reference``.

    Per row: the median time in ms, and "time / float32", the median over rounds of the
    ratio of the two round medians (the same round, so the same machine load).

    Introduced in notebook 05.
    """
    import pandas as pd

    rows = []
    for (op, dtype), t in timed.tasks.items():
        ref = timed.tasks[(op, reference)].round_medians
        rows.append(
            {
                "operation": op,
                "dtype": dtype,
                "ms": 1000 * t.median,
                f"time / {reference}": float(np.median(t.round_medians / ref)),
            }
        )
    return pd.DataFrame(rows).set_index(["operation", "dtype"]).sort_index(level=0, sort_remaining=False)


def time_ops(
    dtypes=("float32", "float16", "bfloat16"),
    batch_size: int = 128,
    rounds: int = 3,
    runs: int = 2,
    desc: str | None = "timing rounds",
    clock=time.perf_counter,
):
    """Time the CNN's heaviest operations, forward and backward, in each dtype, interleaved.

    Every (operation, dtype) of ``op_functions`` is a ``tf.function``, warmed up once, then
    timed ``runs`` times per round for ``rounds`` rounds in rotating order
    (``effcourse.timing.interleaved``); on a GPU the clock waits for the device
    (``timing.device_sync``). Returns ``op_table`` of the result.

    Introduced in notebook 05.
    """
    import tensorflow as tf

    from .. import timing

    tasks = {(op, d): tf.function(f) for d in dtypes for op, f in op_functions(d, batch_size).items()}
    timed = timing.interleaved(
        tasks, rounds=rounds, runs=runs, warmup=1, clock=clock, progress_desc=desc, sync=timing.device_sync()
    )  # on a GPU, wait for the op, not its launch
    return op_table(timed, reference=dtypes[0])
