"""Self-checks for the exercises of notebook 07 (data, model and pipeline parallelism, memory)."""

from __future__ import annotations

import itertools
import numpy as np

from . import call, close, fail, one_pass_line_each, passed


def replica_loss(fn) -> None:
    """Exercise 07.1: the loss one replica returns so that the summed gradients are the global mean's."""
    rng = np.random.default_rng(7)
    losses = rng.uniform(0.1, 3.0, size=24).astype(np.float32)
    global_batch = len(losses)
    for replicas in (2, 3, 4):
        parts = np.split(losses, replicas)
        got = [float(np.asarray(call(fn, part, global_batch, name="replica_loss"))) for part in parts]
        total = sum(got)
        if abs(total - replicas * losses.mean()) < 1e-4 and replicas > 1:
            fail(
                f"with {replicas} replicas the replica losses add up to {replicas} x the global mean: "
                "each replica divided by its own batch size. The all-reduce *sums* the replicas' "
                "gradients, so divide the sum of the per-example losses by the GLOBAL batch size."
            )
        if abs(total - losses.mean()) > 1e-4:
            fail(
                f"with {replicas} replicas the replica losses add up to {total:.4f}, but they should add "
                f"up to the mean loss of the global batch, {losses.mean():.4f}: return "
                "sum(per_example_losses) / global_batch_size."
            )
        close(
            got,
            [p.sum() / global_batch for p in parts],
            f"replica losses with {replicas} replicas",
            atol=1e-5,
            hint="Each replica returns sum(its per-example losses) / global batch size.",
        )
    import tensorflow as tf

    try:
        in_graph = float(tf.function(lambda v: fn(v, global_batch))(tf.constant(parts[0])))
    except Exception as err:  # noqa: BLE001 - any failure in graph mode gets the same hint
        fail(
            "your function fails inside a tf.function (where the custom loop calls it): use "
            f"TensorFlow operations such as tf.reduce_sum, not NumPy ({type(err).__name__})."
        )
    if abs(in_graph - float(parts[0].sum()) / global_batch) > 1e-5:
        fail("inside a tf.function your function gives another value than on NumPy arrays.")
    return passed(
        "each replica divides by the global batch: the summed gradients equal the "
        "single-device gradient (this is tf.nn.compute_average_loss)."
    )


def _gpipe_reference(forward, backward):
    """GPipe's tasks on K devices: each starts when its device is free and its input is ready."""
    n_stages, n_micro = forward.shape
    free, done, tasks = [0.0] * n_stages, {}, []
    order = [("F", m, k) for m in range(n_micro) for k in range(n_stages)]
    order += [("B", m, k) for m in reversed(range(n_micro)) for k in reversed(range(n_stages))]
    for phase, m, k in order:
        if phase == "F":
            ready = done.get(("F", k - 1, m), 0.0)
        else:
            ready = done[("F", k, m)] if k == n_stages - 1 else done[("B", k + 1, m)]
        start = max(free[k], ready)
        done[phase, k, m] = free[k] = start + (forward if phase == "F" else backward)[k, m]
        tasks.append({"stage": k, "phase": phase, "micro_batch": m, "start": start, "end": free[k]})
    return tasks


def gpipe_schedule(fn) -> None:
    """Exercise 07.2: GPipe's tasks laid out on K devices from each task's duration."""

    rng = np.random.default_rng(11)
    cases = [(2, 1), (2, 4), (3, 3), (4, 2)]
    for k, m in cases:
        fwd, bwd = rng.uniform(1, 3, (k, m)), rng.uniform(2, 5, (k, m))
        got = call(fn, fwd.tolist(), bwd.tolist(), name="gpipe_schedule")
        if not isinstance(got, (list, tuple)) or not all(isinstance(t, dict) for t in got):
            fail("return a list of tasks, each a dict with stage, phase, micro_batch, start and end.")
        want = {(t["stage"], t["phase"], t["micro_batch"]): t for t in _gpipe_reference(fwd, bwd)}
        try:
            mine = {(int(t["stage"]), t["phase"], int(t["micro_batch"])): t for t in got}
        except KeyError as err:
            fail(f"every task needs the key {err}: stage, phase ('F' or 'B'), micro_batch, start, end.")
        if set(mine) != set(want):
            fail(
                f"K={k}, M={m}: expected {2 * k * m} tasks, one forward ('F') and one backward ('B') per "
                f"stage and micro-batch; got {len(got)} ({len(set(mine) & set(want))} of them right)."
            )
        for key, t in want.items():
            if abs(mine[key]["end"] - mine[key]["start"] - (t["end"] - t["start"])) > 1e-9:
                fail(
                    f"task {key} lasts {mine[key]['end'] - mine[key]['start']:.3f}; it should last its "
                    "duration from forward[k][m] or backward[k][m]."
                )
        off = [key for key, t in want.items() if abs(mine[key]["start"] - t["start"]) > 1e-9]
        if off:
            phase = "backward" if any(p == "B" for _, p, _ in off) else "forward"
            first = min(off, key=lambda key: want[key]["start"])
            fail(
                f"K={k}, M={m}: task {first} (stage, phase, micro-batch) starts at "
                f"{mine[first]['start']:.3f}, expected {want[first]['start']:.3f}. A task starts when its "
                f"device is free AND its input is ready; check the {phase} passes' order and dependencies "
                "(backwards run in reverse micro-batch order, from the last stage to the first)."
            )
    return passed(
        "every task starts when its device is free and its input is ready: GPipe's fill, "
        "steady state and drain."
    )


def micro_batches(fn) -> None:
    """Exercise 07.3: the fewest micro-batches that keep GPipe's bubble at or below a target."""
    cases = [(2, 0.1), (4, 0.1), (4, 0.25), (8, 0.05), (1, 0.01), (4, 0.6)]
    for stages, target in cases:
        expected = next(m for m in range(1, 10_000) if (stages - 1) / (m + stages - 1) <= target + 1e-12)
        got = call(fn, stages, target, name="micro_batches_for")
        if got is None or int(got) != got:
            fail(f"return a whole number of micro-batches; got {got!r} for K={stages}, bubble <= {target}.")
        if got == expected - 1 or got == expected + 1:
            fail(
                f"for K={stages} and a bubble of at most {target:.0%} you returned {got}, off by one from "
                f"{expected}: take the smallest M with (K-1)/(M+K-1) <= target and round UP."
            )
        if got != expected:
            fail(
                f"for K={stages} stages and a bubble of at most {target:.0%} the answer is {expected} "
                f"micro-batches, you returned {got}. Solve (K-1)/(M+K-1) <= b for M: "
                "M >= (K-1)(1-b)/b."
            )
    return passed("M >= (K-1)(1-b)/b: a pipeline needs several micro-batches per stage to stay busy.")


def _stage_costs(costs, boundaries):
    cuts = [0, *boundaries, len(costs)]
    return [sum(costs[a:b]) for a, b in zip(cuts, cuts[1:])]


def stage_split(fn) -> None:
    """Exercise 07.4: split consecutive layer costs into K stages so the slowest stage is as fast as possible."""
    cases = [
        ([5, 1, 1, 1, 1, 1], 2),
        ([235200, 30000, 1000], 2),
        ([3, 3, 3, 3], 4),
        ([1, 2, 3, 4, 5, 6, 7, 8], 3),
        ([9, 1, 1, 1, 9, 1, 1, 1], 3),
        ([0, 8, 4, 4, 4, 1], 3),  # a layer without weights (Flatten) costs 0
        ([3, 1, 2], 1),  # one stage: no boundaries
    ]
    for costs, k in cases:
        got = call(fn, list(costs), k, name="split_stages")
        try:
            got = [int(b) for b in got]
        except TypeError:
            fail(f"return the list of K-1 boundaries (layer indices where stages 1..K-1 start); got {got!r}.")
        if len(got) != k - 1:
            fail(f"for K={k} stages return {k - 1} boundaries, got {len(got)}: {got}.")
        if (
            got != sorted(got)
            or len(set(got)) != len(got)
            or (got and (got[0] < 1 or got[-1] > len(costs) - 1))
        ):
            fail(
                f"boundaries must increase strictly and lie in 1..{len(costs) - 1} so every stage has a "
                f"layer and the layers stay in order; got {got} for {len(costs)} layers."
            )
        best = min(
            max(_stage_costs(costs, list(c))) for c in itertools.combinations(range(1, len(costs)), k - 1)
        )
        worst = max(_stage_costs(costs, got))
        if worst > best:
            fail(
                f"for costs {costs} and K={k} your split {got} gives stage costs "
                f"{_stage_costs(costs, got)} (slowest {worst}); a split exists whose slowest stage "
                f"costs {best}. In a pipeline the slowest stage sets the pace: minimise the maximum."
            )
    return passed("the split minimises the slowest stage's cost, the pace of the whole pipeline.")


def memory_prediction(predicted_mb, widest) -> None:
    """Exercise 07.5 (predict, then measure): the MB one device holds for the widest MLP with Adam.

    ``widest``: section 7's row of the widest width (``"largest"[1]``: the bytes measured on
    one device; ``"params"``). The range must hold the measurement and be no wider than a
    factor 1.5; a range around the weights alone, or with a copy for the gradients, gets its hint.
    """
    from .nb00 import prediction_range

    low, high = prediction_range(predicted_mb, "the MB one device holds", 1.5, name="predicted_mb")
    measured, weights = widest["largest"][1] / 2**20, 4 * widest["params"] / 2**20
    if measured in (low, high):
        fail(
            "an end of your range is the measured value itself, to the last digit: that was copied from an "
            "output, not predicted. Write down what you expect before the sweep runs."
        )
    if not low <= measured <= high:
        if low <= weights <= high:
            fail(
                f"your range holds the float32 weights alone ({weights:,.1f} MB). The device also holds "
                "the optimizer's state: what does Adam keep for every weight?"
            )
        if low <= 4 * weights <= high:
            fail(
                "your range holds four copies of the weights. Gradients exist during a step, but the "
                "device's variables are the weights and the optimizer's state: count Adam's again."
            )
        side = "above" if measured > high else "below"
        fail(
            f"the measured memory is {side} your whole range. Count the parameters again (784 inputs, "
            "the blocks, the head of 10; weights and biases), then what is stored for each, in bytes."
        )
    return passed(
        f"measured {measured:,.1f} MB, inside your range [{low:,.1f}, {high:,.1f}]: the weights "
        f"({weights:,.1f} MB) and Adam's two moments, 3 x 4 bytes per parameter."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
