"""Self-checks for the exercises (every notebook).

The cell after an exercise calls a check: it prints one line starting with "PASS" that says
what was verified, or raises ``CheckFailed`` whose message is a hint (never the answer).
Each notebook's checks live in ``checks/nbNN.py``, loaded on first use (``checks.nb01``).
"""

from __future__ import annotations

import contextvars
import functools
import sys

import numpy as np

from ..errors import EffcourseError


class CheckFailed(EffcourseError, AssertionError):
    """An exercise answer that does not pass; the message is the hint.

    Jupyter shows the hint alone (no traceback, which would show the reference answer); the
    cell still ends in an error, so nbval and "Run All" stop there.
    """

    def _render_traceback_(self):
        """What IPython shows instead of a traceback (one short message)."""
        red, reset = "\x1b[31m", "\x1b[0m"
        return [f"{red}CheckFailed{reset}: {self}"]


_PASSES: contextvars.ContextVar = contextvars.ContextVar("effcourse_check_passes", default=None)


def passed(message: str) -> None:
    """Print the pass line; inside a ``one_pass_line`` check, collect it (the check prints its last)."""
    collected = _PASSES.get()
    if collected is None:
        print(f"PASS: {message}")
    else:
        collected.append(message)


def one_pass_line(fn):
    """Decorate a check so that it prints exactly one PASS line (its last) when it passes."""

    @functools.wraps(fn)
    def check(*args, **kwargs):
        if _PASSES.get() is not None:  # a check called by another check: report through it
            return fn(*args, **kwargs)
        token = _PASSES.set([])
        try:
            result = fn(*args, **kwargs)
            lines = _PASSES.get()
        finally:
            _PASSES.reset(token)
        if lines:
            print(f"PASS: {lines[-1]}")
        return result

    return check


def one_pass_line_each(module_name: str) -> None:
    """Apply ``one_pass_line`` to every public function defined in a checks module (its last line)."""
    module = sys.modules[module_name]
    for name, obj in list(vars(module).items()):
        if not name.startswith("_") and isinstance(obj, type(fail)) and obj.__module__ == module_name:
            setattr(module, name, one_pass_line(obj))


def fail(hint: str):
    """Raise ``CheckFailed`` with a hint (without the chain of what was caught before it)."""
    err = CheckFailed(f"Not yet. {hint}")
    err.__suppress_context__ = True
    raise err


def call(fn, *args, name: str = "your function", **kwargs):
    """Call the learner's function; turn 'not written yet' and crashes into hints."""
    if not callable(fn):
        fail(f"{name} should be a function; got {type(fn).__name__}.")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        fail(
            f"{name} is not written yet: replace the `raise NotImplementedError` line in the "
            "exercise cell with your code, run that cell, then this one."
        )
    except CheckFailed:
        raise
    except Exception as err:  # the learner's code crashed: say how
        fail(f"{name} raised {type(err).__name__}: {err}")


def close(got, expected, what: str, atol: float = 1e-6, hint: str = "") -> None:
    """Check two numbers or arrays agree to ``atol``; the hint says by how much they differ."""
    got_a, exp_a = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if got_a.shape != exp_a.shape:
        fail(f"{what}: expected shape {exp_a.shape}, got {got_a.shape}. {hint}".strip())
    err = float(np.max(np.abs(got_a - exp_a))) if got_a.size else 0.0
    if not np.isfinite(err) or err > atol:
        fail(f"{what} is off by {err:.3g} (allowed {atol:g}). {hint}".strip())
    return passed(f"{what} matches (max difference {err:.2g}).")


def __getattr__(name: str):
    """Load a notebook's checks (``checks.nb02``) on first use."""
    import importlib

    if name.startswith("nb") and name[2:].isdigit():
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
