"""Pruning: magnitude pruning with tfmot, sensitivity scans, 2:4 sparsity, channel pruning (notebook 02).

Two kinds of pruning, and what each buys:

* **Unstructured magnitude pruning** (tfmot's ``prune_low_magnitude``): the smallest
  weights of each kernel are set to zero and kept at zero while the network fine-tunes.
  The kernels keep their shape, so the model is exactly as slow on dense kernels; what
  shrinks is the *compressed* file (runs of zeros compress well).
* **Channel (filter) pruning** (``channel_prune``): whole filters / units with the smallest
  norms are removed and a physically narrower model is built from the kept weights. It
  does fewer MACs on any hardware. tfmot does not do this; it is written out here.

tfmot's wrappers share layers (and so weights) with the model they are given; every
function here clones its input first and never changes the caller's model.

One module per concern; every public name is re-exported here (``prune.wrap``, ...):

* ``kernels``: the kernel of a layer, ``prunable_layers``, the sparsity check;
* ``magnitude``: the tfmot side: ``make_schedule``, ``wrap``, ``callbacks`` /
  ``pruning_summaries``, ``strip``, ``kernel_sparsity``, ``check_schedule``, m:n sparsity
  (``m_by_n_fraction``, ``m_by_n_report``) and ``to_sparse_tflite``;
* ``sensitivity``: ``magnitude_mask``, ``sensitivity_scan``, ``accuracy_without_finetuning``, ``overall_sparsity``,
  ``allocate_sparsity``;
* ``allocation``: rules that share one budget of non-zeros between layers at a given
  compression (``sparsity_for_ratio``, ``uniform_allocation``, ``scaled_allocation``,
  ``global_magnitude_allocation``);
* ``channels``: channel surgery (``channel_norms``, ``kept_channels``, ``channel_mask``,
  ``channel_prune``: a physically narrower model);
* ``training``: ``prune_and_finetune`` and ``finetune`` on the course's fine-tuning recipe
  (``train.cosine_schedule``, alpha 0.05);
* ``iterative``: Han et al. 2015's prune-retrain-repeat (``iterative_prune``, its
  ``stage_targets``, ``han_dropout_rate``);
* ``evaluation``: ``measure_variant`` (a variant's .tflite measured and recorded).
"""

from .allocation import (
    global_magnitude_allocation,
    scaled_allocation,
    sparsity_for_ratio,
    uniform_allocation,
)
from .channels import (
    CHANNEL_MERGE,
    CHANNEL_PASS_THROUGH,
    channel_mask,
    channel_norms,
    channel_prune,
    kept_channels,
)
from .evaluation import measure_variant
from .iterative import IterativeResult, han_dropout_rate, iterative_prune, stage_targets
from .kernels import prunable_layers
from .magnitude import (
    SCHEDULES,
    callbacks,
    check_schedule,
    kernel_sparsity,
    m_by_n_fraction,
    m_by_n_report,
    make_schedule,
    pruning_summaries,
    strip,
    to_sparse_tflite,
    wrap,
)
from .sensitivity import (
    accuracy_without_finetuning,
    allocate_sparsity,
    magnitude_mask,
    overall_sparsity,
    sensitivity_scan,
)
from .training import PRUNE_FRACTION, finetune, prune_and_finetune

__all__ = [
    "CHANNEL_MERGE",
    "CHANNEL_PASS_THROUGH",
    "IterativeResult",
    "PRUNE_FRACTION",
    "SCHEDULES",
    "accuracy_without_finetuning",
    "allocate_sparsity",
    "callbacks",
    "channel_mask",
    "channel_norms",
    "channel_prune",
    "check_schedule",
    "finetune",
    "global_magnitude_allocation",
    "han_dropout_rate",
    "iterative_prune",
    "kept_channels",
    "kernel_sparsity",
    "m_by_n_fraction",
    "m_by_n_report",
    "magnitude_mask",
    "make_schedule",
    "measure_variant",
    "overall_sparsity",
    "prunable_layers",
    "prune_and_finetune",
    "pruning_summaries",
    "scaled_allocation",
    "sensitivity_scan",
    "sparsity_for_ratio",
    "stage_targets",
    "strip",
    "to_sparse_tflite",
    "uniform_allocation",
    "wrap",
]
