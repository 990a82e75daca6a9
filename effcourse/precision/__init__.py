"""Mixed precision: Keras policies, loss scaling, side-by-side training and parity (notebook 05).

One module per seam; every name is re-exported here, so ``precision.with_policy`` etc. work
as before:

* ``policies``: ``use_policy`` sets Keras' global dtype policy for a block and always
  restores the old one; ``with_policy`` rebuilds a model under a policy (same weights) with
  a float32 output layer; ``check_policy`` refuses a model that does not follow the policy.
* ``scaling``: ``compile_mixed`` (a checked ``LossScaleOptimizer`` for float16);
  ``underflow_stats`` / ``underflow_table`` show which gradient magnitudes float16 flushes
  to zero.
* ``measurement``: ``train_side_by_side`` trains several models on the same batches in
  interleaved chunks, ``probe_step_times`` and ``plan_side_by_side`` bound that training by
  a time budget, ``time_ops`` times single operations per dtype, ``activation_memory`` sums
  the bytes of the activations of a forward pass (timing through ``effcourse.timing``).
* ``parity``: ``train_seeds`` trains every policy from the same weights on the same
  batches for several seeds; ``parity_table`` tests each policy's mean against float32's
  seed-to-seed spread (within ``PARITY_K`` standard deviations).
* Hardware: ``hardware_support`` and friends live in ``effcourse.hardware`` (one place for
  hardware detection) and are re-exported here.

Keras here is tf_keras (``effcourse.keras``).
"""

from __future__ import annotations

from ..hardware import CPU_FLAGS, GPU_BFLOAT16_CC, GPU_FLOAT16_CC, cpu_flags, gpu_devices, read_cpuinfo
from ..hardware import support as hardware_support
from ..hardware import support_table as hardware_table
from .measurement import (
    SideBySide,
    SideBySidePlan,
    activation_memory,
    op_functions,
    op_table,
    plan_side_by_side,
    probe_step_times,
    time_ops,
    train_side_by_side,
)
from .parity import PARITY_K, parity_table, train_seeds
from .policies import (
    OUTPUT_LAYER,
    POLICIES,
    check_policy,
    get_policy,
    global_policy_name,
    layer_dtypes,
    use_policy,
    with_policy,
)
from .scaling import (
    DEFAULT_LOSS_SCALE,
    FLOAT_FORMATS,
    compile_mixed,
    loss_scale_optimizer,
    underflow_stats,
    underflow_table,
)

__all__ = [
    "PARITY_K",
    "parity_table",
    "train_seeds",
    "CPU_FLAGS",
    "DEFAULT_LOSS_SCALE",
    "FLOAT_FORMATS",
    "GPU_BFLOAT16_CC",
    "GPU_FLOAT16_CC",
    "OUTPUT_LAYER",
    "POLICIES",
    "SideBySide",
    "SideBySidePlan",
    "activation_memory",
    "check_policy",
    "compile_mixed",
    "cpu_flags",
    "get_policy",
    "global_policy_name",
    "gpu_devices",
    "hardware_support",
    "hardware_table",
    "layer_dtypes",
    "loss_scale_optimizer",
    "op_functions",
    "op_table",
    "plan_side_by_side",
    "probe_step_times",
    "read_cpuinfo",
    "time_ops",
    "train_side_by_side",
    "underflow_stats",
    "underflow_table",
    "use_policy",
    "with_policy",
]
