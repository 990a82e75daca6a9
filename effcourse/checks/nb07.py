"""Self-checks for the exercises of notebook 07 (data, multi-worker, model and pipeline parallelism)."""

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


def gpipe_schedule(fn) -> None:
    """Exercise 07.2: GPipe's tasks laid out on K devices from each task's duration."""
    from ..parallel import gpipe_timeline

    rng = np.random.default_rng(11)
    cases = [(2, 1), (2, 4), (3, 3), (4, 2)]
    for k, m in cases:
        fwd, bwd = rng.uniform(1, 3, (k, m)), rng.uniform(2, 5, (k, m))
        got = call(fn, fwd.tolist(), bwd.tolist(), name="gpipe_schedule")
        if not isinstance(got, (list, tuple)) or not all(isinstance(t, dict) for t in got):
            fail("return a list of tasks, each a dict with stage, phase, micro_batch, start and end.")
        want = {(t["stage"], t["phase"], t["micro_batch"]): t for t in gpipe_timeline(fwd, bwd)}
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
    from .. import parallel

    cases = [(2, 0.1), (4, 0.1), (4, 0.25), (8, 0.05), (1, 0.01), (4, 0.6)]
    for stages, target in cases:
        expected = next(m for m in range(1, 10_000) if parallel.bubble_formula(stages, m) <= target + 1e-12)
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


_MB = 1024 * 1024


def _width(width, accuracy, one, two, four):
    """A made-up row of ``parallel.memory_sweep``: the fullest device's MB for K = 1, 2, 4."""
    return {"width": width, "accuracy": accuracy, "largest": {1: one * _MB, 2: two * _MB, 4: four * _MB}}


def _fewest(row, budget, devices):
    fits = [k for k, b in row["largest"].items() if k <= devices and b <= budget]
    return min(fits) if fits else None


def choose_width(fn) -> None:
    """Exercise 07.5 (a judgement): which width to train on ``devices`` devices of ``budget_bytes`` each.

    The best test accuracy among the widths whose fullest device fits the budget with at
    most ``devices`` devices; among equally accurate ones, the one needing fewer devices
    (then the smaller); None when nothing fits. Made-up tables, so that an answer read off
    the notebook's own table (a hard-coded width) cannot pass.
    """
    table = [_width(64, 0.90, 1, 0.6, 0.6), _width(512, 0.95, 14, 8, 5), _width(1024, 0.96, 45, 24, 12)]
    tie = [_width(128, 0.93, 2, 1.2, 1), _width(256, 0.95, 4, 2.5, 2), _width(512, 0.95, 14, 8, 5)]
    cases = [  # (widths, budget in MB, devices, what the case is about)
        (table, 10, 1, "one device"),
        (table, 10, 2, "two devices"),
        (table, 10, 4, "four devices, the widest still too big"),
        (table, 13, 4, "a larger budget"),
        (table, 0.5, 4, "a budget nothing fits"),
        (tie, 10, 4, "two equally accurate widths"),
        (list(reversed(table)), 10, 2, "the same widths in another order"),
    ]
    answers = []
    for widths, budget, devices, _ in cases:
        got = call(fn, [dict(w) for w in widths], budget * _MB, devices, name="choose_width")
        if isinstance(got, (list, tuple, set, dict)):
            fail(f"return ONE width (an int), or None when nothing fits; got {got!r}.")
        answers.append(got)
    if len({repr(a) for a in answers}) == 1:
        fail(
            f"choose_width returned {answers[0]!r} for every table, budget and device count: the choice "
            "has to be computed from its arguments, not typed in."
        )
    for (widths, budget, devices, about), got in zip(cases, answers):
        by_width = {w["width"]: w for w in widths}
        fitting = [w for w in widths if _fewest(w, budget * _MB, devices) is not None]
        if not fitting:
            if got is not None:
                fail(
                    f"with {devices} devices of {budget:g} MB ({about}) no width fits, yet you chose {got!r}: "
                    "return None when nothing fits."
                )
            continue
        if got is None or got not in by_width:
            fail(f"({about}) return one of the widths in the table, got {got!r}.")
        need = _fewest(by_width[got], budget * _MB, devices)
        if need is None:
            fail(
                f"with {devices} device(s) of {budget:g} MB ({about}) width {got} does not fit: its fullest "
                "device holds more than the budget under every split with at most that many devices."
            )
        best = max(w["accuracy"] for w in fitting)
        if by_width[got]["accuracy"] < best:
            fail(
                f"({about}) width {got} fits, but a more accurate width fits too: among the widths that fit, "
                "take the most accurate."
            )
        rivals = [w for w in fitting if w["accuracy"] == best]
        if len(rivals) > 1:
            cheapest = min((_fewest(w, budget * _MB, devices), w["width"]) for w in rivals)
            if (need, got) != cheapest:
                fail(
                    f"({about}) several widths are equally accurate and you chose {got}, which needs {need} "
                    "device(s): break the tie by the fewest devices (a split costs a pipeline bubble and "
                    "transfers), then the smaller width."
                )
    return passed(
        "the most accurate width that fits the budget on the devices you have: more devices, "
        "a wider model, and no more devices than it needs."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
