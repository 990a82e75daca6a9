"""Dynamic networks: staged LiteRT execution of an early-exit network, and a skip gate (notebook 06).

Notebook 06 builds the early-exit LeNet-5 in plain Keras (a functional model with one output
per exit, `compile(loss_weights=...)`, `fit`), and the learner writes the exit rule that the
threshold sweep uses. What stays here is what a learner need not read to follow it:

* ``staged``: ``StagedTFLite`` (each stage its own .tflite in LiteRT, the next run only when
  needed) and ``compare_latency`` (per image, interleaved in blocks of images, returning a
  ``LatencyComparison``);
* ``skip_gate``: a learned per-input skip gate over a residual block (``train_skip_gate``).
"""

from .skip_gate import SkipGateResult, forced_accuracy, gated_net, train_skip_gate
from .staged import LatencyComparison, StagedTFLite, compare_latency

__all__ = [
    "LatencyComparison",
    "SkipGateResult",
    "StagedTFLite",
    "compare_latency",
    "forced_accuracy",
    "gated_net",
    "train_skip_gate",
]
