"""Pruning: magnitude pruning with tfmot and channel pruning (notebook 02).

Notebook 02 shows each technique in plain tfmot / NumPy / Keras cells (and writes Han et al.'s
iterative recipe and the channel ranking there); this package keeps what its sweeps and later
notebooks reuse: ``prune_and_finetune`` (04, 08, 09), ``wrap`` / ``callbacks`` / ``strip`` /
``kernel_sparsity`` / ``prunable_layers`` / ``magnitude_mask`` and ``channel_norms`` /
``channel_prune`` (08's search). Every function clones its input first: tfmot's wrappers share
layers (and so weights) with the model they are given.
"""

from .channels import channel_norms, channel_prune
from .kernels import prunable_layers
from .magnitude import callbacks, kernel_sparsity, pruning_summaries, strip, wrap
from .sensitivity import magnitude_mask
from .training import prune_and_finetune

__all__ = [
    "callbacks",
    "channel_norms",
    "channel_prune",
    "kernel_sparsity",
    "magnitude_mask",
    "prunable_layers",
    "prune_and_finetune",
    "pruning_summaries",
    "strip",
    "wrap",
]
