"""Pipeline parallelism: GPipe's schedule, measured task by task, and its bubble (notebook 07).

``run_gpipe`` pushes micro-batches through the stages in GPipe's order, timing every task,
and ``gpipe_timeline`` lays the measured tasks out as K independent devices would run
them, which gives the bubble to compare with (K-1)/(M+K-1) (``bubble_formula``) and with
the slowest stage's pace (``bubble_bottleneck``). Notebook 07 draws the Gantt chart of a
timeline, laid out by the learner's own schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import EffcourseError
from .data_parallel import _per_example_loss, per_replica_batch
from .model_parallel import forward_across


def bubble_formula(stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction (K-1)/(M+K-1) for K balanced stages and M micro-batches.

    Introduced in notebook 07.
    """
    if stages < 1 or micro_batches < 1:
        raise ValueError("stages and micro_batches must be >= 1")
    return (stages - 1) / (micro_batches + stages - 1)


def bubble_bottleneck(stage_times, micro_batches: int) -> float:
    """The bubble predicted when stages differ: the slowest stage sets the pace.

    With t_k the time of stage k per micro-batch (forward + backward), a GPipe step takes
    about sum(t) + (M-1) max(t), while the devices are busy M sum(t) in total, so the
    bubble is 1 - M sum(t) / (K (sum(t) + (M-1) max(t))). Equal stages give (K-1)/(M+K-1).

    Introduced in notebook 07.
    """
    t = np.asarray(stage_times, dtype=float)
    if t.ndim != 1 or not len(t) or np.any(t <= 0) or micro_batches < 1:
        raise ValueError("stage_times must be positive, one per stage, and micro_batches >= 1")
    span = t.sum() + (micro_batches - 1) * t.max()
    return float(1.0 - micro_batches * t.sum() / (len(t) * span))


def gpipe_timeline(forward, backward=None) -> list[dict]:
    """Lay out GPipe tasks on K devices given each task's duration; return the timeline.

    ``forward[k][m]`` (and ``backward[k][m]``) are the seconds stage k takes for
    micro-batch m. Each device runs one task at a time: all forwards in micro-batch order,
    then all backwards in reverse order. A forward needs the previous stage's forward of the
    same micro-batch; a backward needs the next stage's backward of it (the last stage's
    backward needs its own forward). Tasks start as soon as both their device and their
    input are ready. Each entry: stage, phase ("F"/"B"), micro_batch, start, end.

    Introduced in notebook 07.
    """
    forward = [list(row) for row in forward]
    n_stages, n_micro = len(forward), len(forward[0]) if forward else 0
    if not n_stages or not n_micro or any(len(r) != n_micro for r in forward):
        raise ValueError("forward must be a K x M table of durations (K, M >= 1)")
    if backward is not None and [len(r) for r in backward] != [n_micro] * n_stages:
        raise ValueError("backward must have the same K x M shape as forward")
    free = [0.0] * n_stages
    f_end, b_end, tasks = {}, {}, []
    for m in range(n_micro):
        for k in range(n_stages):
            start = max(free[k], f_end.get((k - 1, m), 0.0))
            f_end[k, m] = free[k] = start + float(forward[k][m])
            tasks.append({"stage": k, "phase": "F", "micro_batch": m, "start": start, "end": free[k]})
    if backward is not None:
        for m in reversed(range(n_micro)):
            for k in reversed(range(n_stages)):
                ready = f_end[k, m] if k == n_stages - 1 else b_end[k + 1, m]
                start = max(free[k], ready)
                b_end[k, m] = free[k] = start + float(backward[k][m])
                tasks.append({"stage": k, "phase": "B", "micro_batch": m, "start": start, "end": free[k]})
    return tasks


def bubble(timeline) -> float:
    """Idle fraction of a timeline: 1 - busy time / (devices x makespan).

    Introduced in notebook 07.
    """
    if not timeline:
        raise ValueError("empty timeline")
    n_stages = 1 + max(t["stage"] for t in timeline)
    span = max(t["end"] for t in timeline) - min(t["start"] for t in timeline)
    busy = sum(t["end"] - t["start"] for t in timeline)
    return 1.0 - busy / (n_stages * span)


def _sync():
    """Wait for the devices before reading the clock: ``effcourse.timing.gpu_sync`` (a no-op without GPUs)."""
    from .. import timing

    timing.gpu_sync()


def run_gpipe(
    stages, x, y, micro_batches: int, repeats: int = 3, input_gradient: bool = True, clock: str | None = None
) -> dict:
    """One GPipe training step through the stages, every task timed; bubble from the timeline.

    The global batch ``(x, y)`` is cut into ``micro_batches`` equal micro-batches. Every
    forward task (stage k, micro-batch m) runs stage k's layers (a ``tf.function``) on its
    device under a GradientTape; the last stage adds the loss sum(per-example
    cross-entropy) / global batch. Then every backward task runs, in reverse, passing the
    gradient of the activation back a stage. Weight gradients are summed over
    micro-batches (GPipe's synchronous update), so they equal the full-batch gradient.

    The tasks run one after another here, each timed; the step runs ``repeats`` times
    after one untimed warm-up and every task's median time is used. ``gpipe_timeline``
    then places the tasks as K independent devices would run them: logical CPU devices
    share the same cores, so running them at once would measure core contention, not the
    schedule. ``input_gradient`` also computes the gradient of the first stage's input,
    which nothing needs, so that identical stages do identical work (the formula's
    assumption); without it the first stage is lighter and idles more.

    ``clock``: "cpu" (default on CPUs) times a task by the CPU seconds this process spent
    on it, which other programs on a shared machine do not inflate; "wall" (default with
    GPUs, whose kernels the process does not spend CPU on) uses wall-clock time after a
    device sync. Returns the timeline, bubble, formula, the bottleneck prediction
    (``bubble_bottleneck``), median task times and the gradients.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    n_stages = len(stages)
    if n_stages < 1:
        raise ValueError("give at least one stage")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int32)
    micro = per_replica_batch(len(x), micro_batches)
    scale = tf.constant(float(len(x)))
    clock_name = clock or ("wall" if tf.config.list_logical_devices("GPU") else "cpu")
    if clock_name not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    fwd = np.zeros((repeats + 1, n_stages, micro_batches))
    bwd = np.zeros((repeats + 1, n_stages, micro_batches))
    for r in range(repeats + 1):  # round 0 warms up (traces the graphs) and is not used
        grads = [[None] * len(s.model.trainable_variables) for s in stages]
        saved, loss_total = {}, 0.0
        for m in range(micro_batches):
            h = tf.constant(x[m * micro : (m + 1) * micro])
            labels = tf.constant(y[m * micro : (m + 1) * micro])
            for k, stage in enumerate(stages):
                last = k == n_stages - 1
                with tf.device(stage.device):
                    start = clock()
                    with tf.GradientTape() as tape:
                        if k or input_gradient:
                            tape.watch(h)
                        out = stage.graph(last)(h, labels, scale) if last else stage.graph(False)(h)
                    _sync()
                    fwd[r, k, m] = clock() - start
                saved[k, m] = (tape, h, out)
                h = out
            loss_total += float(h)
        for m in reversed(range(micro_batches)):
            upstream = None
            for k in reversed(range(n_stages)):
                tape, inp, out = saved.pop((k, m))
                sources = list(stages[k].model.trainable_variables)
                if k or input_gradient:
                    sources = [inp] + sources
                with tf.device(stages[k].device):
                    start = clock()
                    got = tape.gradient(out, sources, output_gradients=upstream)
                    _sync()
                    bwd[r, k, m] = clock() - start
                if k or input_gradient:
                    upstream, got = got[0], got[1:]
                grads[k] = [g if acc is None else acc + g for acc, g in zip(grads[k], got)]
    fwd_med, bwd_med = np.median(fwd[1:], axis=0), np.median(bwd[1:], axis=0)
    timeline = gpipe_timeline(fwd_med, bwd_med)
    return _run_summary(
        x,
        micro,
        fwd_med,
        bwd_med,
        timeline,
        grads,
        loss_total,
        repeats,
        measured=bubble(timeline),
        makespan=max(t["end"] for t in timeline),
        clock=clock_name,
        mode="simulated",
        floor=0.0,
    )


def _run_summary(
    x, micro, fwd_med, bwd_med, timeline, grads, loss, repeats, *, measured, makespan, clock, mode, floor
):
    """The result dictionary both GPipe runners return (one layout, so the sweep and the
    charts read either); ``floor`` keeps stage times positive for the bottleneck bound."""
    n_stages, micro_batches = fwd_med.shape
    formula = bubble_formula(n_stages, micro_batches)
    stage_times = (fwd_med + bwd_med).mean(axis=1)
    return {
        "stages": n_stages,
        "micro_batches": micro_batches,
        "micro_batch_size": micro,
        "global_batch": len(x),
        "bubble": measured,
        "bubble_formula": formula,
        "bubble_bottleneck": bubble_bottleneck(
            np.maximum(stage_times, floor) if floor else stage_times, micro_batches
        ),
        "stage_times_s": stage_times,
        "clock": clock,
        "mode": mode,
        "relative_error": abs(measured - formula) / formula if formula else abs(measured),
        "makespan_s": makespan,
        "sequential_s": float(fwd_med.sum() + bwd_med.sum()),
        "forward_s": fwd_med,
        "backward_s": bwd_med,
        "timeline": timeline,
        "loss": loss,
        "gradients": [[np.asarray(g) for g in gs] for gs in grads],
        "repeats": repeats,
    }


def compare_gradients(got, expected, atol: float = 1e-6) -> dict:
    """How far two lists of gradient arrays (or lists of lists, per stage) differ.

    Returns the largest absolute difference, the largest gradient, and how many of all the
    entries differ by more than ``atol``: in a ReLU network a pre-activation within
    round-off of zero can switch on in one computation and not in the other, which changes
    that unit's gradient entries by a real amount while every other entry agrees.

    Introduced in notebook 07.
    """

    def flat(arrays):
        out = []
        for a in arrays:
            out.extend(flat(a) if isinstance(a, (list, tuple)) else [np.asarray(a, dtype=np.float64)])
        return out

    got, expected = flat(got), flat(expected)
    if [a.shape for a in got] != [b.shape for b in expected]:
        raise ValueError("the two gradient lists have different shapes")
    diffs = [np.abs(a - b) for a, b in zip(got, expected)]
    return {
        "max_abs_diff": float(max(d.max() for d in diffs)),
        "max_abs_grad": float(max(np.abs(b).max() for b in expected)),
        "entries": int(sum(d.size for d in diffs)),
        "entries_off": int(sum(int((d > atol).sum()) for d in diffs)),
    }


def full_batch_gradients(stages, x, y) -> list:
    """The gradient of the mean loss over the whole batch, per stage, without micro-batches.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    variables = [s.model.trainable_variables for s in stages]
    with tf.GradientTape() as tape:
        logits, _ = forward_across(stages, np.asarray(x, np.float32), training=True)
        loss = tf.reduce_mean(_per_example_loss(np.asarray(y), logits))
    flat = tape.gradient(loss, [v for vs in variables for v in vs])
    out, i = [], 0
    for vs in variables:
        out.append([np.asarray(g) for g in flat[i : i + len(vs)]])
        i += len(vs)
    return out


def gpipe_sweep(
    x,
    y,
    stage_counts,
    micro_batches,
    repeats: int = 3,
    device_list=None,
    atol: float = 1e-6,
    desc: str = "GPipe (K, M) runs",
    concurrent: bool = False,
) -> dict:
    """``run_gpipe`` for every (K stages, M micro-batches), each checked against the full batch.

    For each K a ``balanced_mlp(K)`` (seeded with K) is split one block per stage over the
    first K of ``device_list`` (default ``devices(K)``); its full-batch gradient is the
    reference for every M. Returns ``{(K, M): run}``, each ``run_gpipe`` result with
    ``"agreement"``: ``compare_gradients(run gradients, reference, atol)`` and its ``atol``. A progress bar
    (``desc``) counts the runs. ``concurrent`` (``pipeline_mode(plan).concurrent``) runs each
    step with one thread per device (``run_gpipe_concurrent``) instead of ``run_gpipe``'s
    task-by-task measurement.

    Introduced in notebook 07.
    """
    from .. import env, progress
    from .local_devices import devices
    from .model_parallel import balanced_mlp, split_sequential

    stage_counts, micro_batches = list(stage_counts), list(micro_batches)
    runs = {}
    shown = progress.bar(total=len(stage_counts) * len(micro_batches), desc=desc, unit="run")
    for k in stage_counts:
        env.seed_everything(k)
        mlp = balanced_mlp(k)
        placed = list(device_list[:k]) if device_list is not None else devices(k)
        stages = split_sequential(mlp, boundaries=list(range(2, k + 1)), device_list=placed)
        reference = full_batch_gradients(stages, x, y)
        for m in micro_batches:
            runner = run_gpipe_concurrent if concurrent else run_gpipe
            run = runner(stages, x, y, micro_batches=m, repeats=repeats)
            run["agreement"] = {**compare_gradients(run["gradients"], reference, atol=atol), "atol": atol}
            runs[k, m] = run
            shown.update(1)
    shown.close()
    return runs


def gpipe_table(runs):
    """The runs of ``gpipe_sweep`` as the table notebook 07 shows: bubbles, balance, speed-up, gradients.

    No runs give an empty table with the same columns (never a KeyError downstream).

    Introduced in notebook 07.
    """
    import pandas as pd

    rows = []
    columns = [
        "K stages",
        "M micro-batches",
        "rows per micro-batch",
        "bubble measured",
        "(K-1)/(M+K-1)",
        "bottleneck prediction",
        "slowest / mean stage (x)",
        "speed-up over 1 device (x)",
    ]
    for (k, m), run in runs.items():
        agree = run["agreement"]
        off = f"gradient entries off by > {np.format_float_positional(agree['atol'], trim='-')}"
        rows.append(
            {
                "K stages": k,
                "M micro-batches": m,
                "rows per micro-batch": run["micro_batch_size"],
                "bubble measured": run["bubble"],
                "(K-1)/(M+K-1)": run["bubble_formula"],
                "bottleneck prediction": run["bubble_bottleneck"],
                "slowest / mean stage (x)": run["stage_times_s"].max() / run["stage_times_s"].mean(),
                "speed-up over 1 device (x)": run["sequential_s"] / run["makespan_s"],
                off: f"{agree['entries_off']:,} of {agree['entries']:,}",
            }
        )
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)  # no runs: the columns, no KeyError


# --- the same schedule run for real, one thread per device -----------------------------------


@dataclass(frozen=True)
class PipelineMode:
    """How notebook 07 runs its pipelines on a device plan: ``concurrent`` or not, and why.

    Introduced in notebook 07.
    """

    concurrent: bool
    reason: str

    @property
    def name(self) -> str:
        return "concurrent" if self.concurrent else "simulated"


def pipeline_mode(plan) -> PipelineMode:
    """Run the stages at once (two or more real devices) or lay measured tasks out (logical devices).

    ``plan`` is a ``device_plan``: with two or more real GPUs every stage gets its own thread
    and device (``run_gpipe_concurrent``) and the bubble is the wall-clock one of that run;
    logical devices (a CPU or one GPU split up) share the same compute, so running them at once
    would measure their contention: there ``run_gpipe`` times every task alone and
    ``gpipe_timeline`` lays the tasks out as independent devices would run them.

    Introduced in notebook 07.
    """
    if plan.kind == "gpu" and not plan.logical and plan.count >= 2:
        return PipelineMode(
            True,
            f"{plan.count} real GPUs: the stages run at the same time, one thread per GPU, micro-batches "
            "handed on through queues; the bubble is measured in wall-clock time on that run.",
        )
    if plan.count < 2:
        why = "1 device: nothing runs side by side"
    elif plan.kind == "gpu":
        why = f"{plan.count} logical GPUs share one GPU's compute"
    else:
        why = f"{plan.count} logical CPU devices share the same cores"
    return PipelineMode(
        False,
        f"{why}, so running the stages at once would measure contention: this is a simulation. Every task "
        "runs for real and is timed alone, then the measured tasks are laid out as independent devices "
        "would run them.",
    )


_STOP = object()  # put on every queue when a stage fails, so no other stage waits for ever


def _wait_for(tensor):
    """Wait for the device that computed ``tensor`` (fetch one number of it), not for every device."""
    import tensorflow as tf

    return tf.reshape(tensor, [-1])[:1].numpy()


def _concurrent_step(stages, x, y, micro_batches, input_gradient, clock, wait):
    """One GPipe step with one thread per stage; returns (tasks, per-stage gradients, loss, t0)."""
    import queue
    import threading

    import tensorflow as tf

    n, micro = len(stages), len(x) // micro_batches
    scale = tf.constant(float(len(x)))
    forward_in = [queue.Queue() for _ in range(n)]  # activations into stage k
    backward_in = [queue.Queue() for _ in range(n)]  # gradients of stage k's output
    tasks, grads, losses, errors = [[] for _ in range(n)], [None] * n, [0.0] * micro_batches, []
    labels = [tf.constant(y[m * micro : (m + 1) * micro]) for m in range(micro_batches)]
    for m in range(micro_batches):
        forward_in[0].put(tf.constant(x[m * micro : (m + 1) * micro]))

    def get(q):
        item = q.get()
        if item is _STOP:
            raise _Stopped
        return item

    def run(k):
        stage, last = stages[k], k == n - 1
        saved, acc = {}, None
        try:
            with tf.device(stage.device):
                for m in range(micro_batches):
                    h = get(forward_in[k])
                    start = clock()
                    with tf.GradientTape() as tape:
                        if k or input_gradient:
                            tape.watch(h)
                        out = stage.graph(True)(h, labels[m], scale) if last else stage.graph(False)(h)
                    wait(out)
                    tasks[k].append(
                        {"stage": k, "phase": "F", "micro_batch": m, "start": start, "end": clock()}
                    )
                    saved[m] = (tape, h, out)
                    if last:
                        losses[m] = float(out)
                    else:
                        forward_in[k + 1].put(out)
                for m in reversed(range(micro_batches)):
                    upstream = None if last else get(backward_in[k])
                    tape, inp, out = saved.pop(m)
                    sources = list(stage.model.trainable_variables)
                    if k or input_gradient:
                        sources = [inp] + sources
                    start = clock()
                    got = tape.gradient(out, sources, output_gradients=upstream)
                    wait(got[-1])
                    tasks[k].append(
                        {"stage": k, "phase": "B", "micro_batch": m, "start": start, "end": clock()}
                    )
                    if k or input_gradient:
                        down, got = got[0], got[1:]
                        if k:
                            backward_in[k - 1].put(down)
                    acc = list(got) if acc is None else [a + g for a, g in zip(acc, got)]
            grads[k] = acc
        except _Stopped:
            return
        except BaseException as err:  # noqa: BLE001  (handed to the caller, after freeing the others)
            errors.append((k, err))
            for q in forward_in + backward_in:
                q.put(_STOP)

    threads = [
        threading.Thread(target=run, args=(k,), name=f"pipeline-stage-{k}", daemon=True) for k in range(n)
    ]
    t0 = clock()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        k, err = errors[0]
        raise RuntimeError(f"pipeline stage {k} on {stages[k].device} failed: {err}") from err
    timeline = sorted((t for ts in tasks for t in ts), key=lambda t: (t["start"], t["stage"]))
    for t in timeline:
        t["start"] -= t0
        t["end"] -= t0
    return timeline, grads, float(sum(losses))


class _Stopped(EffcourseError, RuntimeError):
    """Another stage failed: stop this one quietly (the caller raises the first error)."""


def check_schedule(timeline, stages: int, micro_batches: int) -> None:
    """Raise ``ValueError`` unless ``timeline`` is a GPipe schedule that respects every dependency.

    Every micro-batch passes every stage forward and backward exactly once; a device runs
    one task at a time; forward (k, m) starts after forward (k-1, m) and forward (k, m-1)
    ended; backward (k, m) after backward (k+1, m) (the last stage: after its own forward
    of m) and after backward (k, m+1), and after stage k's last forward.

    Introduced in notebook 07.
    """
    got = {(t["stage"], t["phase"], t["micro_batch"]): t for t in timeline}
    want = {(k, p, m) for k in range(stages) for p in "FB" for m in range(micro_batches)}
    if len(got) != len(timeline) or set(got) != want:
        raise ValueError(
            f"the timeline should hold each of the {len(want)} (stage, phase, micro-batch) tasks once; "
            f"missing {sorted(want - set(got))[:4]}, extra {sorted(set(got) - want)[:4]}"
        )
    eps = 1e-9
    for k in range(stages):
        mine = sorted((t for t in timeline if t["stage"] == k), key=lambda t: t["start"])
        for a, b in zip(mine, mine[1:]):
            if b["start"] < a["end"] - eps:
                raise ValueError(f"stage {k} ran two tasks at once: {a} and {b}")
    for (k, phase, m), t in got.items():
        before = []
        if phase == "F":
            before += [(k - 1, "F", m)] if k else []
            before += [(k, "F", m - 1)] if m else []
        else:
            before.append((k + 1, "B", m) if k < stages - 1 else (k, "F", m))
            before += [(k, "B", m + 1)] if m < micro_batches - 1 else [(k, "F", micro_batches - 1)]
        for need in before:
            if t["start"] < got[need]["end"] - eps:
                raise ValueError(
                    f"{phase} of micro-batch {m} on stage {k} started at {t['start']:.6f} s, before "
                    f"{need[1]} of micro-batch {need[2]} on stage {need[0]} ended ({got[need]['end']:.6f} s)"
                )


def run_gpipe_concurrent(
    stages, x, y, micro_batches: int, repeats: int = 3, input_gradient: bool = True, clock=None, wait=None
) -> dict:
    """One GPipe step with the stages running at the same time, one thread per stage's device.

    Stage k's thread takes micro-batches from a queue, runs its forward pass (on its
    device, under a GradientTape), hands the activation to stage k+1's queue, and after its
    last forward runs the backward passes in reverse order as the gradients arrive from
    stage k+1. Every task's start and end are read from one wall clock (``clock``, default
    ``time.perf_counter``) after its own device has finished it (``wait``, default: fetch one
    number of the result, which waits for that device only). The step runs ``repeats``
    times after an untimed warm-up; the Gantt timeline is the step of median makespan, the
    bubble the median over steps. Weight gradients are summed over micro-batches in the
    same order as ``run_gpipe``, so they equal its (and the full batch's) gradients.

    Device-agnostic: on logical devices (the tests, or this notebook's demonstration) it
    runs and keeps the schedule, but the devices share the same compute, so the times
    include their contention. Returns the keys of ``run_gpipe`` plus ``"mode": "concurrent"``.

    Introduced in notebook 07.
    """
    if len(stages) < 1:
        raise ValueError("give at least one stage")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int32)
    micro = per_replica_batch(len(x), micro_batches)
    clock = clock or time.perf_counter
    wait = wait or _wait_for
    n_stages = len(stages)
    steps = [
        _concurrent_step(stages, x, y, micro_batches, input_gradient, clock, wait) for _ in range(repeats + 1)
    ]
    steps = steps[1:]  # the first traced the graphs
    spans = [max(t["end"] for t in tl) for tl, _, _ in steps]
    timeline, grads, loss = steps[int(np.argsort(spans)[len(spans) // 2])]
    durations = np.zeros((len(steps), 2, n_stages, micro_batches))
    for i, (tl, _, _) in enumerate(steps):
        for t in tl:
            durations[i, "FB".index(t["phase"]), t["stage"], t["micro_batch"]] = t["end"] - t["start"]
    fwd_med, bwd_med = np.median(durations[:, 0], axis=0), np.median(durations[:, 1], axis=0)
    return _run_summary(
        x,
        micro,
        fwd_med,
        bwd_med,
        timeline,
        grads,
        loss,
        repeats,
        measured=float(np.median([bubble(tl) for tl, _, _ in steps])),
        makespan=float(np.median(spans)),
        clock="wall",
        mode="concurrent",
        floor=1e-12,
    )
