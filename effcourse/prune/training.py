"""Fine-tuning while and after pruning: ``prune_and_finetune`` (magnitude) and ``finetune`` (channel-pruned), notebook 02."""

from __future__ import annotations

from .. import distill, train
from ..models import check_model
from ..validate import mnist_like, positive_int
from .magnitude import SCHEDULES, _per_layer_sparsities, callbacks, check_schedule, strip, wrap

PRUNE_FRACTION = 0.5  # prune_and_finetune: masks reach their target in the first half of the steps


def _plan_steps(n_train: int, epochs: int, batch_size: int, prune_fraction: float = PRUNE_FRACTION):
    if not 0 < prune_fraction < 1:
        raise ValueError(
            f"prune_fraction must be in (0, 1) (the share of steps spent raising the "
            f"sparsity; the rest fine-tunes), got {prune_fraction}."
        )
    total = train.steps_for(n_train, batch_size, epochs)
    end = max(1, int(total * prune_fraction))
    frequency = max(1, min(100, end // 10))
    end = max(frequency, (end // frequency) * frequency)
    return total, end, frequency


def prune_and_finetune(
    model,
    data,
    sparsity: float,
    epochs: int,
    batch_size: int = 128,
    per_layer: dict | None = None,
    schedule="polynomial",
    m_by_n=None,
    log_dir=None,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    prune_fraction: float = PRUNE_FRACTION,
    verbose: int = 0,
    seed: int = 0,
    desc: str | None = None,
    dropout_rates: dict | None = None,
    initial_sparsity: dict | None = None,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.5,
):
    """Prune a copy of ``model`` to ``sparsity`` while fine-tuning on ``data``; return it stripped and compiled.

    ``data`` is an ``effcourse.data.MNIST``. The masks are raised
    to their target over the first ``prune_fraction`` of the training steps
    (``schedule="polynomial"``) or set at once (``"constant"``), then held while the rest of
    the steps fine-tune the kept weights (Adam, or AdamW with ``weight_decay``, cosine-decayed
    from ``learning_rate``). A tfmot ``PruningSchedule`` can be
    passed instead; it must end before training does. ``log_dir`` writes TensorBoard
    pruning summaries. The input model is never changed. With ``verbose=0`` a progress bar shows the fine-tuning;
    ``desc`` is its caption (default: the model and its target, e.g. "prune lenet5 to 90%").
    ``dropout_rates`` ({Dropout layer name: rate}) sets those layers' rates while training
    (``iterative_prune`` passes Han et al.'s lower rates); ``initial_sparsity`` ({layer: s})
    starts those layers' polynomial schedules at s (the sparsity their kernels already hold).
    ``teacher`` (usually the dense model itself) makes the retraining distil from it:
    ``distill.distillation_loss`` at ``temperature`` with weight ``alpha`` on the soft targets.

    Introduced in notebook 02.
    """
    from .. import env, models

    check_model(model, what="prune.prune_and_finetune")
    mnist_like(data, "prune.prune_and_finetune")
    epochs, batch_size = positive_int(epochs, "epochs"), positive_int(batch_size, "batch_size")
    _per_layer_sparsities(model, sparsity, per_layer)  # validate before any work
    total, end, frequency = _plan_steps(len(data.x_train), epochs, batch_size, prune_fraction)
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {SCHEDULES} or a tfmot PruningSchedule, got {schedule!r}."
            )
    else:
        check_schedule(schedule, total)
    env.seed_everything(seed)
    wrapped = wrap(
        model,
        sparsity,
        schedule=schedule,
        begin_step=0,
        end_step=end,
        per_layer=per_layer,
        m_by_n=m_by_n,
        frequency=frequency,
        initial_sparsity=initial_sparsity,
    )
    for name, rate in (dropout_rates or {}).items():
        wrapped.get_layer(name).rate = float(rate)
    data = distill.Recipe(data, teacher, temperature, alpha).compile(
        wrapped, train.finetune_optimizer(learning_rate, len(data.x_train), batch_size, epochs, weight_decay)
    )
    if desc is None:
        target = (
            f"{m_by_n[0]}:{m_by_n[1]}"
            if m_by_n
            else "per-layer sparsities"
            if per_layer
            else f"{float(sparsity):.0%}"
            if isinstance(sparsity, (int, float))
            else "its schedule"
        )
        desc = f"prune {model.name} to {target}"
    train.fit(
        wrapped,
        data,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks(log_dir, every=frequency),
        verbose=verbose,
        seed=seed,
        desc=desc,
    )
    return models.compile_classifier(strip(wrapped))


def finetune(
    model,
    data,
    epochs: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    verbose: int = 0,
    seed: int = 0,
    desc: str | None = None,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.5,
):
    """Fine-tune a copy of ``model`` on ``data`` (Adam/AdamW, cosine-decayed rate); return it compiled, notebook 02.

    With ``verbose=0`` a progress bar captioned ``desc`` (default "fine-tune <model>") shows it.
    ``teacher`` (e.g. the dense model a channel-pruned copy came from) makes it distil from
    the teacher's soft targets (``distill.with_soft_targets``) as well as the labels.

    Introduced in notebook 02.
    """
    from .. import env, models

    check_model(model, what="prune.finetune")
    mnist_like(data, "prune.finetune")
    epochs, batch_size = positive_int(epochs, "epochs"), positive_int(batch_size, "batch_size")
    env.seed_everything(seed)
    copy = models.clone(model, compile_like=False)
    data = distill.Recipe(data, teacher, temperature, alpha).compile(
        copy, train.finetune_optimizer(learning_rate, len(data.x_train), batch_size, epochs, weight_decay)
    )
    train.fit(
        copy,
        data,
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
        seed=seed,
        desc=desc or f"fine-tune {model.name}",
    )
    return copy if teacher is None else models.compile_classifier(copy)  # a classifier again, labels only
