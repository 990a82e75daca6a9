"""Pruning while fine-tuning: ``prune_and_finetune``, notebook 02's recipe that 04, 08 and 09 reuse."""

from __future__ import annotations

from .. import distill, train
from ..models import check_model
from ..validate import mnist_like
from .magnitude import _per_layer_sparsities, callbacks, strip, wrap


def _plan_steps(n_train: int, epochs: int, batch_size: int):
    """(training steps, step where the masks reach their target: about half-way, mask update period)."""
    total = train.steps_for(n_train, batch_size, epochs)
    end = max(1, total // 2)
    frequency = max(1, min(100, end // 10))
    return total, max(frequency, (end // frequency) * frequency), frequency


def prune_and_finetune(
    model,
    data,
    sparsity: float,
    epochs: int,
    batch_size: int = 128,
    per_layer: dict | None = None,
    schedule: str = "polynomial",
    m_by_n=None,
    log_dir=None,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    desc: str | None = None,
    initial_sparsity: dict | None = None,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.5,
):
    """Prune a copy of ``model`` to ``sparsity`` while fine-tuning on ``data``; return it stripped and compiled.

    ``data`` is an ``effcourse.data.MNIST``. ``wrap`` raises the masks to their target over the
    first half of the training steps (``schedule="polynomial"``, from ``initial_sparsity``
    {layer: s} where given) or sets them at once (``"constant"``); the other half fine-tunes the
    kept weights (``train.finetune_optimizer``: Adam, or AdamW with ``weight_decay``,
    cosine-decayed from ``learning_rate``). ``per_layer`` and ``m_by_n`` are ``wrap``'s;
    ``log_dir`` writes TensorBoard pruning summaries; ``desc`` captions the progress bar.
    ``teacher`` makes the retraining distil from it (``distill.Recipe``: the soft targets at
    ``temperature`` with weight ``alpha``). The input model is never changed.

    Introduced in notebook 02.
    """
    from .. import env, models

    check_model(model, what="prune.prune_and_finetune")
    mnist_like(data, "prune.prune_and_finetune")
    _per_layer_sparsities(model, sparsity, per_layer)  # bad input fails before any work
    total, end, frequency = _plan_steps(len(data.x_train), epochs, batch_size)
    env.seed_everything(seed)
    wrapped = wrap(model, sparsity, schedule, 0, end, per_layer, m_by_n, frequency, initial_sparsity)
    optimizer = train.finetune_optimizer(learning_rate, len(data.x_train), batch_size, epochs, weight_decay)
    fit_on = distill.Recipe(data, teacher, temperature, alpha).compile(wrapped, optimizer)
    if desc is None:
        target = f"{m_by_n[0]}:{m_by_n[1]}" if m_by_n else "per-layer sparsities" if per_layer else None
        desc = f"prune {model.name} to {target or format(float(sparsity), '.0%')}"
    train.fit(
        wrapped,
        fit_on,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks(log_dir, every=frequency),
        seed=seed,
        desc=desc,
    )
    return models.compile_classifier(strip(wrapped))
