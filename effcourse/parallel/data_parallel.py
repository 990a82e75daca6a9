"""Data parallelism with ``tf.distribute.MirroredStrategy`` (notebook 07).

Notebook 07 shows the strategy, a distributed dataset, ``strategy.run`` and the gradient
check in plain cells. Here: ``mirrored`` (a strategy with its own collective keys),
``distribute_batch`` (arrays in memory split over the replicas), ``train_step`` (the
custom-loop step) and ``scaling``, which times that step per replica count on the course's
one timing core (``effcourse.timing.interleaved``).
"""

from __future__ import annotations

import time

import numpy as np

from .. import timing
from .local_devices import devices

_KEY_STRIDE = 100_000


def mirrored(n_replicas: int | None = None):
    """A ``MirroredStrategy`` over the first ``n_replicas`` of ``devices()``.

    TensorFlow's default all-reduce here is a collective (ring on CPUs, NCCL on GPUs), and
    every ``MirroredStrategy`` numbers its collective groups from 1: a second strategy over
    a different number of devices in the same process then fails with "Device .. is
    joining a group with size 4, but that group has size 2". Each strategy made here gets
    its own key range, as TensorFlow's own tests do (``_collective_key_base`` in
    tensorflow/python/distribute/strategy_combinations.py).

    Introduced in notebook 07.
    """
    import tensorflow as tf

    cls = tf.distribute.MirroredStrategy
    if hasattr(cls, "_collective_key_base"):  # a TF-internal class attribute; absent: no-op
        cls._collective_key_base += _KEY_STRIDE
    return cls(devices(n_replicas))


def per_replica_batch(global_batch: int, replicas: int) -> int:
    """The batch each replica sees; an error unless the global batch divides evenly.

    Introduced in notebook 07.
    """
    for name, value in (("global_batch", global_batch), ("replicas", replicas)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if global_batch % replicas:
        lower = global_batch - global_batch % replicas
        raise ValueError(
            f"The global batch {global_batch} does not split evenly over {replicas} replicas: "
            f"choose a multiple of {replicas}, e.g. {lower or replicas} or {lower + replicas}, so "
            "that every replica does the same work and the averaged gradient is exact."
        )
    return global_batch // replicas


def _per_example_loss(labels, logits):
    import tf_keras

    return tf_keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def replica_gradients(model, x, y, global_batch: int, training: bool):
    """On one replica: the loss sum(per-example losses) / global batch and its gradients.

    Dividing by the *global* batch (``tf.nn.compute_average_loss``), not the replica's
    own, makes the sum of the replicas' gradients the gradient of the global batch's mean.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        per_example = _per_example_loss(y, model(x, training=training))
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
    return loss, tape.gradient(loss, model.trainable_variables)


def train_step(strategy, model, optimizer, global_batch: int):
    """A ``tf.function`` data-parallel SGD step for a custom loop with ``strategy.run``.

    Each replica scales its loss by the *global* batch (``tf.nn.compute_average_loss``);
    ``optimizer.apply_gradients`` inside the replica all-reduces (sums) the gradients, so
    every replica applies the same update. Call it with a distributed batch; it returns the
    mean loss of the global batch.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    per_replica_batch(global_batch, strategy.num_replicas_in_sync)

    @tf.function
    def step(xb, yb):
        def replica_fn(xr, yr):
            loss, grads = replica_gradients(model, xr, yr, global_batch, training=True)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        losses = strategy.run(replica_fn, args=(xb, yb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step


def distribute_batch(strategy, x, y):
    """One global batch ``(x, y)`` split over the strategy's replicas, as ``(x, y)`` per replica.

    Replica r gets the r-th contiguous shard, on its own device, as
    ``strategy.experimental_distribute_dataset`` would give it; built directly from the
    arrays (``experimental_distribute_values_from_function``), without a dataset iterator,
    whose clean-up can take seconds on a busy machine.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    local = per_replica_batch(len(x), strategy.num_replicas_in_sync)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)

    def shard(array):
        def value_fn(ctx):
            r = ctx.replica_id_in_sync_group
            with tf.device(strategy.extended.worker_devices[r]):
                return tf.identity(array[r * local : (r + 1) * local])

        return strategy.experimental_distribute_values_from_function(value_fn)

    return shard(x), shard(y)


def scaling(
    build_model,
    replica_counts,
    x,
    y,
    steps: int = 10,
    repeats: int = 3,
    warmup: int = 2,
    learning_rate: float = 0.05,
    desc: str = "timing replica counts",
    clock=time.perf_counter,
) -> list[dict]:
    """Training throughput (samples/s) for each replica count, interleaved, medians.

    ``build_model()`` returns a fresh tf_keras model; one copy is built under a
    ``MirroredStrategy`` for each count in ``replica_counts`` and takes ``warmup`` untimed
    steps (tracing). The global batch is ``len(x)`` for every count (the per-replica batch
    shrinks as replicas grow), fed from memory, so the time is compute plus all-reduce, not
    input. Timing is ``effcourse.timing.interleaved``: one task per count, a chunk of
    ``steps`` steps, then the last loss is fetched (which waits for the steps) and, on GPUs,
    every device is synchronised (``timing.gpu_sync``) before the clock is read; ``repeats``
    rounds with the order rotating, because a shared machine's speed drifts. The rows
    (``scaling_rows``) give samples/s from the median chunk time, and the slowest and
    fastest round. A progress bar (``desc``) counts the rounds; ``clock`` is injectable.

    Introduced in notebook 07.
    """
    import tf_keras

    if steps < 1 or repeats < 1:
        raise ValueError("steps and repeats must be >= 1")
    replica_counts = list(replica_counts)
    global_batch = len(x)
    tasks, last_loss = {}, {}
    for n in replica_counts:
        per_replica_batch(global_batch, n)
        strategy = mirrored(n)
        with strategy.scope():
            model = build_model()
            optimizer = tf_keras.optimizers.SGD(learning_rate)
        step = train_step(strategy, model, optimizer, global_batch)
        batch = distribute_batch(strategy, x, y)
        for _ in range(warmup):
            step(*batch)

        def chunk(step=step, batch=batch):
            for _ in range(steps):
                last_loss["value"] = step(*batch)

        tasks[n] = chunk
    comparison = timing.interleaved(
        tasks,
        rounds=repeats,
        runs=1,
        warmup=0,
        clock=clock,
        sync=lambda: (float(last_loss["value"]), timing.gpu_sync()),  # wait for all
        progress_desc=desc,
    )
    return scaling_rows(comparison, replica_counts, global_batch, steps)


def scaling_rows(comparison, replica_counts, global_batch: int, steps: int) -> list[dict]:
    """One row per replica count from a ``timing.Comparison`` of chunks of ``steps`` steps.

    ``samples_per_s`` is steps x global batch / the median chunk time (``samples_per_s_min``
    and ``_max`` from the slowest and fastest round); ``speedup`` is relative to the first
    count, and ``efficiency`` is the speed-up divided by the growth in replicas.

    Introduced in notebook 07.
    """
    replica_counts = list(replica_counts)
    samples = steps * global_batch
    base = samples / comparison[replica_counts[0]].median
    rows = []
    for n in replica_counts:
        t = comparison[n]
        fastest, slowest = t.spread
        med = samples / t.median
        rows.append(
            {
                "replicas": n,
                "global_batch": global_batch,
                "per_replica_batch": global_batch // n,
                "samples_per_s": med,
                "samples_per_s_min": samples / slowest,
                "samples_per_s_max": samples / fastest,
                "speedup": med / base,
                "efficiency": med / base / (n / replica_counts[0]),
                "repeats": len(t.times),
                "steps": steps,
            }
        )
    return rows


SCALING_COLUMNS = {
    "model": "model",
    "replicas": "replicas",
    "per_replica_batch": "per-replica batch",
    "samples_per_s": "throughput (samples/s)",
    "samples_per_s_min": "slowest round (samples/s)",
    "samples_per_s_max": "fastest round (samples/s)",
    "speedup": "speed-up (x)",
    "efficiency": "efficiency",
}


def scaling_frame(rows):
    """``scaling`` rows (each with a ``model`` key) as notebook 07's table, people's column names.

    Returns ``(raw, shown)``: the rows as a DataFrame with every ``scaling_rows`` column,
    and the renamed columns for display. No rows give empty tables with the same columns.

    Introduced in notebook 07.
    """
    import pandas as pd

    raw = pd.DataFrame(list(rows), columns=[*SCALING_COLUMNS, "global_batch", "repeats", "steps"])
    return raw, raw[list(SCALING_COLUMNS)].rename(columns=SCALING_COLUMNS)


def decimals(value, digits: int = 2) -> str:
    """A tiny number written out in decimals (``digits`` significant), never in e-notation.

    ``""`` for a missing value (None or NaN).

    Introduced in notebook 07.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    if np.isnan(value):
        return ""
    return np.format_float_positional(value, precision=digits, unique=False, fractional=False, trim="-")
