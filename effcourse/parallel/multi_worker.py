"""The local launcher of ``MultiWorkerMirroredStrategy`` workers (notebook 07).

``launch_workers`` starts worker processes on 127.0.0.1 (free loopback ports, one
``TF_CONFIG`` each, a timeout, every output collected, every process and its children
stopped whatever happens: signals to their process groups on POSIX, each worker terminated
on its own on Windows); ``run_multi_worker`` runs the course's worker script,
``python -m effcourse._mw_worker``, the script a real cluster runs with one ``TF_CONFIG``
per host (``cluster_commands``).
"""

from __future__ import annotations

import json
import os
import shlex
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

LOOPBACK = "127.0.0.1"
WORKER_MODULE = "effcourse._mw_worker"
RESULT_PREFIX = "EFFCOURSE_RESULT "  # a worker's result line (JSON)
STEP_PREFIX = "EFFCOURSE_STEP "  # a worker's progress line: steps done so far
_POSIX = os.name == "posix"


class WorkerError(EffcourseError, RuntimeError):
    """A worker process failed or timed out; ``runs`` holds every worker's output.

    Introduced in notebook 07.
    """

    def __init__(self, message: str, runs=()):
        super().__init__(message)
        self.runs = list(runs)


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
    """The outcome of ``launch_workers``: every worker's run, the addresses, the time, the log folder.

    ``environments`` says which GPU environment each worker got and why.

    Introduced in notebook 07.
    """

    workers: list
    addresses: list
    seconds: float
    log_dir: Path
    environments: str = ""

    def weights(self, index: int, which: str = "weights") -> list:
        """Final weights saved by worker ``index`` (``which="initial"``: the starting weights)."""
        with np.load(self.log_dir / f"worker-{index}-{which}.npz") as npz:
            return [npz[f"w{i}"] for i in range(len(npz.files))]

    def weights_max_diff(self) -> float:
        """Largest absolute difference between any worker's final weights and worker 0's."""
        ref, diff = self.weights(0), 0.0
        for run in self.workers[1:]:
            diff = max([diff, *(float(np.max(np.abs(a - b))) for a, b in zip(ref, self.weights(run.index)))])
        return diff


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports from probes bound on 127.0.0.1 only, held until all are chosen."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _tf_config(addresses, index: int) -> dict:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``host:port`` addresses (worker 0: the chief)."""
    for addr in addresses:
        host, _, port = str(addr).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{addr!r} is not 'host:port'")
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def _worker_args(model="lenet_300_100", steps=20, global_batch=64, learning_rate=0.1, crash_worker=None):
    """Command-line arguments of the course's worker script (``crash_worker``: that worker fails at start)."""
    args = f"--model {model} --steps {steps} --global-batch {global_batch} --learning-rate {learning_rate}"
    return args.split() + (["--crash-worker", str(crash_worker)] if crash_worker is not None else [])


def cluster_commands(addresses, **kwargs) -> list[str]:
    """The shell command each host of a real cluster runs: the same worker script, its own TF_CONFIG.

    ``kwargs``: the worker's options (model, steps, global_batch, learning_rate).

    Introduced in notebook 07.
    """
    args = " ".join(shlex.quote(a) for a in _worker_args(**kwargs))
    return [
        f"TF_CONFIG={shlex.quote(json.dumps(_tf_config(addresses, i)))} python -m {WORKER_MODULE} {args}"
        for i in range(len(addresses))
    ]


def worker_environments(n_workers: int, gpus: int) -> tuple[list[dict], str]:
    """Each local worker's GPU environment on a machine with ``gpus`` GPUs, and the reason.

    Enough GPUs: worker i sees its own (``CUDA_VISIBLE_DEVICES``, ``gpus // n_workers`` each);
    fewer GPUs than workers: every worker sees them all with memory growth, and all-reduces
    over gRPC (ring), because NCCL refuses two processes on one GPU; no GPU: CPU-only workers.

    Introduced in notebook 07.
    """
    if type(n_workers) is not int or type(gpus) is not int or n_workers < 1 or gpus < 0:
        raise ValueError(f"n_workers must be a whole number >= 1 and gpus >= 0, got {n_workers!r}, {gpus!r}")
    if gpus == 0:
        return [{"CUDA_VISIBLE_DEVICES": ""}] * n_workers, f"no GPU: {n_workers} CPU-only workers."
    growth = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    if gpus < n_workers:
        return [{**growth, "EFFCOURSE_MW_COMMUNICATION": "ring"}] * n_workers, (
            f"{gpus} GPU(s) for {n_workers} workers: they share them, with memory growth, and all-reduce "
            "over gRPC (ring), as NCCL needs one GPU per process."
        )
    each, unused = gpus // n_workers, gpus % n_workers
    envs = [
        {**growth, "CUDA_VISIBLE_DEVICES": ",".join(str(i * each + j) for j in range(each))}
        for i in range(n_workers)
    ]
    return envs, (
        f"{gpus} GPUs for {n_workers} workers: {each} each (CUDA_VISIBLE_DEVICES per worker)"
        + (f", {unused} unused." if unused else ".")
    )


def _tail(text: str, lines: int = 25) -> str:
    """The last lines of a worker's stderr, without TensorFlow's native log chatter or traceback frames."""
    keep = [ln for ln in text.splitlines() if not quiet.is_noise(ln)]
    marker = "Traceback (most recent call last):"
    if marker in keep:  # the learner reads what was said before, and the exception itself
        start = len(keep) - 1 - keep[::-1].index(marker)
        exc = [ln for ln in keep[start + 1 :] if ln and not ln.startswith((" ", "\t"))]
        keep = keep[:start] + ["(the worker's Python traceback is in its log file)"] + exc
    return "\n".join(keep[-lines:]) or "(no output)"


def alive(pid: int) -> bool:
    """True if process ``pid`` is still running (a zombie, dead but not yet reaped, is not).

    On Windows it asks the process's exit code (``os.kill(pid, 0)`` there would end the process).

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


def _signal_group(proc, sig) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(procs, grace: float = 3.0) -> None:
    """Stop every worker and its children (its process group): TERM, then KILL; reap them.

    On Windows (no process groups or signals) each worker is terminated, then killed.
    """
    for proc in procs:
        if proc.poll() is None:
            if _POSIX:
                _signal_group(proc, signal.SIGTERM)
            else:
                proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        if _POSIX:  # also children that outlived their worker
            _signal_group(proc, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _last_step(text: str) -> str:
    steps = [ln[len(STEP_PREFIX) :] for ln in text.splitlines() if ln.startswith(STEP_PREFIX)]
    return f"worker 0 at step {steps[-1]}" if steps else "starting"


def _launch_once(n_workers, command, timeout, log_dir, envs, desc) -> MultiWorkerRun:
    addresses = [f"{LOOPBACK}:{p}" for p in _free_ports(n_workers)]
    procs, files, start = [], [], time.monotonic()
    failed = timed_out = None
    try:
        for i in range(n_workers):
            worker_env = {**os.environ, **envs[i], "TF_CONFIG": json.dumps(_tf_config(addresses, i))}
            worker_env.update(EFFCOURSE_WORKER_DIR=str(log_dir), PYTHONUNBUFFERED="1", EFFCOURSE_PROGRESS="0")
            out, err = (open(log_dir / f"worker-{i}.{kind}", "w") for kind in ("out", "err"))
            files += [out, err]
            kw = {"stdin": subprocess.DEVNULL, "start_new_session": _POSIX}
            procs.append(
                subprocess.Popen([sys.executable, *command], env=worker_env, stdout=out, stderr=err, **kw)
            )
        shown, done = progress.bar(total=n_workers, desc=desc, unit="worker"), 0
        while True:
            codes = [p.poll() for p in procs]
            failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
            timed_out = time.monotonic() - start > timeout
            shown.update(sum(c == 0 for c in codes) - done)
            done = sum(c == 0 for c in codes)
            if failed is not None or done == n_workers or timed_out:
                break
            shown.set_postfix_str(_last_step(_read(log_dir / "worker-0.out")), refresh=True)
            time.sleep(0.25)
        shown.close()
    finally:
        _stop(procs)
        for fh in files:
            fh.close()
    runs = []
    for i, proc in enumerate(procs):
        out = _read(log_dir / f"worker-{i}.out")
        found = [ln[len(RESULT_PREFIX) :] for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
        err = _read(log_dir / f"worker-{i}.err")
        runs.append(WorkerRun(i, proc.pid, proc.returncode, out, err, json.loads(found[-1]) if found else {}))
    if failed is not None:
        raise WorkerError(
            f"Worker {failed} of {n_workers} failed (exit code {runs[failed].returncode}); all "
            f"workers were stopped. Its stderr (last lines; full logs in {log_dir}):\n"
            f"{_tail(runs[failed].stderr)}",
            runs,
        )
    if timed_out:
        running = [r.index for r in runs if r.returncode is None or r.returncode < 0]
        tails = "\n".join(f"--- worker {r.index} stderr ---\n{_tail(r.stderr, 10)}" for r in runs)
        raise WorkerError(
            f"Timed out after {timeout:g} s with worker(s) {running} still running (a worker "
            f"that waits for a peer that never comes hangs); all workers were stopped. Logs in "
            f"{log_dir}.\n{tails}",
            runs,
        )
    return MultiWorkerRun(runs, addresses, time.monotonic() - start, log_dir)


def launch_workers(n_workers=2, command=(), timeout=300, log_dir=None, gpus=None, desc="worker processes"):
    """Run ``n_workers`` processes ``python *command`` on 127.0.0.1, one TF_CONFIG each; collect their output.

    Ports come from ``free_ports``; worker i's stdout and stderr go to ``log_dir/worker-i.out``
    and ``.err``. If a worker exits non-zero, or ``timeout`` seconds pass, every worker and
    its children are stopped (in every case, an interrupt too) and a ``WorkerError`` shows the
    failing worker's stderr. A worker that could not take its port (another program got it
    first) makes one retry on new ports. Each worker's GPU environment comes from
    ``worker_environments`` (``gpus``: default the GPUs TensorFlow sees). A progress bar
    shows worker 0's last ``EFFCOURSE_STEP`` line and counts the finished workers.

    Introduced in notebook 07.
    """
    if type(n_workers) is not int or n_workers < 1 or not timeout > 0:
        raise ValueError(f"n_workers must be a positive int and timeout > 0, got {n_workers!r}, {timeout!r}")
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if log_dir is None:
        log_dir = tempfile.mkdtemp(prefix=f"mw-{time.strftime('%H%M%S')}-", dir=env.build_dir("logs", "mw"))
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    envs, reason = worker_environments(n_workers, gpus)
    for attempt in (0, 1):
        try:
            run = _launch_once(n_workers, list(command), timeout, Path(log_dir), envs, desc)
            run.environments = reason
            return run
        except WorkerError as err:
            taken = ("Could not start gRPC server", "Address already in use")
            if attempt or not any(t in r.stderr for r in err.runs for t in taken):
                raise


def run_multi_worker(n_workers=2, timeout=300, **kwargs) -> MultiWorkerRun:
    """Train with ``MultiWorkerMirroredStrategy`` in ``n_workers`` local processes of the course's script.

    Each worker runs ``python -m effcourse._mw_worker`` with ``_worker_args(**kwargs)``: the
    same model and global batches, ``model.fit``; each saves its initial and final weights.

    Introduced in notebook 07.
    """
    return launch_workers(n_workers, ["-m", WORKER_MODULE, *_worker_args(**kwargs)], timeout=timeout)
