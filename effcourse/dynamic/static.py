"""The static comparison for early exits: LeNet-5 scaled down to the same mean MACs (notebook 06).

An early-exit network spends less compute on average; the fair rival is a *static* network
that spends that average on every input. ``lenet5_scaled(alpha)`` multiplies every layer's
width by ``alpha``; ``alpha_for_macs`` finds, by bisection, the largest ``alpha`` whose MACs
do not exceed a budget (MACs grow with ``alpha``).
"""

from __future__ import annotations

from .. import measure

LENET5_WIDTHS = (20, 50, 500)  # conv1 filters, conv2 filters, fc1 units


def scaled_widths(alpha: float, widths=LENET5_WIDTHS) -> list[int]:
    """LeNet-5's widths (conv1, conv2, fc1) times ``alpha``, at least 1 each.

    Introduced in notebook 06.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    return [max(1, round(n * alpha)) for n in widths]


def lenet5_scaled(alpha: float):
    """LeNet-5 with every layer's width multiplied by ``alpha`` (a tf_keras model).

    Introduced in notebook 06.
    """
    from .. import models

    return models.lenet5(name=f"lenet5_x{alpha:.2f}", widths=scaled_widths(alpha))


def alpha_for_macs(
    target_macs: float,
    build=lenet5_scaled,
    lo: float = 0.02,
    hi: float = 1.0,
    steps: int = 12,
    macs=measure.macs,
) -> float:
    """The largest width multiplier in [lo, hi] (to 2^-steps of the range) whose model has at
    most ``target_macs`` multiply-accumulates per sample, found by bisection.

    Introduced in notebook 06. Raises ``ValueError`` when even ``lo`` is over the budget.
    """
    if macs(build(lo)) > target_macs:
        raise ValueError(
            f"even alpha={lo} needs {macs(build(lo)):,} MACs, over the budget of "
            f"{target_macs:,.0f}: lower lo or raise the budget."
        )
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs(build(mid)) <= target_macs else (lo, mid)
    return lo
