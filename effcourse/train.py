"""Training helpers every notebook shares: ``fit`` and the fine-tuning recipe.

The SGD update written by hand with a ``GradientTape`` (and the learner's own cross-entropy)
lives in notebook 01's cells, where it is taught and checked against the Keras optimizer.
"""

from __future__ import annotations

import numpy as np

# The cosine schedule ends at a share of the starting rate: training from scratch (the baselines,
# distillation students, joint early-exit training) decays to 1%; fine-tuning a compressed model,
# which starts from trained weights and runs a few epochs, to 5%.
TRAIN_FLOOR = 0.01
FINETUNE_FLOOR = 0.05


def fit(
    model,
    data,
    epochs: int,
    batch_size: int = 128,
    callbacks=None,
    verbose: int = 0,
    seed: int = 0,
    validation: bool = True,
    desc: str | None = None,
):
    """``model.fit`` on a ``data.MNIST`` with the course's pipeline; returns the History.

    The model must already be compiled (``models.compile_classifier``). With ``verbose=0`` a
    progress bar (``desc``, default the model's name) shows batches, epoch and loss.

    Introduced in notebook 00.
    """
    from . import data as _data
    from . import progress

    return model.fit(
        _data.pipeline(data.x_train, data.y_train, batch_size, shuffle=True, seed=seed),
        validation_data=_data.pipeline(data.x_val, data.y_val, 512) if validation else None,
        epochs=epochs,
        callbacks=progress.with_bar(callbacks, desc or f"training {model.name}", verbose),
        verbose=verbose,
    )


# --- the fine-tuning recipe every technique shares ------------------------------------------


def steps_for(n_examples: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of ``epochs`` passes over ``n_examples`` in batches (last batch partial).

    Introduced in notebook 01.
    """
    from .validate import positive_int

    batches = -(-positive_int(n_examples, "n_examples") // positive_int(batch_size, "batch_size"))
    return batches * positive_int(epochs, "epochs")


def cosine_schedule(
    learning_rate: float, n_examples: int, batch_size: int, epochs: int, alpha: float = TRAIN_FLOOR
):
    """The course's learning-rate schedule: cosine decay over all the steps of a run to ``alpha`` x the start.

    Introduced in notebook 01.
    """
    import tf_keras

    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    return tf_keras.optimizers.schedules.CosineDecay(
        learning_rate, steps_for(n_examples, batch_size, epochs), alpha=alpha
    )


def finetune_optimizer(
    learning_rate: float, n_train: int, batch_size: int, epochs: int, weight_decay: float = 0.0
):
    """The course's one fine-tuning optimizer: Adam (AdamW if ``weight_decay`` > 0) on the cosine
    schedule to ``FINETUNE_FLOOR`` of the start; pruning, clustering and the search all use it.

    Introduced in notebook 02.
    """
    import tf_keras

    if learning_rate <= 0 or weight_decay < 0:
        raise ValueError(
            f"need learning_rate > 0 and weight_decay >= 0, got {learning_rate}, {weight_decay}."
        )
    lr = cosine_schedule(learning_rate, n_train, batch_size, epochs, alpha=FINETUNE_FLOOR)
    if weight_decay:
        return tf_keras.optimizers.AdamW(lr, weight_decay=weight_decay)
    return tf_keras.optimizers.Adam(lr)
