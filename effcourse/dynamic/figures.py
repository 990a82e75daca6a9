"""Notebook 06's charts of the threshold sweep: accuracy against mean MACs, and where the inputs leave.

Kept here for now; they belong with the course's other recurring plots in ``effcourse.plots``.
Both draw on an ``ax`` the caller made (``plots.style()`` sets the course's look) and return it.
"""
from __future__ import annotations

import numpy as np


def _threshold_label(t) -> str:
    return np.format_float_positional(t, precision=2, unique=False, fractional=False, trim="-")


def draw_sweep(ax, sweeps: dict, op_rule: str, op_threshold: float, op_macs: float, op_accuracy: float,
               full_macs: float, full_accuracy: float, max_drop: float, extra=()):
    """Accuracy against mean MACs (notebook 06): each rule's sweep, the operating point, the full
    network, the accuracy floor ``full_accuracy - max_drop``, and ``extra`` points.

    ``sweeps`` maps a rule to its ``sweep`` table; ``extra`` is a list of
    ``(macs, accuracy, scatter style dict, label)``. Accuracies are fractions. Returns ``ax``.
    """
    import matplotlib.ticker as mticker

    for (r, tab), marker in zip(sweeps.items(), ("o", "s")):
        ax.plot(tab["mean_macs"] / 1e3, 100 * tab["accuracy"], "-", marker=marker, ms=3, lw=1,
                label=f"early exit, {r} rule (test sweep)")
    ax.scatter([op_macs / 1e3], [100 * op_accuracy], s=140, marker="*", color="crimson", zorder=5,
               label=f"operating point ({op_rule} {'>' if op_rule == 'confidence' else '<'} {op_threshold:.4g}, "
                     "chosen on validation)")
    ax.scatter([full_macs / 1e3], [100 * full_accuracy], s=60, marker="s", color="black", zorder=5,
               label="full network (never exit)")
    for x_macs, acc, style, name in extra:
        ax.scatter([x_macs / 1e3], [100 * acc], zorder=5, label=name, **style)
    ax.axhline(100 * (full_accuracy - max_drop), color="grey", ls=":", lw=1,
               label=f"full network - {100 * max_drop:.1f} points")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel("mean MACs per test image (thousands, log scale)")
    ax.set_ylabel("test accuracy (%)")
    shown = [100 * op_accuracy, 100 * full_accuracy] + [100 * acc for _, acc, _, _ in extra]
    span = max(shown) - min(shown)
    ax.set_ylim(min(shown) - 0.3 * span - 0.3, max(shown) + 0.15 * span + 0.15)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.17), ncol=1)
    return ax


def draw_exit_shares(ax, sweep, exit_names, op_threshold: float, rule: str):
    """Where the inputs leave, per threshold (notebook 06): one stacked bar per sweep point, a
    dashed line at the operating point. ``sweep`` is a ``sweep`` table. Returns ``ax``."""
    x = np.arange(len(sweep))
    bottom = np.zeros(len(sweep))
    n_exits = len(exit_names)
    for k, (name, hatch) in enumerate(zip(exit_names, ("", "//", "..", "xx", "\\\\"))):
        col = f"share_exit{k + 1}" if k < n_exits - 1 else "share_final"
        ax.bar(x, 100 * sweep[col], bottom=bottom, width=1.0, label=name, hatch=hatch, edgecolor="white", linewidth=0.3)
        bottom += 100 * sweep[col]
    ticks = np.unique(np.linspace(0, len(x) - 1, 6).round().astype(int))
    ax.set_xticks(ticks, [_threshold_label(t) for t in sweep["threshold"].iloc[ticks]], rotation=30, ha="right")
    ax.axvline(int(np.argmin(np.abs(sweep["threshold"] - op_threshold))), color="crimson", ls="--", lw=1.5,
               label="operating point")
    ax.set(xlabel=f"{rule} threshold t (sweep points in order, not to scale)", ylabel="share of test images (%)",
           title="Where the test images leave, per threshold")
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), title="leaves at", title_fontsize=9)
    return ax
