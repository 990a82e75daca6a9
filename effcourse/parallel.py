"""Data, multi-worker, model and pipeline parallelism on ``tf.distribute`` (notebook 07).

Thin, honest wrappers over TensorFlow's own distribution engine:

* **Devices.** ``devices()`` returns the real GPUs if there are any, else the logical CPU
  devices made by ``effcourse.setup(logical_cpus=N)``: the same code runs on a laptop, in
  CI and on a multi-GPU host. Logical CPUs share the same cores, so they show that the
  code is right, never that it is fast.
* **Data parallelism** with ``tf.distribute.MirroredStrategy``: ``gradient_equivalence``
  proves that the gradient all-reduced over replicas equals the single-device gradient of
  the global batch; ``scaling`` measures samples per second against the replica count.
* **Multi-worker** ``MultiWorkerMirroredStrategy``: ``launch_workers`` starts worker
  processes on 127.0.0.1 (free ports, one ``TF_CONFIG`` each, a timeout, every output
  collected, every process stopped whatever happens); ``run_multi_worker`` runs the
  course's worker script, ``python -m effcourse._mw_worker``, the same script a real
  cluster runs with one ``TF_CONFIG`` per host (``cluster_commands``).
* **Model and pipeline parallelism**: ``split_sequential`` places consecutive layers on
  different devices; ``run_gpipe`` pushes micro-batches through the stages in GPipe's
  order, timing every task, and ``gpipe_timeline`` lays the measured tasks out as K
  independent devices would run them, which gives the bubble to compare with
  (K-1)/(M+K-1).
"""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import env, progress, quiet

LOOPBACK = "127.0.0.1"
WORKER_MODULE = "effcourse._mw_worker"
RESULT_PREFIX = "EFFCOURSE_RESULT "
STEP_PREFIX = "EFFCOURSE_STEP "  # a worker's progress line: steps done so far


# --- devices -----------------------------------------------------------------------------

def devices(n: int | None = None) -> list[str]:
    """The devices to parallelise over: real GPUs if present, else logical CPUs (notebook 07).

    ``n`` asks for exactly that many (the first ``n``); too few is a clear error saying how
    to get more (``effcourse.setup(logical_cpus=n)`` in a fresh kernel).
    """
    import tensorflow as tf

    found = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not found:
        found = [d.name for d in tf.config.list_logical_devices("CPU")]
    if n is None:
        return found
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if n > len(found):
        kind = "GPUs" if "GPU" in found[0] else "logical CPU devices"
        raise ValueError(
            f"Asked for {n} devices but this process has {len(found)} {kind}. Restart the kernel "
            f"and call effcourse.setup(logical_cpus={n}) first (it must run before any "
            "TensorFlow op), or ask for fewer.")
    return found[: int(n)]


def hardware() -> dict:
    """What the parallel measurements ran on: CPU, cores, GPUs and the devices used (notebook 07)."""
    rep = env.hardware_report()
    devs = devices()
    return {"cpu": rep["cpu"], "physical_cores": rep["cpu_count"], "gpus": len(rep["gpus"]),
            "device_kind": "GPU" if rep["gpus"] else "logical CPU",
            "devices": len(devs), "tensorflow": rep["tensorflow"]}


def hardware_line() -> str:
    """``hardware()`` as one printable line (notebook 07)."""
    h = hardware()
    return (f"{h['cpu']} | {h['physical_cores']} cores | GPUs: {h['gpus']} | "
            f"{h['devices']} {h['device_kind']} devices | TensorFlow {h['tensorflow']}")


# --- data parallelism --------------------------------------------------------------------

_KEY_STRIDE = 100_000


def mirrored(n_replicas: int | None = None):
    """A ``MirroredStrategy`` over the first ``n_replicas`` of ``devices()`` (notebook 07).

    TensorFlow's default all-reduce here is a collective (ring on CPUs, NCCL on GPUs), and
    every ``MirroredStrategy`` numbers its collective groups from 1: a second strategy over
    a different number of devices in the same process then fails with "Device ... is
    joining a group with size 4, but that group has size 2". Each strategy made here gets
    its own key range, as TensorFlow's own tests do (``_collective_key_base`` in
    tensorflow/python/distribute/strategy_combinations.py).
    """
    import tensorflow as tf

    cls = tf.distribute.MirroredStrategy
    if hasattr(cls, "_collective_key_base"):  # a TF-internal class attribute; absent: no-op
        cls._collective_key_base += _KEY_STRIDE
    return cls(devices(n_replicas))


def per_replica_batch(global_batch: int, replicas: int) -> int:
    """The batch each replica sees; an error unless the global batch divides evenly (notebook 07)."""
    for name, value in (("global_batch", global_batch), ("replicas", replicas)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if global_batch % replicas:
        lower = global_batch - global_batch % replicas
        raise ValueError(
            f"The global batch {global_batch} does not split evenly over {replicas} replicas: "
            f"choose a multiple of {replicas}, e.g. {lower or replicas} or {lower + replicas}, so "
            "that every replica does the same work and the averaged gradient is exact.")
    return global_batch // replicas


def scaled_learning_rate(base_lr: float, base_batch: int, global_batch: int) -> float:
    """The linear scaling rule: lr = base_lr * global_batch / base_batch (Goyal et al. 2017; notebook 07)."""
    if base_lr <= 0 or base_batch < 1 or global_batch < 1:
        raise ValueError("base_lr must be > 0 and the batch sizes >= 1")
    return base_lr * global_batch / base_batch


def allreduce_bytes(n_params: int, replicas: int, bytes_per_value: int = 4) -> dict:
    """Bytes a data-parallel step all-reduces, from the parameter count (notebook 07).

    ``gradient_bytes``: one full gradient (params x 4 bytes in float32), what every replica
    contributes and receives each step. ``ring_bytes_per_replica``: what each replica sends
    with a ring all-reduce, 2 (N-1)/N x gradient_bytes (reduce-scatter, then all-gather).
    """
    if isinstance(n_params, bool) or not isinstance(n_params, (int, np.integer)) or n_params < 0:
        raise ValueError(f"n_params must be an int >= 0, got {n_params!r}")
    per_replica_batch(replicas, 1)  # validates replicas
    grad = int(n_params) * bytes_per_value
    return {"gradient_bytes": grad,
            "ring_bytes_per_replica": 2 * (replicas - 1) / replicas * grad,
            "ring_bytes_total": 2 * (replicas - 1) * grad}


def _per_example_loss(labels, logits):
    import tf_keras

    return tf_keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _to_numpy_list(values):
    return [np.asarray(v) for v in values]


def replica_gradients(model, x, y, global_batch: int, training: bool):
    """On one replica: the loss sum(per-example losses) / global batch and its gradients (notebook 07).

    Dividing by the *global* batch (``tf.nn.compute_average_loss``), not the replica's
    own, makes the sum of the replicas' gradients the gradient of the global batch's mean.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        per_example = _per_example_loss(y, model(x, training=training))
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
    return loss, tape.gradient(loss, model.trainable_variables)


def gradient_equivalence(model, x, y, strategy=None) -> dict:
    """Compare the gradient all-reduced over replicas with the single-device gradient (notebook 07).

    The global batch ``(x, y)`` is split evenly over the strategy's replicas; each replica
    computes the gradient of ``sum(its per-example losses) / global_batch`` and the
    all-reduce sums them. That must equal the gradient of the mean loss over the whole
    batch on one device. Returns the maximum absolute difference (and the scale of the
    gradient) together with the replica count, batch sizes and all-reduced bytes.
    """
    import tensorflow as tf

    from . import models

    models.check_model(model, what="gradient_equivalence")
    strategy = strategy or mirrored()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths ({len(x)} and {len(y)})")
    replicas = strategy.num_replicas_in_sync
    local = per_replica_batch(len(x), replicas)
    global_batch = len(x)

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(_per_example_loss(y, model(x, training=False)))
    single = _to_numpy_list(tape.gradient(loss, model.trainable_variables))

    with strategy.scope():
        replica_model = models.clone(model, compile_like=False)
    xb, yb = distribute_batch(strategy, x, y)

    @tf.function
    def distributed_gradient(xb, yb):
        def replica_fn(xr, yr):
            _, grads = replica_gradients(replica_model, xr, yr, global_batch, training=False)
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, grads)

        return strategy.run(replica_fn, args=(xb, yb))

    reduced = distributed_gradient(xb, yb)
    per_replica = [[np.asarray(v) for v in strategy.experimental_local_results(g)] for g in reduced]
    averaged = [copies[0] for copies in per_replica]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(averaged, single))
    spread = max(float(np.max(np.abs(c - copies[0]))) for copies in per_replica for c in copies)
    n_params = int(sum(v.size for v in single))
    return {"replicas": replicas, "global_batch": global_batch, "per_replica_batch": local,
            "max_abs_diff": diff, "max_abs_grad": max(float(np.max(np.abs(g))) for g in single),
            "replica_disagreement": spread, "n_params": n_params,
            **allreduce_bytes(n_params, replicas)}


def train_step(strategy, model, optimizer, global_batch: int):
    """A ``tf.function`` data-parallel SGD step for a custom loop with ``strategy.run`` (notebook 07).

    Each replica scales its loss by the *global* batch (``tf.nn.compute_average_loss``);
    ``optimizer.apply_gradients`` inside the replica all-reduces (sums) the gradients, so
    every replica applies the same update. Call it with a distributed batch; it returns the
    mean loss of the global batch.
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
    """One global batch ``(x, y)`` split over the strategy's replicas, as ``(x, y)`` per replica (notebook 07).

    Replica r gets the r-th contiguous shard, on its own device, as
    ``strategy.experimental_distribute_dataset`` would give it; built directly from the
    arrays (``experimental_distribute_values_from_function``), without a dataset iterator,
    whose clean-up can take seconds on a busy machine.
    """
    import tensorflow as tf

    local = per_replica_batch(len(x), strategy.num_replicas_in_sync)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)

    def shard(array):
        def value_fn(ctx):
            r = ctx.replica_id_in_sync_group
            with tf.device(strategy.extended.worker_devices[r]):
                return tf.identity(array[r * local:(r + 1) * local])

        return strategy.experimental_distribute_values_from_function(value_fn)

    return shard(x), shard(y)


def scaling(build_model, replica_counts, x, y, steps: int = 10, repeats: int = 3,
            warmup: int = 2, learning_rate: float = 0.05, desc: str = "timing replica counts") -> list[dict]:
    """Training throughput (samples/s) for each replica count, interleaved, medians (notebook 07).

    ``build_model()`` returns a fresh tf_keras model; one copy is built under a
    ``MirroredStrategy`` for each count in ``replica_counts``. The global batch is
    ``len(x)`` for every count (the per-replica batch shrinks as replicas grow), fed from
    memory, so the time is compute plus all-reduce, not input. The counts are timed in
    turn, ``repeats`` rounds of ``steps`` steps each (A, B, C, A, B, C, ...), because a
    shared machine's speed drifts; each row reports the median and the spread. A progress
    bar (``desc``) counts the timed chunks.
    """
    import tf_keras

    if steps < 1 or repeats < 1:
        raise ValueError("steps and repeats must be >= 1")
    global_batch = len(x)
    setups = {}
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
        setups[n] = (step, batch)
    timings = {n: [] for n in replica_counts}
    shown = progress.bar(total=repeats * len(setups), desc=desc, unit="chunk")
    for _ in range(repeats):
        for n, (step, batch) in setups.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(*batch)
            float(loss)  # wait for the last step
            timings[n].append(steps * global_batch / (time.perf_counter() - start))
            shown.update(1)
    shown.close()
    base = float(np.median(timings[replica_counts[0]]))
    rows = []
    for n in replica_counts:
        med = float(np.median(timings[n]))
        rows.append({"replicas": n, "global_batch": global_batch,
                     "per_replica_batch": global_batch // n, "samples_per_s": med,
                     "samples_per_s_min": float(np.min(timings[n])),
                     "samples_per_s_max": float(np.max(timings[n])),
                     "speedup": med / base, "efficiency": med / base / (n / replica_counts[0]),
                     "repeats": repeats, "steps": steps})
    return rows


# --- multi-worker ------------------------------------------------------------------------

class WorkerError(RuntimeError):
    """A worker process failed or timed out; ``runs`` holds every worker's output."""

    def __init__(self, message: str, runs=None):
        super().__init__(message)
        self.runs = runs or []


@dataclass
class WorkerRun:
    """One worker process: its index, exit code, output and (if it wrote one) its result."""

    index: int
    pid: int
    returncode: int | None
    stdout: str
    stderr: str
    result: dict = field(default_factory=dict)


@dataclass
class MultiWorkerRun:
    """The outcome of ``launch_workers``: every worker's run, the cluster and the time taken."""

    workers: list
    cluster: dict
    seconds: float
    log_dir: Path

    def weights(self, index: int, which: str = "weights") -> list:
        """Final weights saved by worker ``index`` (``which="initial"``: the starting weights)."""
        with np.load(self.log_dir / f"worker-{index}-{which}.npz") as npz:
            return [npz[f"w{i}"] for i in range(len(npz.files))]

    def weights_max_diff(self) -> float:
        """Largest absolute difference between any worker's final weights and worker 0's."""
        ref = self.weights(0)
        diff = 0.0
        for run in self.workers[1:]:
            other = self.weights(run.index)
            if [w.shape for w in other] != [w.shape for w in ref]:
                return float("inf")
            diff = max(diff, max(float(np.max(np.abs(a - b))) for a, b in zip(ref, other)))
        return diff


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """``n`` distinct free TCP ports, found by binding on the loopback address only (notebook 07).

    Each probe binds ``(host, 0)`` so the OS picks a free port; all probes are held open
    until every port is chosen (so they differ), then closed for the workers to take.
    ``host`` must be a loopback address: nothing is ever bound on an outside interface.
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"free_ports binds on a loopback address only, got {host!r}; use 127.0.0.1.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def tf_config(addresses, index: int, task_type: str = "worker") -> dict:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``host:port`` addresses (notebook 07).

    Every worker gets the same cluster and its own task index; worker 0 is the chief
    (it also writes checkpoints and summaries in real jobs).
    """
    addresses = list(addresses)
    if not addresses:
        raise ValueError("addresses is empty: give one 'host:port' per worker")
    for addr in addresses:
        host, _, port = str(addr).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{addr!r} is not 'host:port'")
    if not 0 <= index < len(addresses):
        raise ValueError(f"index {index} is outside 0..{len(addresses) - 1}")
    return {"cluster": {task_type: addresses}, "task": {"type": task_type, "index": index}}


def cluster_commands(addresses, worker_args=(), python: str = "python") -> list[str]:
    """The shell command to run on each host of a real cluster: same script, its own TF_CONFIG (notebook 07)."""
    import shlex

    args = " ".join(shlex.quote(str(a)) for a in worker_args)
    return [f"TF_CONFIG={shlex.quote(json.dumps(tf_config(addresses, i)))} "
            f"{python} -m {WORKER_MODULE} {args}".rstrip() for i in range(len(addresses))]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 25) -> str:
    """The last lines of a worker's stderr, TensorFlow's native log chatter left out
    (the lines ``effcourse.quiet`` hides in the notebook itself)."""
    keep = [ln for ln in text.splitlines() if not quiet.is_noise(ln)]
    return "\n".join(keep[-lines:]) if keep else "(no output)"


def alive(pid: int) -> bool:
    """True if process ``pid`` is still running (a zombie, dead but not yet reaped, is not) (notebook 07)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and line.split()[1] == "Z" for line in fh)
    except OSError:  # no /proc (macOS): it exists
        return True


def _stop(procs, grace: float = 3.0) -> None:
    """Stop every worker and its children (its process group): TERM, then KILL; reap them."""
    for proc in procs:
        if proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(proc.pid, signal.SIGTERM)
                else:  # pragma: no cover
                    proc.terminate()
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        if os.name == "posix":  # also children that outlived their worker
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def launch_workers(n_workers: int = 2, args=(), timeout: float = 300, command=None,
                   log_dir: os.PathLike | None = None, extra_env: dict | None = None,
                   port_retries: int = 1, desc: str = "worker processes") -> MultiWorkerRun:
    """Run ``n_workers`` worker processes on 127.0.0.1 with one TF_CONFIG each; collect their output (notebook 07).

    Default worker: ``python -m effcourse._mw_worker *args`` (``command`` replaces
    ``["-m", "effcourse._mw_worker"]``, e.g. ``["-c", "..."]`` in tests). Ports come from
    ``free_ports`` (loopback only). stdout and stderr of worker i go to
    ``log_dir/worker-i.out|err`` and are returned. If a worker exits non-zero, or the
    ``timeout`` (seconds) passes, every worker and its children are stopped and a
    ``WorkerError`` shows the failing worker's stderr. Processes are stopped in every case,
    including an interrupt. If a worker could not take its port (another program got it
    first), the launch is retried ``port_retries`` times on new ports.

    While the workers run, a progress bar (``desc``) counts the workers that have finished
    and shows the elapsed time and worker 0's last ``EFFCOURSE_STEP <n>`` line (the course's
    worker prints one per training step). Workers' native TensorFlow log lines stay in
    their log files; error messages show the rest (``effcourse.quiet.is_noise`` decides).
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(
        prefix=f"mw-{time.strftime('%H%M%S')}-", dir=env.build_dir("logs", "multiworker")))
    log_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(port_retries + 1):
        try:
            return _launch_once(int(n_workers), list(args), timeout, command, log_dir, extra_env, desc)
        except WorkerError as err:
            port_taken = any("Could not start gRPC server" in r.stderr
                             or "Address already in use" in r.stderr for r in err.runs)
            if not port_taken or attempt == port_retries:
                raise


def _last_step(path: Path) -> int | None:
    """The step count in a worker's last ``EFFCOURSE_STEP`` line so far, if any."""
    found = None
    for line in _read(path).splitlines():
        if line.startswith(STEP_PREFIX):
            try:
                found = int(line[len(STEP_PREFIX):])
            except ValueError:
                pass
    return found


def _launch_once(n_workers, args, timeout, command, log_dir, extra_env, desc) -> MultiWorkerRun:
    addresses = [f"{LOOPBACK}:{p}" for p in free_ports(n_workers)]
    command = list(command) if command is not None else ["-m", WORKER_MODULE]
    procs, files = [], []
    start = time.monotonic()
    try:
        for i in range(n_workers):
            worker_env = dict(os.environ, **(extra_env or {}))
            worker_env["TF_CONFIG"] = json.dumps(tf_config(addresses, i))
            worker_env["EFFCOURSE_WORKER_DIR"] = str(log_dir)
            worker_env.setdefault("PYTHONUNBUFFERED", "1")
            worker_env["EFFCOURSE_PROGRESS"] = "0"  # no bars in the workers' log files
            out = open(log_dir / f"worker-{i}.out", "w")
            err = open(log_dir / f"worker-{i}.err", "w")
            files += [out, err]
            procs.append(subprocess.Popen([sys.executable, *command, *args], env=worker_env,
                                          stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          start_new_session=(os.name == "posix")))
        failed, timed_out = None, False
        shown = progress.bar(total=n_workers, desc=desc, unit="worker")
        done, last_look = 0, 0.0
        while True:
            codes = [p.poll() for p in procs]
            failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
            if failed is not None or all(c == 0 for c in codes):
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                break
            finished = sum(c == 0 for c in codes)
            if finished > done:
                shown.update(finished - done)
                done = finished
            if time.monotonic() - last_look > 1.0:  # elapsed time and worker 0's step, once a second
                last_look = time.monotonic()
                step = _last_step(log_dir / "worker-0.out")
                shown.set_postfix_str(f"worker 0 at step {step}" if step is not None else "starting", refresh=True)
            time.sleep(0.1)
        shown.update(sum(c == 0 for c in codes) - done)
        shown.close()
    finally:
        _stop(procs)
        for fh in files:
            fh.close()
    seconds = time.monotonic() - start
    runs = []
    for i, proc in enumerate(procs):
        stdout = _read(log_dir / f"worker-{i}.out")
        result = {}
        for line in stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
        runs.append(WorkerRun(i, proc.pid, proc.returncode, stdout, _read(log_dir / f"worker-{i}.err"), result))
    cluster = {"worker": addresses}
    if failed is not None:
        bad = runs[failed]
        raise WorkerError(
            f"Worker {failed} of {n_workers} failed (exit code {bad.returncode}); all workers were "
            f"stopped. Its stderr (last lines; full logs in {log_dir}):\n{_tail(bad.stderr)}", runs)
    if timed_out:
        running = [r.index for r in runs if r.returncode is None or r.returncode < 0]
        tails = "\n".join(f"--- worker {r.index} stderr ---\n{_tail(r.stderr, 10)}" for r in runs)
        raise WorkerError(
            f"Timed out after {timeout:g} s with worker(s) {running} still running (a worker that "
            f"waits for a peer that never comes hangs); all workers were stopped. Logs in "
            f"{log_dir}.\n{tails}", runs)
    return MultiWorkerRun(runs, cluster, seconds, log_dir)


def worker_args(model: str = "lenet_300_100", steps: int = 20, global_batch: int = 64,
                learning_rate: float = 0.1, crash_worker: int | None = None,
                hang_worker: int | None = None) -> list[str]:
    """Command-line arguments of the course's worker script, ``effcourse._mw_worker`` (notebook 07).

    ``crash_worker`` / ``hang_worker`` make that worker fail or hang at start (failure demos).
    """
    from . import models

    if model not in models.BUILDERS:
        raise ValueError(f"Unknown model {model!r}; choose from {sorted(models.BUILDERS)}.")
    if steps < 1 or global_batch < 1 or learning_rate <= 0:
        raise ValueError("steps and global_batch must be >= 1 and learning_rate > 0")
    args = ["--model", model, "--steps", str(steps), "--global-batch", str(global_batch),
            "--learning-rate", str(learning_rate)]
    if crash_worker is not None:
        args += ["--crash-worker", str(int(crash_worker))]
    if hang_worker is not None:
        args += ["--hang-worker", str(int(hang_worker))]
    return args


def run_multi_worker(n_workers: int = 2, timeout: float = 300, **kwargs) -> MultiWorkerRun:
    """Train with ``MultiWorkerMirroredStrategy`` in ``n_workers`` local processes (notebook 07).

    Each worker runs ``python -m effcourse._mw_worker`` with ``worker_args(**kwargs)``:
    the same model, the same global batches, ``model.fit``; each saves its final weights.
    Returns the ``MultiWorkerRun``; ``.weights_max_diff()`` compares the workers' weights.
    """
    per_replica_batch(kwargs.get("global_batch", 64), n_workers)
    return launch_workers(n_workers, worker_args(**kwargs), timeout=timeout)


# --- model parallelism -------------------------------------------------------------------

@dataclass
class Stage:
    """Consecutive layers of a model placed on one device (their variables live there)."""

    index: int
    device: str
    model: object  # a tf_keras Sequential
    layers: list
    _graphs: dict = field(default_factory=dict, repr=False)

    def __call__(self, x, training: bool = False):
        import tensorflow as tf

        with tf.device(self.device):
            return self.model(x, training=training)

    def graph(self, with_loss: bool):
        """This stage's training forward pass as a ``tf.function`` (traced once; with the loss if last)."""
        import tensorflow as tf

        if with_loss not in self._graphs:
            spec = tf.TensorSpec([None, *self.model.input_shape[1:]], tf.float32)
            if with_loss:
                def forward(h, labels, global_batch):
                    logits = self.model(h, training=True)
                    return tf.reduce_sum(_per_example_loss(labels, logits)) / global_batch

                signature = [spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32)]
            else:
                def forward(h):
                    return self.model(h, training=True)

                signature = [spec]
            self._graphs[with_loss] = tf.function(forward, input_signature=signature)
        return self._graphs[with_loss]


def balanced_mlp(blocks: int, width: int = 784, name: str = "balanced_mlp"):
    """An MLP of ``blocks`` identical Dense(width) ReLU blocks and a Dense(10) head (notebook 07).

    Used for pipelines: with ``width`` 784 every block does the same work (784 x 784 MACs
    per sample), so one block per stage gives balanced stages.
    """
    import tf_keras

    from . import models

    if blocks < 1 or width < 1:
        raise ValueError("blocks and width must be >= 1")
    layers = [tf_keras.layers.Input(models.INPUT_SHAPE), tf_keras.layers.Flatten(name="flatten")]
    layers += [tf_keras.layers.Dense(width, activation="relu", name=f"block{i}") for i in range(blocks)]
    layers.append(tf_keras.layers.Dense(models.NUM_CLASSES, name="logits"))
    return tf_keras.Sequential(layers, name=name)


def split_sequential(model, boundaries, device_list=None) -> list:
    """Split a Sequential model into stages of consecutive layers, each on its own device (notebook 07).

    ``boundaries`` are the layer indices (into ``model.layers``) where stages 1, 2, ...
    start, e.g. ``[2]`` puts layers 0-1 on the first device and the rest on the second.
    Each stage is a new Sequential whose variables are created on its device and hold
    the model's current weights; the original model is left untouched.
    """
    import tensorflow as tf
    import tf_keras

    from . import models

    models.check_model(model, what="split_sequential")
    if not isinstance(model, tf_keras.Sequential):
        raise TypeError("split_sequential needs a Sequential model (a plain stack of layers).")
    layers = list(model.layers)
    cuts = [0, *sorted(int(b) for b in boundaries), len(layers)]
    if len(set(cuts)) != len(cuts) or cuts[1] <= 0 or cuts[-2] >= len(layers):
        raise ValueError(f"boundaries {list(boundaries)} must be distinct layer indices in "
                         f"1..{len(layers) - 1} (the model has {len(layers)} layers), so that "
                         "every stage gets at least one layer.")
    n_stages = len(cuts) - 1
    device_list = list(device_list) if device_list is not None else devices(n_stages)
    if len(device_list) < n_stages:
        raise ValueError(f"{n_stages} stages need {n_stages} devices, got {len(device_list)}")
    stages = []
    for k in range(n_stages):
        part = layers[cuts[k]:cuts[k + 1]]
        with tf.device(device_list[k]):
            seq = tf_keras.Sequential(
                [tf_keras.layers.Input(part[0].input_shape[1:])]
                + [type(layer).from_config(layer.get_config()) for layer in part],
                name=f"stage{k}")
        seq.set_weights([w for layer in part for w in layer.get_weights()])
        stages.append(Stage(k, device_list[k], seq, [layer.name for layer in part]))
    return stages


def forward_across(stages, x, training: bool = False):
    """Run ``x`` through the stages in order; return the output and what crossed devices (notebook 07).

    Each crossing is a dict: from and to device, the activation's shape and its bytes
    (what an interconnect would carry per step).
    """
    import tensorflow as tf

    h = tf.convert_to_tensor(x)
    crossings = []
    for k, stage in enumerate(stages):
        if k:
            crossings.append({"from": stages[k - 1].device, "to": stage.device,
                              "shape": tuple(h.shape), "bytes": int(np.prod(h.shape)) * h.dtype.size,
                              "bytes_per_sample": int(np.prod(h.shape[1:])) * h.dtype.size})
        h = stage(h, training=training)
    return h, crossings


# --- pipeline parallelism ----------------------------------------------------------------

def bubble_formula(stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction (K-1)/(M+K-1) for K balanced stages and M micro-batches (notebook 07)."""
    if stages < 1 or micro_batches < 1:
        raise ValueError("stages and micro_batches must be >= 1")
    return (stages - 1) / (micro_batches + stages - 1)


def bubble_bottleneck(stage_times, micro_batches: int) -> float:
    """The bubble predicted when stages differ: the slowest stage sets the pace (notebook 07).

    With t_k the time of stage k per micro-batch (forward + backward), a GPipe step takes
    about sum(t) + (M-1) max(t), while the devices are busy M sum(t) in total, so the
    bubble is 1 - M sum(t) / (K (sum(t) + (M-1) max(t))). Equal stages give (K-1)/(M+K-1).
    """
    t = np.asarray(stage_times, dtype=float)
    if t.ndim != 1 or not len(t) or np.any(t <= 0) or micro_batches < 1:
        raise ValueError("stage_times must be positive, one per stage, and micro_batches >= 1")
    span = t.sum() + (micro_batches - 1) * t.max()
    return float(1.0 - micro_batches * t.sum() / (len(t) * span))


def gpipe_timeline(forward, backward=None) -> list[dict]:
    """Lay out GPipe tasks on K devices given each task's duration; return the timeline (notebook 07).

    ``forward[k][m]`` (and ``backward[k][m]``) are the seconds stage k takes for
    micro-batch m. Each device runs one task at a time: all forwards in micro-batch order,
    then all backwards in reverse order. A forward needs the previous stage's forward of the
    same micro-batch; a backward needs the next stage's backward of it (the last stage's
    backward needs its own forward). Tasks start as soon as both their device and their
    input are ready. Each entry: stage, phase ("F"/"B"), micro_batch, start, end.
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
    """Idle fraction of a timeline: 1 - busy time / (devices x makespan) (notebook 07)."""
    if not timeline:
        raise ValueError("empty timeline")
    n_stages = 1 + max(t["stage"] for t in timeline)
    span = max(t["end"] for t in timeline) - min(t["start"] for t in timeline)
    busy = sum(t["end"] - t["start"] for t in timeline)
    return 1.0 - busy / (n_stages * span)


def _sync():
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):  # GPU kernels run asynchronously
        tf.test.experimental.sync_devices()


def run_gpipe(stages, x, y, micro_batches: int, repeats: int = 3, input_gradient: bool = True,
              clock: str | None = None) -> dict:
    """One GPipe training step through the stages, every task timed; bubble from the timeline (notebook 07).

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
            h = tf.constant(x[m * micro:(m + 1) * micro])
            labels = tf.constant(y[m * micro:(m + 1) * micro])
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
    measured = bubble(timeline)
    formula = bubble_formula(n_stages, micro_batches)
    stage_times = (fwd_med + bwd_med).mean(axis=1)
    return {"stages": n_stages, "micro_batches": micro_batches, "micro_batch_size": micro,
            "global_batch": len(x), "bubble": measured, "bubble_formula": formula,
            "bubble_bottleneck": bubble_bottleneck(stage_times, micro_batches),
            "stage_times_s": stage_times, "clock": clock_name,
            "relative_error": abs(measured - formula) / formula if formula else abs(measured),
            "makespan_s": max(t["end"] for t in timeline),
            "sequential_s": float(fwd_med.sum() + bwd_med.sum()),
            "forward_s": fwd_med, "backward_s": bwd_med, "timeline": timeline,
            "loss": loss_total, "gradients": [[np.asarray(g) for g in gs] for gs in grads],
            "repeats": repeats}


def compare_gradients(got, expected, atol: float = 1e-6) -> dict:
    """How far two lists of gradient arrays (or lists of lists, per stage) differ (notebook 07).

    Returns the largest absolute difference, the largest gradient, and how many of all the
    entries differ by more than ``atol``: in a ReLU network a pre-activation within
    round-off of zero can switch on in one computation and not in the other, which changes
    that unit's gradient entries by a real amount while every other entry agrees.
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
    return {"max_abs_diff": float(max(d.max() for d in diffs)),
            "max_abs_grad": float(max(np.abs(b).max() for b in expected)),
            "entries": int(sum(d.size for d in diffs)),
            "entries_off": int(sum(int((d > atol).sum()) for d in diffs))}


def full_batch_gradients(stages, x, y) -> list:
    """The gradient of the mean loss over the whole batch, per stage, without micro-batches (notebook 07)."""
    import tensorflow as tf

    variables = [s.model.trainable_variables for s in stages]
    with tf.GradientTape() as tape:
        logits, _ = forward_across(stages, np.asarray(x, np.float32), training=True)
        loss = tf.reduce_mean(_per_example_loss(np.asarray(y), logits))
    flat = tape.gradient(loss, [v for vs in variables for v in vs])
    out, i = [], 0
    for vs in variables:
        out.append([np.asarray(g) for g in flat[i:i + len(vs)]])
        i += len(vs)
    return out


def gantt(timeline, ax=None, title: str | None = None, unit: float = 1e3):
    """Timeline (Gantt) plot of a pipeline schedule: one row per device, F and B tasks (notebook 07)."""
    from . import plots

    plt = plots.style()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * (1 + max(t["stage"] for t in timeline))))
    colors = {"F": "tab:blue", "B": "tab:orange"}
    n_micro = 1 + max(t["micro_batch"] for t in timeline)
    for t in timeline:
        width = (t["end"] - t["start"]) * unit
        ax.barh(t["stage"], width, left=t["start"] * unit, height=0.7, color=colors[t["phase"]],
                alpha=0.45 + 0.5 * (t["micro_batch"] + 1) / n_micro, edgecolor="white", linewidth=0.6,
                hatch="//" if t["phase"] == "B" else None)
        if n_micro <= 8:  # label every task with its micro-batch while the labels fit
            ax.text(t["start"] * unit + width / 2, t["stage"], str(t["micro_batch"]),
                    ha="center", va="center", fontsize=9)
    n_stages = 1 + max(t["stage"] for t in timeline)
    ax.set_yticks(range(n_stages), [f"stage {k}\n(device {k})" for k in range(n_stages)])
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)" if unit == 1e3 else "time")
    ax.set_ylabel("pipeline stage")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="white", hatch=h)
               for c, h in zip(colors.values(), (None, "//"))]
    ax.legend(handles, ["forward", "backward"], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9,
              title="number in a box:\nmicro-batch" if n_micro <= 8 else None, title_fontsize=9)
    ax.set_title(title or f"GPipe schedule: {n_stages} stages, {n_micro} micro-batches "
                 f"(bubble {bubble(timeline):.1%})")
    return ax
