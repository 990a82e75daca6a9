"""Pruning: magnitude pruning with tfmot, Han et al.'s iterative recipe, channel pruning (notebook 02).

Notebook 02 shows each technique first in plain tfmot / NumPy calls; this package keeps what its
sweeps and later notebooks reuse (04, 08 and 09 prune with ``prune_and_finetune``; 08's search
also uses ``wrap``, ``strip``, ``channel_prune``, ``finetune`` and ``magnitude_mask``):

* ``kernels``: the kernel of a layer, ``prunable_layers``, the sparsity check;
* ``magnitude``: the tfmot side: ``make_schedule``, ``wrap``, ``callbacks`` /
  ``pruning_summaries``, ``strip``, ``kernel_sparsity``, ``check_schedule``;
* ``sensitivity``: ``magnitude_mask`` (the rule the learner writes in notebook 02);
* ``training``: ``prune_and_finetune`` and ``finetune`` on the course's fine-tuning recipe
  (``train.cosine_schedule``, alpha 0.05), optionally distilled from a teacher;
* ``iterative``: Han et al. 2015's prune-retrain-repeat (``iterative_prune``, its
  ``stage_targets``, ``han_dropout_rate``);
* ``channels``: channel surgery (``channel_norms``, ``kept_channels``, ``channel_mask``,
  ``channel_prune``: a physically narrower model, fewer MACs on any hardware).

tfmot's wrappers share layers (and so weights) with the model they are given; every
function here clones its input first and never changes the caller's model.
"""

from .channels import (
    CHANNEL_MERGE,
    CHANNEL_PASS_THROUGH,
    channel_mask,
    channel_norms,
    channel_prune,
    kept_channels,
)
from .iterative import IterativeResult, han_dropout_rate, iterative_prune, stage_targets
from .kernels import prunable_layers
from .magnitude import (
    SCHEDULES,
    callbacks,
    check_schedule,
    kernel_sparsity,
    make_schedule,
    pruning_summaries,
    strip,
    wrap,
)
from .sensitivity import magnitude_mask
from .training import PRUNE_FRACTION, finetune, prune_and_finetune

__all__ = [
    "CHANNEL_MERGE",
    "CHANNEL_PASS_THROUGH",
    "IterativeResult",
    "PRUNE_FRACTION",
    "SCHEDULES",
    "callbacks",
    "channel_mask",
    "channel_norms",
    "channel_prune",
    "check_schedule",
    "finetune",
    "han_dropout_rate",
    "iterative_prune",
    "kept_channels",
    "kernel_sparsity",
    "magnitude_mask",
    "make_schedule",
    "prunable_layers",
    "prune_and_finetune",
    "pruning_summaries",
    "stage_targets",
    "strip",
    "wrap",
]
