"""GPipe run for real: one thread per stage's device, micro-batches through queues (notebook 07).

Notebook 07 writes GPipe's step task by task and lays the measured tasks out with the
learner's schedule. Where the devices are real (``pipeline_mode``: two or more real GPUs)
the stages must run at the same time instead: ``run_gpipe_concurrent`` does that, and
``check_schedule`` verifies that a run kept every GPipe dependency.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import EffcourseError


@dataclass(frozen=True)
class PipelineMode:
    """How notebook 07 runs its pipelines on a device plan: ``concurrent`` or simulated, and why.

    Introduced in notebook 07.
    """

    concurrent: bool
    reason: str

    @property
    def name(self) -> str:
        return "concurrent" if self.concurrent else "simulated"


def pipeline_mode(plan) -> PipelineMode:
    """Run the stages at once (two or more real GPUs) or lay measured tasks out (logical devices).

    Logical devices (a CPU or one GPU split up) share the same compute, so running their
    stages at once would measure contention, not the schedule.

    Introduced in notebook 07.
    """
    if plan.kind == "gpu" and not plan.logical and plan.count >= 2:
        why = f"{plan.count} real GPUs: the stages run at the same time, one thread per GPU, micro-batches "
        return PipelineMode(
            True, why + "handed on through queues; the bubble is measured in wall-clock time."
        )
    why = f"{plan.count} logical {plan.kind.upper()} devices share the same compute"
    why = "1 device: nothing runs side by side" if plan.count < 2 else why
    return PipelineMode(
        False,
        f"{why}, so running the stages at once would measure contention: this is a "
        "simulation. Every task runs for real and is timed alone, then the measured tasks "
        "are laid out as independent devices would run them.",
    )


class _Stopped(EffcourseError, RuntimeError):
    """Another stage failed: stop this one quietly (the caller raises the first error)."""


_STOP = object()  # put on every queue when a stage fails, so no other stage waits for ever


def _wait_for(tensor):
    """Wait for the device that computed ``tensor`` (fetch one number of it), not for every device."""
    import tensorflow as tf

    return tf.reshape(tensor, [-1])[:1].numpy()


def _concurrent_step(stages, forwards, x, y, micro_batches, wait):
    """One GPipe step with one thread per stage; returns (tasks, per-stage gradients, loss)."""
    import tensorflow as tf

    n, size, clock = len(stages), len(x) // micro_batches, time.perf_counter
    forward_in = [queue.Queue() for _ in range(n)]  # activations into stage k
    backward_in = [queue.Queue() for _ in range(n)]  # gradients of stage k's output
    tasks, grads, losses, errors = [], [None] * n, [0.0] * micro_batches, []
    labels = [tf.constant(y[m * size : (m + 1) * size]) for m in range(micro_batches)]
    for m in range(micro_batches):
        forward_in[0].put(tf.constant(x[m * size : (m + 1) * size]))

    def get(q):
        item = q.get()
        if item is _STOP:
            raise _Stopped
        return item

    def task(k, phase, m, start):
        tasks.append({"stage": k, "phase": phase, "micro_batch": m, "start": start, "end": clock()})

    def run(k):
        (device, model), last, saved = stages[k], k == n - 1, {}
        try:
            with tf.device(device):
                for m in range(micro_batches):
                    h, start = get(forward_in[k]), clock()
                    with tf.GradientTape() as tape:
                        tape.watch(h)
                        out = forwards[k](h, labels[m], len(x)) if last else forwards[k](h)
                    wait(out)
                    task(k, "F", m, start)
                    saved[m] = (tape, h, out)
                    if last:
                        losses[m] = float(out)
                    else:
                        forward_in[k + 1].put(out)
                for m in reversed(range(micro_batches)):
                    upstream = None if last else get(backward_in[k])
                    tape, inp, out = saved.pop(m)
                    start = clock()
                    got = tape.gradient(out, [inp, *model.trainable_variables], output_gradients=upstream)
                    wait(got[-1])
                    task(k, "B", m, start)
                    if k:
                        backward_in[k - 1].put(got[0])
                    grads[k] = got[1:] if grads[k] is None else [a + g for a, g in zip(grads[k], got[1:])]
        except _Stopped:
            return
        except BaseException as err:  # noqa: BLE001  (handed to the caller, after freeing the others)
            errors.append((k, err))
            for q in forward_in + backward_in:
                q.put(_STOP)

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    t0 = clock()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        k, err = errors[0]
        raise RuntimeError(f"pipeline stage {k} on {stages[k][0]} failed: {err}") from err
    timeline = sorted(tasks, key=lambda t: (t["start"], t["stage"]))
    for t in timeline:
        t["start"], t["end"] = t["start"] - t0, t["end"] - t0
    return timeline, grads, losses


def _bubble(timeline) -> float:
    """Idle share of a timeline: 1 - busy time / (devices x makespan)."""
    busy, devices = sum(t["end"] - t["start"] for t in timeline), 1 + max(t["stage"] for t in timeline)
    return 1.0 - busy / (devices * (max(t["end"] for t in timeline) - min(t["start"] for t in timeline)))


def run_gpipe_concurrent(stages, forwards, x, y, micro_batches, repeats=3, wait=None):
    """GPipe steps with the stages running at the same time, one thread per stage's device.

    ``stages``: ``(device, model)`` pairs; ``forwards[k]``: stage k's training forward pass
    (the last one ``(h, labels, global_batch) -> loss``). Stage k's thread takes micro-batches
    from a queue, runs its forward on its device under a GradientTape, hands the activation
    on, then runs the backward passes in reverse as the gradients arrive from stage k+1.
    Every task's start and end are read from one wall clock after its own device finished it
    (``wait``: fetch one number of the result). ``repeats`` steps after an untimed warm-up;
    the timeline is the step of median makespan, the bubble the median over steps, task
    times the medians. Weight gradients are summed over micro-batches: the full batch's.

    Introduced in notebook 07.
    """
    if len(x) % micro_batches:
        raise ValueError(f"the batch of {len(x)} does not split into {micro_batches} equal micro-batches")
    x, y, wait = np.asarray(x, np.float32), np.asarray(y, np.int32), wait or _wait_for
    steps = [_concurrent_step(stages, forwards, x, y, micro_batches, wait) for _ in range(repeats + 1)]
    steps = steps[1:]  # the first traced the graphs
    spans = [max(t["end"] for t in tl) for tl, _, _ in steps]
    timeline, grads, _ = steps[int(np.argsort(spans)[len(spans) // 2])]
    times = np.zeros((len(steps), 2, len(stages), micro_batches))
    for i, (tl, _, _) in enumerate(steps):
        for t in tl:
            times[i, "FB".index(t["phase"]), t["stage"], t["micro_batch"]] = t["end"] - t["start"]
    return {
        "timeline": timeline,
        "bubble": float(np.median([_bubble(tl) for tl, _, _ in steps])),
        "makespan_s": float(np.median(spans)),
        "forward_s": np.median(times[:, 0], axis=0),
        "backward_s": np.median(times[:, 1], axis=0),
        "mode": "concurrent",
        "gradients": [[np.asarray(g) for g in gs] for gs in grads],
    }


def check_schedule(timeline, stages: int, micro_batches: int) -> None:
    """Raise ``ValueError`` unless ``timeline`` is a GPipe schedule that kept every dependency.

    Every micro-batch passes every stage forward and backward once; a device runs one task
    at a time; forward (k, m) starts after forward (k-1, m) and (k, m-1); backward (k, m)
    after backward (k+1, m) (the last stage: its own forward of m) and (k, m+1), and after
    stage k's last forward.

    Introduced in notebook 07.
    """
    got = {(t["stage"], t["phase"], t["micro_batch"]): t for t in timeline}
    want = {(k, p, m) for k in range(stages) for p in "FB" for m in range(micro_batches)}
    if len(got) != len(timeline) or set(got) != want:
        raise ValueError(
            f"the timeline should hold each of the {len(want)} (stage, phase, micro-batch) tasks "
            f"once; missing {sorted(want - set(got))[:4]}, extra {sorted(set(got) - want)[:4]}"
        )
    for k in range(stages):
        mine = sorted((t for t in timeline if t["stage"] == k), key=lambda t: t["start"])
        for a, b in zip(mine, mine[1:]):
            if b["start"] < a["end"] - 1e-9:
                raise ValueError(f"stage {k} ran two tasks at once: {a} and {b}")
    for (k, phase, m), t in got.items():
        if phase == "F":
            before = [(k - 1, "F", m)] * (k > 0) + [(k, "F", m - 1)] * (m > 0)
        else:
            before = [(k + 1, "B", m) if k < stages - 1 else (k, "F", m)]
            before.append((k, "B", m + 1) if m < micro_batches - 1 else (k, "F", micro_batches - 1))
        for need in before:
            if t["start"] < got[need]["end"] - 1e-9:
                raise ValueError(
                    f"{phase} of micro-batch {m} on stage {k} started at {t['start']:.6f} s, before "
                    f"{need[1]} of micro-batch {need[2]} on stage {need[0]} ended "
                    f"({got[need]['end']:.6f} s)"
                )
