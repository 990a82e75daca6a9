"""Quiet native logs: keep TensorFlow's C++ log lines out of the learner's notebook (every notebook).

TensorFlow 2.21 writes its native log lines straight to file descriptor 2 (C-level stderr)
through absl, whatever ``TF_CPP_MIN_LOG_LEVEL`` says: the "All log messages before
absl::InitializeLog()" banner, oneDNN and "Could not find cuda drivers" notices,
``failed call to cuInit`` on a machine without a GPU, graph-optimizer notes, the TFLite
converter's settings dump and the XNNPACK delegate's INFO line. A beginner reads "ERROR"
and "CUDA error" as something broken, and none of these lines is about the learner's code.

``install()`` (called when ``effcourse`` is imported, before TensorFlow is) puts a pipe in
front of descriptor 2 and a thread that forwards every line except those, so Python
warnings and errors, the course's own messages and any native line not recognised as
noise still show. The hidden lines are kept: ``hidden()`` returns the most recent ones.
Set ``EFFCOURSE_NATIVE_LOGS=1`` before importing effcourse to see everything.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import threading
import warnings

#: Native lines that are TensorFlow's, absl's, CUDA's, oneDNN's, the converter's or LiteRT's
#: own chatter. Informational and warning lines in absl's format (``I0000 ... file.cc:12]``)
#: are all hidden; error lines only when they are known to be harmless on a working setup.
NOISE = re.compile(
    r"^(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w./-]+:\d+\] "  # absl INFO / WARNING lines
    r"|E\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w./-]+:\d+\] (?:"  # absl ERROR lines known harmless:
    r"failed call to cuInit"  #   no GPU driver on this machine
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory"  #   CUDA plugins registered twice
    r"|.*NodeDef mentions attribute use_unbounded_threadpool"  #   tf.data graph note (TF 2.21)
    r"|.*Error in PredictCost\(\) for the op"  #   grappler cost model note
    r")"
    r"|(?:fully_quantize|input_inference_type|inference_type): "  # TFLite converter settings dump
    r"|INFO: Created TensorFlow Lite (?:XNNPACK )?delegate"  # LiteRT delegate notice
    r"|INFO: Initialized TensorFlow Lite runtime"
    r"|WARNING: Attempting to use a delegate that only supports static-sized tensors"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r")"
)

#: Python warnings raised inside TensorFlow's converter or Keras about their own internals
#: (not about anything a learner wrote): filtered by message, never by category alone.
PYTHON_NOISE = (
    r"Statistics for quantized inputs were expected, but not specified",
    r"Please consider providing the trackable_obj argument in the from_concrete_functions",
    r"Compiled the loaded model, but the compiled metrics have yet to be built",
)

_hidden: collections.deque = collections.deque(maxlen=500)
_state: dict = {}
_lock = threading.Lock()


def is_noise(line: str) -> bool:
    """True when ``line`` is native log chatter that ``install()`` hides.

    Introduced in notebook 00.
    """
    return bool(NOISE.match(line.lstrip("\r")))


def hidden() -> list[str]:
    """The most recent native lines that were hidden (up to 500), oldest first.

    Introduced in notebook 00.
    """
    return list(_hidden)


def _might_become_noise(partial: str) -> bool:
    """Hold an unfinished line back until its end, unless it is a progress redraw ("\\r...")."""
    return not partial.startswith("\r") and len(partial) < 4096


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
            else:
                keep.append(raw + b"\n")
        if pending and not _might_become_noise(pending.decode("utf-8", "replace")):
            keep.append(pending)  # a progress bar or prompt without a newline: show it now
            pending = b""
        if keep:
            try:
                os.write(out_fd, b"".join(keep))
            except OSError:
                pass
    if pending:
        try:
            os.write(out_fd, pending)
        except OSError:
            pass


def install(fd: int = 2) -> bool:
    """Filter native log noise out of descriptor ``fd`` (stderr); idempotent. True when active.

    Introduced in notebook 00 (``import effcourse`` calls it). Does nothing when
    ``EFFCOURSE_NATIVE_LOGS=1``, or when the descriptor cannot be duplicated.

    Introduced in notebook 00.
    """
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
        thread = threading.Thread(
            target=_pump, args=(read_fd, original), daemon=True, name=f"effcourse-quiet-fd{fd}"
        )
        thread.start()
        _state[fd] = (original, read_fd, thread)
    if len(_state) == 1:
        atexit.register(lambda: [uninstall(f) for f in list(_state)])
    return True


def uninstall(fd: int = 2, timeout: float = 2.0) -> None:
    """Restore descriptor ``fd`` and forward what is still in the pipe (tests, clean exit).

    Introduced in notebook 00.
    """
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
