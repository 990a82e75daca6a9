"""Dynamic networks: early exits on a backbone, exit rules, mean MACs, staged TFLite, a skip gate (notebook 06).

A *dynamic* network changes the computation it performs per input at inference time. The
canonical, measurable case is early exiting (BranchyNet, Teerapittayanon et al. 2016;
MSDNet, Huang et al. 2018): classifier heads ("exits") are attached part-way through a
backbone, and an input stops at the first exit that is sure enough of its answer.

One module per concern; every public name is re-exported here (``dynamic.route``, ...):

* ``build``: ``build_early_exit`` (an ``EarlyExitNet``: the joint model, its stages and
  their MACs), ``default_head``, ``train_batches``, ``train_joint``;
* ``rules``: the exit rules ``confidence`` / ``entropy``, ``check_threshold``, ``route``,
  ``dynamic_predict``, ``mean_macs``, ``exit_shares``, ``sweep``, ``operating_point``;
* ``staged``: ``deploy_stages``, ``StagedTFLite`` (each stage its own .tflite in LiteRT, run
  only when needed) and ``compare_latency`` (per image, interleaved in blocks of images,
  returning a ``LatencyComparison``);
* ``skip_gate``: a learned per-input skip gate over a residual block (``train_skip_gate``);
* ``static``: the static rival, LeNet-5 scaled to the same mean MACs (``lenet5_scaled``,
  ``alpha_for_macs``).
"""

from .build import EarlyExitNet, build_early_exit, default_head, train_batches, train_joint
from .rules import (
    ALWAYS_EXIT,
    NEVER_EXIT,
    RULES,
    check_threshold,
    confidence,
    dynamic_predict,
    entropy,
    exit_mask,
    exit_shares,
    mean_macs,
    operating_point,
    route,
    sweep,
)
from .skip_gate import SkipGateResult, forced_accuracy, gated_net, train_skip_gate
from .staged import LatencyComparison, StagedTFLite, compare_latency, deploy_stages
from .static import alpha_for_macs, lenet5_scaled, scaled_widths

__all__ = [
    "ALWAYS_EXIT",
    "NEVER_EXIT",
    "RULES",
    "EarlyExitNet",
    "LatencyComparison",
    "SkipGateResult",
    "StagedTFLite",
    "build_early_exit",
    "check_threshold",
    "compare_latency",
    "confidence",
    "default_head",
    "deploy_stages",
    "dynamic_predict",
    "entropy",
    "exit_mask",
    "exit_shares",
    "forced_accuracy",
    "gated_net",
    "mean_macs",
    "operating_point",
    "route",
    "sweep",
    "train_batches",
    "train_joint",
    "train_skip_gate",
    "alpha_for_macs",
    "lenet5_scaled",
    "scaled_widths",
]
