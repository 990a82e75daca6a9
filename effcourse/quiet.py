"""Quiet native logs: keep TensorFlow's C++ log lines out of the learner's notebook (every notebook).

TensorFlow writes native log lines (absl banners, oneDNN and CUDA notices, converter dumps)
straight to file descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; a beginner reads them
as errors. ``install()`` (run by ``import effcourse``) puts a pipe and a thread in front of
descriptor 2 that forward every line except those; ``hidden()`` returns the latest hidden
ones. ``EFFCOURSE_NATIVE_LOGS=1`` before importing effcourse shows everything.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import re
import threading
import warnings

#: absl's native log form: severity (I, W, E, F), date, time, thread, ``file.cc:line] message``.
ABSL = re.compile(
    r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:[\d.]+ +\d+ (?P<source>[\w./-]+:\d+)\] ?(?P<message>.*)$"
)

#: Error-level messages known harmless on a working setup.
HARMLESS_ERRORS = re.compile(
    r"failed call to cuInit"  # no GPU driver on this machine
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory"  # CUDA plugins registered twice
    r"|NodeDef mentions attribute use_unbounded_threadpool"  # tf.data graph note (TF 2.21)
    r"|Error in PredictCost\(\) for the op"  # grappler cost model note
)
#: An error-level message TensorFlow marks as a fallback to other kernels: the work is done.
FALLBACK = re.compile(r"\bfall(?:ing)? ?back\b", re.I)

#: Other native chatter, not in absl's form: the converter's settings dump, LiteRT's notices.
NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|(?:fully_quantize|input_inference_type|inference_type): "  # TFLite converter settings dump
    r"|INFO: Created TensorFlow Lite (?:XNNPACK )?delegate"  # LiteRT delegate notice
    r"|INFO: Initialized TensorFlow Lite runtime"
    r"|WARNING: Attempting to use a delegate that only supports static-sized tensors"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r")"
)

#: Said once, after the first native error line that is shown (it is not recognised as harmless).
EXPLAIN = (
    "(effcourse: the line above was written by TensorFlow's C++ code ({source}), not by your "
    "code. If the cell finished and its numbers look right, it stopped nothing; otherwise it is "
    "the cause. Set EFFCOURSE_NATIVE_LOGS=1 before starting Jupyter to see every native line.)"
)

#: Python warnings of TensorFlow's converter or Keras about their own internals (by message).
PYTHON_NOISE = (
    r"Statistics for quantized inputs were expected, but not specified",
    r"Please consider providing the trackable_obj argument in the from_concrete_functions",
    r"Compiled the loaded model, but the compiled metrics have yet to be built",
)

_hidden: collections.deque = collections.deque(maxlen=500)
_state: dict = {}
_explained: list = []  # the native error line that was explained (once per process)
_lock = threading.Lock()


def is_noise(line: str) -> bool:
    """True when ``line`` is native log chatter that ``install()`` hides (absl info and warnings,
    harmless or fallback errors; fatal lines never).
    Introduced in notebook 00."""
    text = line.lstrip("\r")
    found = ABSL.match(text)
    if found is None:
        return bool(NOISE.match(text))
    level, message = found["level"], found["message"]
    if level in "IW":
        return True
    return level == "E" and bool(HARMLESS_ERRORS.search(message) or FALLBACK.search(message))


def explanation(line: str) -> str | None:
    """The note shown after a native error line that is not hidden (None for any other line).
    Introduced in notebook 00."""
    found = ABSL.match(line.lstrip("\r"))
    if found is None or found["level"] not in "EF" or is_noise(line):
        return None
    return EXPLAIN.format(source=found["source"])


def hidden() -> list[str]:
    """The most recent native lines that were hidden (up to 500), oldest first.
    Introduced in notebook 00."""
    return list(_hidden)


def _pump(read_fd: int, out_fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        keep = []
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            if is_noise(text):
                _hidden.append(text)
                continue
            keep.append(raw + b"\n")
            note = explanation(text)
            if note and not _explained:
                _explained.append(text)
                keep.append(note.encode() + b"\n")
        if pending and (pending.startswith(b"\r") or len(pending.decode("utf-8", "replace")) >= 4096):
            keep.append(pending)  # a progress redraw or a long unfinished line: show it now
            pending = b""
        if keep:
            with contextlib.suppress(OSError):
                os.write(out_fd, b"".join(keep))
    if pending:
        with contextlib.suppress(OSError):
            os.write(out_fd, pending)


def install(fd: int = 2) -> bool:
    """Filter native log noise out of descriptor ``fd`` (stderr); idempotent. True when active.
    Introduced in notebook 00. Does nothing when ``EFFCOURSE_NATIVE_LOGS=1`` or ``fd`` cannot be duplicated."""
    for message in PYTHON_NOISE:
        warnings.filterwarnings("ignore", message=message)
    if os.environ.get("EFFCOURSE_NATIVE_LOGS", "") not in ("", "0"):
        return False
    with _lock:
        if fd in _state:
            return True
        try:
            original = os.dup(fd)
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
        except OSError:
            return False
        os.close(write_fd)
        name = f"effcourse-quiet-fd{fd}"
        thread = threading.Thread(target=_pump, args=(read_fd, original), daemon=True, name=name)
        thread.start()
        _state[fd] = (original, read_fd, thread)
    if len(_state) == 1:
        atexit.register(lambda: [uninstall(f) for f in list(_state)])
    return True


def uninstall(fd: int = 2, timeout: float = 2.0) -> None:
    """Restore descriptor ``fd`` and forward what is still in the pipe (tests, clean exit).
    Introduced in notebook 00."""
    with _lock:
        entry = _state.pop(fd, None)
    if entry is None:
        return
    original, read_fd, thread = entry
    os.dup2(original, fd)  # closes our pipe's last write end held by fd
    thread.join(timeout)
    os.close(original)
    if not thread.is_alive():
        os.close(read_fd)
