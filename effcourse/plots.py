"""The course's recurring plots in one style: the tradeoff chart above all (notebook 00).

Every figure can be saved as PNG under build/figures/ with ``save``.
"""
from __future__ import annotations

import numpy as np

from . import env, results

MARKERS = {"lenet_300_100": "o", "lenet5": "s", "cnn": "^"}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def style():
    """Apply the course's plot style (called by every helper here)."""
    plt = _plt()
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 130, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
        "legend.fontsize": 8, "legend.frameon": False,
    })
    return plt


def save(fig, name: str):
    """Save ``fig`` as build/figures/<name>.png (written atomically) and return the path."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return env.atomic_write_bytes(env.build_dir("figures") / f"{name}.png", buf.getvalue())


def _finish(ax, data, xlabel: str, title: str, empty: str):
    """Shared finish of the results charts: log x, labels, title with the profile, legend."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title.replace("{profile}", str(data["profile"].iloc[0]) if len(data) else "?"))
    if len(data):
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center")
    return ax


def technique_colors(table) -> dict:
    """One stable colour per technique of a results table (the same in every chart of it)."""
    plt = _plt()
    names = sorted(table["technique"].dropna().unique()) if len(table) else []
    cmap = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def tradeoff(table, ax=None, title: str | None = None, highlight: str | None = None,
             annotate: bool = False, frontier: bool = True):
    """Accuracy (%) against compressed size (KB, log axis), one colour per technique and one
    marker per model, the Pareto frontier of each model dashed, baselines ringed.

    ``table`` is a results DataFrame (``results.load()``); rows without size or accuracy are
    skipped. ``highlight`` names a notebook whose points are drawn larger.
    """
    plt = style()
    data = table.dropna(subset=["size_bytes", "accuracy"]) if len(table) else table
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = technique_colors(table)
    for (tech, model), grp in data.groupby(["technique", "model"]):
        big = highlight is not None and (grp["notebook"] == highlight).any()
        ax.scatter(grp["size_bytes"] / 1024, grp["accuracy"] * 100, s=46 if big else 24,
                   marker=MARKERS.get(model, "D"), color=colors[tech], alpha=0.85,
                   edgecolor="black" if tech == "baseline" else "none", linewidth=1.2,
                   label=f"{tech} ({model})")
        if annotate:
            for _, r in grp.iterrows():
                ax.annotate(r["variant"], (r["size_bytes"] / 1024, r["accuracy"] * 100),
                            fontsize=6, alpha=0.7, xytext=(3, 2), textcoords="offset points")
    if frontier:
        for model, grp in data.groupby("model"):
            front = results.pareto_front(grp)
            if len(front) > 1:
                ax.plot(front["size_bytes"] / 1024, front["accuracy"] * 100, "--", color="grey",
                        linewidth=0.9, zorder=0)
    return _finish(ax, data, "compressed size of the deployable file (KB, log scale)",
                   title or "Accuracy versus size ({profile} profile); dashed: Pareto frontier per model",
                   "no results recorded yet")


def curves(series: dict, xlabel: str, ylabel: str, title: str, ax=None, logy: bool = False):
    """Line plot of several named curves (loss per step, accuracy per sparsity, ...)."""
    plt = style()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for name, ys in series.items():
        if isinstance(ys, tuple) and len(ys) == 2:
            ax.plot(ys[0], ys[1], label=str(name))
        else:
            ax.plot(np.arange(len(ys)), ys, label=str(name))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    if series:
        ax.legend()
    return ax


def digits(images, labels=None, ncols: int = 10, title: str | None = None, size: float = 0.9):
    """A grid of digit images with optional labels (strings or ints) under each."""
    plt = style()
    images = np.asarray(images)
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].squeeze(), cmap="gray_r")
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def latency_chart(table, ax=None, title: str | None = None):
    """Accuracy (%) against median single-sample latency (ms, log axis), p90 as an error bar,
    one colour per technique: every results row that has a latency."""
    plt = style()
    data = table.dropna(subset=["latency_ms", "accuracy"]) if len(table) else table
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = technique_colors(table)
    for tech in sorted(data["technique"].unique()) if len(data) else []:
        grp = data[data["technique"] == tech]
        p90 = grp["latency_p90_ms"].fillna(grp["latency_ms"])
        ax.errorbar(grp["latency_ms"], grp["accuracy"] * 100,
                    xerr=[np.zeros(len(grp)), (p90 - grp["latency_ms"]).clip(lower=0)],
                    fmt="o", ms=4, color=colors[tech], alpha=0.8, capsize=2, label=tech)
    return _finish(ax, data, "single-sample latency in LiteRT, median (ms, log scale; bar to p90)",
                   title or "Accuracy versus latency ({profile} profile)", "no latencies recorded yet")


def _number_format(values, percent: bool):
    """A format for one column of numbers: separators, no scientific notation."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if percent:
        return lambda v: "" if v is None or not np.isfinite(v) else f"{100 * v:.2f} %"
    if finite.size and np.all(finite == np.round(finite)):
        return lambda v: "" if v is None or not np.isfinite(v) else f"{v:,.0f}"
    top = float(np.max(np.abs(finite))) if finite.size else 0.0
    digits = 0 if top >= 1000 else 2 if top >= 1 else 4 if top >= 1e-4 else 6
    return lambda v: "" if v is None or not np.isfinite(v) else f"{v:,.{digits}f}"


def table(df, percent=(), caption: str | None = None, hide_index: bool = False):
    """A DataFrame formatted for people (notebook 00): thousands separators, fractions in
    ``percent`` shown as percentages, no scientific notation; returns a pandas Styler.

    Put units in column names (``"size (KB)"``, ``"latency (ms)"``); pass accuracy-like
    fraction columns in ``percent``. Unknown ``percent`` columns are an error (a renamed
    column would otherwise silently lose its format).
    """
    import pandas as pd

    missing = [c for c in percent if c not in df.columns]
    if missing:
        raise KeyError(f"percent names columns the table does not have: {missing}; "
                       f"its columns are {list(df.columns)}")
    formats = {}
    for col in df.columns:
        series = df[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        values = [None if pd.isna(v) else float(v) for v in series]
        formats[col] = _number_format(values, col in percent)
    styler = df.style.format(formats, na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    if hide_index:
        styler = styler.hide(axis="index")
    return styler
