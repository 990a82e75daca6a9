"""Progress for long cells: tqdm bars for loops and for Keras training (every notebook).

A learner should never stare at a silent cell for minutes. ``bar`` wraps a loop (a sweep
over sparsities, a list of configurations) and ``KerasBar`` is a Keras 2 callback with one
bar over all the batches of a ``fit`` call, the epoch and the latest loss in its caption.
In JupyterLab they are tqdm's notebook widgets (ipywidgets); in a terminal, tqdm's text
bars. ``EFFCOURSE_PROGRESS=0`` turns every bar off (the unit tests do).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import tf_keras

_TRANSIENT = [0]  # depth of nested ``transient()`` blocks


def enabled() -> bool:
    """True unless ``EFFCOURSE_PROGRESS=0``.

    Introduced in notebook 02.
    """
    return os.environ.get("EFFCOURSE_PROGRESS", "1") not in ("0", "false", "no", "")


def _tqdm():
    from tqdm.auto import tqdm

    return tqdm


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A tqdm progress bar over ``iterable``.

    Use it on any loop that takes more than a few seconds: ``for s in progress.bar(sparsities,
    desc="sparsity sweep"):``. With progress disabled the iterable comes back unchanged (or a
    silent bar for manual ``update`` calls).

    Introduced in notebook 00.
    """
    tqdm = _tqdm()
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=not enabled(), dynamic_ncols=True, **kwargs
    )


@contextmanager
def transient():
    """Inside this block, Keras training bars vanish when their training ends.

    For loops that train many times (stages, seeds, configurations) and keep a bar of their
    own: the loop's bar stays on screen, the bar of each ``fit`` inside it does not, so a cell
    does not end with dozens of finished bars.

    Introduced in notebook 02.
    """
    _TRANSIENT[0] += 1
    try:
        yield
    finally:
        _TRANSIENT[0] -= 1


class KerasBar(tf_keras.callbacks.Callback):
    """One progress bar over every batch of a ``fit`` call, with epoch and loss.

    ``model.fit(.., verbose=0, callbacks=[progress.KerasBar("LeNet-5")])``. The bar closes
    at the end of training and stays on screen with the final loss and accuracy.

    Introduced in notebook 00.
    """

    def __init__(self, desc: str = "training"):
        super().__init__()
        self.desc = desc
        self._bar = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        steps = self.params.get("steps") or 0
        epochs = self.params.get("epochs") or 1
        total = steps * epochs if steps else None
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
        epochs = self.params.get("epochs") or 1
        shown = {"epoch": f"{self._epoch}/{epochs}"}
        for key in ("loss", "accuracy", "val_accuracy"):
            if key in logs:
                shown[key] = f"{float(logs[key]):.4f}"
        return shown


def with_bar(callbacks, desc: str, verbose: int = 0) -> list:
    """``callbacks`` plus a ``KerasBar`` when Keras prints nothing itself and bars are on.

    Introduced in notebook 05.
    """
    callbacks = list(callbacks or [])
    if verbose == 0 and enabled() and not any(isinstance(c, KerasBar) for c in callbacks):
        callbacks.append(KerasBar(desc))
    return callbacks
