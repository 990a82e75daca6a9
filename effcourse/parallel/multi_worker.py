"""Multi-worker training with ``MultiWorkerMirroredStrategy``: the local launcher (notebook 07).

``launch_workers`` starts worker processes on 127.0.0.1 (free loopback ports, one
``TF_CONFIG`` each, a timeout, every output collected, every process and its children
stopped whatever happens, with signals to their process groups); ``run_multi_worker`` runs
the course's worker script, ``python -m effcourse._mw_worker``, the same script a real
cluster runs with one ``TF_CONFIG`` per host (``cluster_commands``).
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

from .. import env, progress, quiet
from ..errors import EffcourseError
from .data_parallel import per_replica_batch

LOOPBACK = "127.0.0.1"
WORKER_MODULE = "effcourse._mw_worker"
RESULT_PREFIX = "EFFCOURSE_RESULT "
# Process groups and signals (POSIX); on Windows each worker is terminated on its own.
_POSIX = os.name == "posix"
STEP_PREFIX = "EFFCOURSE_STEP "  # a worker's progress line: steps done so far


class WorkerError(EffcourseError, RuntimeError):
    """A worker process failed or timed out; ``runs`` holds every worker's output.

    Introduced in notebook 07.
    """

    def __init__(self, message: str, runs=None):
        super().__init__(message)
        self.runs = runs or []


@dataclass
class WorkerRun:
    """One worker process: its index, exit code, output and (if it wrote one) its result.

    Introduced in notebook 07.
    """

    index: int
    pid: int
    returncode: int | None
    stdout: str
    stderr: str
    result: dict = field(default_factory=dict)


@dataclass
class MultiWorkerRun:
    """The outcome of ``launch_workers``: every worker's run, the cluster and the time taken.

    Introduced in notebook 07.
    """

    workers: list
    cluster: dict
    seconds: float
    log_dir: Path
    worker_plan: WorkerPlan | None = None

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
    """``n`` distinct free TCP ports, found by binding on the loopback address only.

    Each probe binds ``(host, 0)`` so the OS picks a free port; all probes are held open
    until every port is chosen (so they differ), then closed for the workers to take.
    ``host`` must be a loopback address: nothing is ever bound on an outside interface.

    Introduced in notebook 07.
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
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``host:port`` addresses.

    Every worker gets the same cluster and its own task index; worker 0 is the chief
    (it also writes checkpoints and summaries in real jobs).

    Introduced in notebook 07.
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
    """The shell command to run on each host of a real cluster: same script, its own TF_CONFIG.

    Introduced in notebook 07.
    """
    import shlex

    args = " ".join(shlex.quote(str(a)) for a in worker_args)
    return [
        f"TF_CONFIG={shlex.quote(json.dumps(tf_config(addresses, i)))} "
        f"{python} -m {WORKER_MODULE} {args}".rstrip()
        for i in range(len(addresses))
    ]


@dataclass(frozen=True)
class WorkerPlan:
    """The environment of each worker process and why (notebook 07): ``envs[i]`` is worker i's additions.

    Introduced in notebook 07.
    """

    envs: list
    reason: str


def worker_environments(n_workers: int, gpus: int) -> WorkerPlan:
    """Each worker's GPU environment for ``n_workers`` local workers on a machine with ``gpus`` GPUs.

    * enough GPUs (``gpus >= n_workers``): worker i sees only its own GPUs through
      ``CUDA_VISIBLE_DEVICES`` (``gpus // n_workers`` each; the rest stay unused);
    * fewer GPUs than workers: every worker sees every GPU with memory growth on
      (``TF_FORCE_GPU_ALLOW_GROWTH``), so no worker takes all the memory, and their
      all-reduce uses TensorFlow's ring (gRPC) collectives, because NCCL refuses two
      processes on one GPU (``EFFCOURSE_MW_COMMUNICATION=ring``, read by the worker);
    * no GPU: CPU-only workers (``CUDA_VISIBLE_DEVICES`` set to nothing).
    Pure: ``launch_workers`` applies it.

    Introduced in notebook 07.
    """
    for name, value, least in (("n_workers", n_workers, 1), ("gpus", gpus, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    if gpus == 0:
        return WorkerPlan(
            [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(n_workers)], f"no GPU: {n_workers} CPU-only workers."
        )
    if gpus >= n_workers:
        each = gpus // n_workers
        envs = [
            {
                "CUDA_VISIBLE_DEVICES": ",".join(str(i * each + j) for j in range(each)),
                "TF_FORCE_GPU_ALLOW_GROWTH": "true",
            }
            for i in range(n_workers)
        ]
        unused = gpus - each * n_workers
        return WorkerPlan(
            envs,
            f"{gpus} GPUs for {n_workers} workers: {each} GPU{'s' if each > 1 else ''} each "
            "(CUDA_VISIBLE_DEVICES per worker)" + (f", {unused} unused." if unused else "."),
        )
    return WorkerPlan(
        [
            {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "EFFCOURSE_MW_COMMUNICATION": "ring"}
            for _ in range(n_workers)
        ],
        f"{gpus} GPU{'s' if gpus > 1 else ''} for {n_workers} workers: they share "
        f"{'it' if gpus == 1 else 'them'}, with memory growth, and all-reduce over gRPC (ring), "
        "as NCCL needs one GPU per process.",
    )


def _physical_gpu_count() -> int:
    """Physical GPUs TensorFlow sees in this process (0 if it cannot tell)."""
    try:
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001
        return 0


def cluster_hosts(default=("host-a.example:2222", "host-b.example:2222"), environ=None) -> list[str]:
    """The cluster's ``host:port`` list: ``$EFFCOURSE_CLUSTER_HOSTS`` (comma-separated), else ``default``.

    A host without a port gets 2222. Set the variable before starting JupyterLab to print
    the launch commands for your own machines.

    Introduced in notebook 07.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("EFFCOURSE_CLUSTER_HOSTS", "").strip()
    hosts = [h.strip() for h in raw.split(",") if h.strip()] if raw else list(default)
    out = [h if h.rpartition(":")[2].isdigit() and ":" in h else f"{h}:2222" for h in hosts]
    for h in out:
        tf_config([h], 0)  # validates host:port
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 25) -> str:
    """The last lines of a worker's stderr, TensorFlow's native log chatter left out
    (the lines ``effcourse.quiet`` hides in the notebook itself)."""
    keep = [ln for ln in text.splitlines() if not quiet.is_noise(ln)]
    if "Traceback (most recent call last):" in keep:
        # A Python traceback's frames are for the log file; the message keeps what was said
        # before it and the exception itself, so a learner reads the cause, not a stack.
        start = len(keep) - 1 - keep[::-1].index("Traceback (most recent call last):")
        before = keep[:start]
        exc = [ln for ln in keep[start + 1 :] if ln and not ln.startswith((" ", "\t"))]
        keep = before + ["(the worker's Python traceback is in its log file)"] + exc
    return "\n".join(keep[-lines:]) if keep else "(no output)"


def alive(pid: int) -> bool:
    """True if process ``pid`` is still running (a zombie, dead but not yet reaped, is not).

    On Windows it asks the process's exit code (``os.kill`` there would end the process).

    Introduced in notebook 07.
    """
    if not _POSIX:
        return _windows_alive(pid)
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


def _windows_alive(pid: int) -> bool:  # pragma: no cover (Windows only)
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return (
            bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
        )  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _stop(procs, grace: float = 3.0) -> None:
    """Stop every worker and its children (its process group): TERM, then KILL; reap them.

    On Windows (no process groups or signals) each worker is terminated, then killed; a child
    process a worker started itself would outlive it there (the course's workers start none).
    """
    for proc in procs:
        if proc.poll() is None:
            try:
                if _POSIX:
                    os.killpg(proc.pid, signal.SIGTERM)
                else:
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
        if _POSIX:  # also children that outlived their worker
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def launch_workers(
    n_workers: int = 2,
    args=(),
    timeout: float = 300,
    command=None,
    log_dir: os.PathLike | None = None,
    extra_env: dict | None = None,
    port_retries: int = 1,
    desc: str = "worker processes",
    gpus: int | None = None,
) -> MultiWorkerRun:
    """Run ``n_workers`` worker processes on 127.0.0.1 with one TF_CONFIG each; collect their output.

    Default worker: ``python -m effcourse._mw_worker *args`` (``command`` replaces
    ``["-m", "effcourse._mw_worker"]``, e.g. ``["-c", ".."]`` in tests). Ports come from
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

    Each worker's GPU environment comes from ``worker_environments(n_workers, gpus)``
    (``gpus`` default: the GPUs TensorFlow sees here); ``extra_env`` is applied after it.
    The returned run's ``worker_plan`` says what each worker got.

    Introduced in notebook 07.
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer)) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    log_dir = (
        Path(log_dir)
        if log_dir
        else Path(
            tempfile.mkdtemp(
                prefix=f"mw-{time.strftime('%H%M%S')}-", dir=env.build_dir("logs", "multiworker")
            )
        )
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = worker_environments(int(n_workers), _physical_gpu_count() if gpus is None else gpus)
    for attempt in range(port_retries + 1):
        try:
            run = _launch_once(int(n_workers), list(args), timeout, command, log_dir, extra_env, desc, plan)
            run.worker_plan = plan
            return run
        except WorkerError as err:
            port_taken = any(
                "Could not start gRPC server" in r.stderr or "Address already in use" in r.stderr
                for r in err.runs
            )
            if not port_taken or attempt == port_retries:
                raise


def _last_step(path: Path) -> int | None:
    """The step count in a worker's last ``EFFCOURSE_STEP`` line so far, if any."""
    found = None
    for line in _read(path).splitlines():
        if line.startswith(STEP_PREFIX):
            try:
                found = int(line[len(STEP_PREFIX) :])
            except ValueError:
                pass
    return found


def _launch_once(n_workers, args, timeout, command, log_dir, extra_env, desc, plan=None) -> MultiWorkerRun:
    addresses = [f"{LOOPBACK}:{p}" for p in free_ports(n_workers)]
    command = list(command) if command is not None else ["-m", WORKER_MODULE]
    procs, files = [], []
    start = time.monotonic()
    try:
        for i in range(n_workers):
            worker_env = dict(os.environ, **(plan.envs[i] if plan else {}), **(extra_env or {}))
            worker_env["TF_CONFIG"] = json.dumps(tf_config(addresses, i))
            worker_env["EFFCOURSE_WORKER_DIR"] = str(log_dir)
            worker_env.setdefault("PYTHONUNBUFFERED", "1")
            worker_env["EFFCOURSE_PROGRESS"] = "0"  # no bars in the workers' log files
            out = open(log_dir / f"worker-{i}.out", "w")
            err = open(log_dir / f"worker-{i}.err", "w")
            files += [out, err]
            procs.append(
                subprocess.Popen(
                    [sys.executable, *command, *args],
                    env=worker_env,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=_POSIX,
                )
            )
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
                shown.set_postfix_str(
                    f"worker 0 at step {step}" if step is not None else "starting", refresh=True
                )
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
                result = json.loads(line[len(RESULT_PREFIX) :])
        runs.append(
            WorkerRun(i, proc.pid, proc.returncode, stdout, _read(log_dir / f"worker-{i}.err"), result)
        )
    cluster = {"worker": addresses}
    if failed is not None:
        bad = runs[failed]
        raise WorkerError(
            f"Worker {failed} of {n_workers} failed (exit code {bad.returncode}); all workers were "
            f"stopped. Its stderr (last lines; full logs in {log_dir}):\n{_tail(bad.stderr)}",
            runs,
        )
    if timed_out:
        running = [r.index for r in runs if r.returncode is None or r.returncode < 0]
        tails = "\n".join(f"--- worker {r.index} stderr ---\n{_tail(r.stderr, 10)}" for r in runs)
        raise WorkerError(
            f"Timed out after {timeout:g} s with worker(s) {running} still running (a worker that "
            f"waits for a peer that never comes hangs); all workers were stopped. Logs in "
            f"{log_dir}.\n{tails}",
            runs,
        )
    return MultiWorkerRun(runs, cluster, seconds, log_dir)


def worker_args(
    model: str = "lenet_300_100",
    steps: int = 20,
    global_batch: int = 64,
    learning_rate: float = 0.1,
    crash_worker: int | None = None,
    hang_worker: int | None = None,
) -> list[str]:
    """Command-line arguments of the course's worker script, ``effcourse._mw_worker``.

    ``crash_worker`` / ``hang_worker`` make that worker fail or hang at start (failure demos).

    Introduced in notebook 07.
    """
    from .. import models

    if model not in models.BUILDERS:
        raise ValueError(f"Unknown model {model!r}; choose from {sorted(models.BUILDERS)}.")
    if steps < 1 or global_batch < 1 or learning_rate <= 0:
        raise ValueError("steps and global_batch must be >= 1 and learning_rate > 0")
    args = [
        "--model",
        model,
        "--steps",
        str(steps),
        "--global-batch",
        str(global_batch),
        "--learning-rate",
        str(learning_rate),
    ]
    if crash_worker is not None:
        args += ["--crash-worker", str(int(crash_worker))]
    if hang_worker is not None:
        args += ["--hang-worker", str(int(hang_worker))]
    return args


def run_multi_worker(n_workers: int = 2, timeout: float = 300, **kwargs) -> MultiWorkerRun:
    """Train with ``MultiWorkerMirroredStrategy`` in ``n_workers`` local processes.

    Each worker runs ``python -m effcourse._mw_worker`` with ``worker_args(**kwargs)``:
    the same model, the same global batches, ``model.fit``; each saves its final weights.
    Returns the ``MultiWorkerRun``; ``.weights_max_diff()`` compares the workers' weights.

    Introduced in notebook 07.
    """
    per_replica_batch(kwargs.get("global_batch", 64), n_workers)
    return launch_workers(n_workers, worker_args(**kwargs), timeout=timeout)
