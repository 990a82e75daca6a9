"""Progress for long cells: tqdm bars for loops and for Keras training (every notebook).

``bar`` wraps a loop; ``KerasBar`` is a Keras 2 callback with one bar over every batch of a
``fit``. Widgets in JupyterLab, text in a terminal; ``EFFCOURSE_PROGRESS=0`` turns them off.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import tf_keras

_TRANSIENT = [0]  # depth of nested ``transient()`` blocks


def enabled() -> bool:
    """True unless ``EFFCOURSE_PROGRESS=0``.
    Introduced in notebook 02."""
    return os.environ.get("EFFCOURSE_PROGRESS", "1") not in ("0", "false", "no", "")


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A tqdm progress bar over ``iterable`` (silent when progress is off), for any loop of seconds.
    Introduced in notebook 00."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=not enabled(), dynamic_ncols=True, **kwargs
    )


@contextmanager
def transient():
    """Inside this block, Keras training bars vanish when their training ends (loops that train often).
    Introduced in notebook 02."""
    _TRANSIENT[0] += 1
    try:
        yield
    finally:
        _TRANSIENT[0] -= 1


class KerasBar(tf_keras.callbacks.Callback):
    """One progress bar over every batch of a ``fit`` call, with epoch and loss (``verbose=0``).
    Introduced in notebook 00."""

    def __init__(self, desc: str = "training"):
        super().__init__()
        self.desc, self._bar, self._epoch = desc, None, 0

    def on_train_begin(self, logs=None):
        total = (self.params.get("steps") or 0) * (self.params.get("epochs") or 1) or None
        self._bar = bar(total=total, desc=self.desc, unit="batch", leave=not _TRANSIENT[0])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        self._bar.update(1)
        if logs and batch % 20 == 0:
            self._bar.set_postfix(self._caption(logs), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None and logs:
            self._bar.set_postfix(self._caption(logs), refresh=True)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _caption(self, logs) -> dict:
        shown = {"epoch": f"{self._epoch}/{self.params.get('epochs') or 1}"}
        return shown | {k: f"{float(logs[k]):.4f}" for k in ("loss", "accuracy", "val_accuracy") if k in logs}


def with_bar(callbacks, desc: str, verbose: int = 0) -> list:
    """``callbacks`` plus a ``KerasBar`` when Keras prints nothing itself and bars are on.
    Introduced in notebook 05."""
    callbacks = list(callbacks or [])
    if verbose == 0 and enabled() and not any(isinstance(c, KerasBar) for c in callbacks):
        callbacks.append(KerasBar(desc))
    return callbacks
