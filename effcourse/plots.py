"""The course's recurring plots in one style: the tradeoff chart above all (notebook 00).

Every figure can be saved as PNG under build/figures/ with ``save``.
"""

from __future__ import annotations

import numpy as np

from . import env, results

MARKERS = {"lenet_300_100": "o", "lenet5": "s", "cnn": "^", "mlp": "D"}
LINESTYLES = ["-", "--", "-.", ":"]


def style():
    """Apply the course's plot style (called by every helper here).
    Introduced in notebook 00."""
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 130, "axes.grid": True, "grid.alpha": 0.3})
    plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "font.size": 10})
    plt.rcParams.update(
        {"axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10}
    )
    plt.rcParams.update({"legend.fontsize": 9, "legend.title_fontsize": 9, "legend.frameon": False})
    return plt


def save(fig, name: str):
    """Save ``fig`` as build/figures/<name>.png (written atomically) and return the path.
    Introduced in notebook 00."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return env.atomic_write_bytes(env.build_dir("figures") / f"{name}.png", buf.getvalue())


ERROR_LABEL = "test error (%, log scale; lower is better)"
SIZE_LABEL = "compressed size of the deployable file (KB, log scale)"

# Every technique of the results log belongs to one family: the course map's colours and
# legend (notebook 08). Order = legend order.
FAMILIES = {
    "baseline": ("baseline",),
    "narrower model": ("narrower model", "static width scaling"),
    "pruning": ("pruning", "pruning 2:4", "channel pruning"),
    "quantization": ("post-training quantization", "quantization-aware training"),
    "clustering / Deep Compression": (
        "clustering",
        "collaborative",
        "deep compression",
        "deep compression stages",
    ),
    "distillation": ("distillation", "distillation + deep compression"),
    "mixed precision": ("mixed precision",),
    "dynamic (early exit)": ("early exit",),
    "automated search": ("automated search",),
    "parallelism": ("data_parallel", "multi_worker", "pipeline"),
    "deployment runtime": ("LiteRT", "ONNX Runtime"),  # notebook 09: the same models in two runtimes
}
# A technique not listed above is placed by the first keyword it contains (in this order).
_KEYWORDS = {
    "distillation": ("distill",),
    "clustering / Deep Compression": ("deep compression", "cluster"),
    "pruning": ("prun",),
    "quantization": ("quantiz", "int8"),
    "mixed precision": ("precision",),
    "dynamic (early exit)": ("exit", "dynamic"),
    "automated search": ("search",),
    "parallelism": ("parallel", "pipeline", "worker"),
    "narrower model": ("narrow", "width"),
    "baseline": ("baseline",),
    "deployment runtime": ("onnx", "litert"),
}
_COLORS = (
    "black tab:brown tab:blue tab:orange tab:green tab:purple tab:cyan tab:red tab:pink tab:gray tab:olive"
)
FAMILY_COLORS = dict(zip(FAMILIES, _COLORS.split()))
MODEL_NAMES = {
    "lenet_300_100": "LeNet-300-100",
    "lenet5": "LeNet-5",
    "cnn": "small CNN",
    "mlp": "one-hidden-layer MLP (00)",
    "balanced_mlp": "balanced MLP (07)",
    "decoder": "small decoder (10): addition, error = 1 - exact match",
}
# Course-map panels: the one-hidden-layer MLPs of notebook 00 share LeNet-300-100's panel.
PANELS = {
    "lenet_300_100": "MLPs: LeNet-300-100, 00's narrow and 07's wide MLPs",
    "lenet5": "LeNet-5",
    "cnn": "small CNN",
}
_PANEL_OF = {"mlp": "lenet_300_100", "balanced_mlp": "lenet_300_100"}


def family(technique: str) -> str:
    """The family of a technique name (``FAMILIES``; keywords for new names; else 'other').
    Introduced in notebook 05."""
    name = str(technique).strip().lower()
    for fam, members in FAMILIES.items():
        if name in members:
            return fam
    return next((fam for fam, words in _KEYWORDS.items() for w in words if w in name), "other")


def _error_pct(accuracy):
    """Test error in percent, floored at 0.01 % so it fits a log axis."""
    return np.clip((1 - np.asarray(accuracy, dtype=float)) * 100, 0.01, None)


_NICE_LEVELS = (
    [1],
    [1, 3],
    [1, 2, 5],
    [1, 2, 3, 5],
    [1, 1.5, 2, 3, 5, 7],
    [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9],
)


def _nice_ticks(lo: float, hi: float, max_ticks: int = 7) -> list:
    """Readable tick values for a log axis from ``lo`` to ``hi``: about 4, at most ``max_ticks``."""
    e0, e1 = int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1
    best = []
    for level in _NICE_LEVELS:
        ticks = [m * 10.0**e for e in range(e0, e1 + 1) for m in level if lo <= m * 10.0**e <= hi]
        if len(ticks) > max_ticks:
            break
        best = ticks
        if len(ticks) >= 4:
            break
    if len(best) < 2:  # a very narrow range: two significant digits
        best = sorted({float(f"{t:.2g}") for t in np.geomspace(lo, hi, 4)[1:-1]} | set(best))
    return [float(f"{t:.6g}") for t in best]


def _log_axis(ax, which: str, lo: float, hi: float):
    """Log scale from lo to hi with plain-number ticks (0.8, 1, 1.5, ... never 10^x)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)
    if ticks := _nice_ticks(lo, hi):
        axis.set_ticks(ticks)
    axis.set_major_formatter(FuncFormatter(lambda value, _pos=None: f"{value:,g}"))
    axis.set_minor_locator(NullLocator())


def plain_log(ax, which: str = "y"):
    """Plain-number ticks (0.2, 0.3, 0.5, 1) on a log axis that already has its limits.
    Introduced in notebook 01."""
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    _log_axis(ax, which, min(lo, hi), max(lo, hi))
    return ax


def _limits(values, margin: float = 0.1, min_decades: float = 0.25):
    """(lo, hi) of a log axis holding ``values`` with a margin (fraction of the span, in decades)."""
    v = np.log10(np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float))
    if v.size == 0:
        return 1.0, 10.0
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < min_decades:
        mid = (hi + lo) / 2
        lo, hi = mid - min_decades / 2, mid + min_decades / 2
    pad = margin * (hi - lo) + 0.03
    return 10 ** (lo - pad), 10 ** (hi + pad)


def _wrap(text: str, width: int = 24) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width, break_long_words=False)) or str(text)


_OFFSETS = [
    (7, 2, "left", "bottom"),
    (7, -2, "left", "top"),
    (-7, 2, "right", "bottom"),
    (-7, -2, "right", "top"),
]
_OFFSETS += [(0, 8, "center", "bottom"), (0, -8, "center", "top")]
# label positions around a point, nearest first: the offsets scaled, then higher and lower
_CANDIDATES = [(dx * k, dy * k, ha, va) for k in (1, 2.2, 3.6, 5.5) for dx, dy, ha, va in _OFFSETS]
_CANDIDATES += [(dx, 8 * k * np.sign(dy), ha, va) for k in (1.6, 3) for dx, dy, ha, va in _OFFSETS[:4]]


def _place_labels(ax, xs, ys, texts, fontsize: float = 9, lines=(), force: bool = False, obstacles=None):
    """Put ``texts`` next to the points (xs, ys) without overlapping each other, the points or
    ``lines`` (lists of (x, y) data vertices), inside the axes; far ones get a leader line.
    Returns the annotations, or None (nothing left drawn) when one found no free place, unless ``force``."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    axbox = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    others = np.zeros((0, 2))
    if obstacles is not None and len(obstacles):
        others = ax.transData.transform(np.asarray(obstacles, dtype=float))
    r = 4.5 * fig.dpi / 72
    boxes = [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in np.concatenate([pts, others])]
    samples = [np.zeros((0, 2))]
    for line in lines:
        v = ax.transData.transform(np.asarray(line, dtype=float))
        for a, b in zip(v[:-1], v[1:]):
            samples.append(a + np.linspace(0, 1, max(2, int(np.hypot(*(b - a)) / 3)))[:, None] * (b - a))
    sx, sy = np.concatenate(samples).T
    arrow = dict(arrowstyle="-", color="0.45", lw=0.7, shrinkA=0, shrinkB=3)
    kw = dict(textcoords="offset points", fontsize=fontsize, zorder=6)
    placed, out = [], []
    for i in np.argsort(-pts[:, 1]) if len(pts) else []:
        best, best_cost = None, None
        for dx, dy, ha, va in _CANDIDATES:
            far = arrow if np.hypot(dx, dy) > 12 else None
            t = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), ha=ha, va=va, arrowprops=far, **kw)
            bb = t.get_window_extent(renderer).expanded(1.04, 1.08)
            cost = sum(bb.overlaps(b) for b in placed) * 3 + sum(bb.overlaps(b) for b in boxes)
            cost += int(np.any((sx > bb.x0) & (sx < bb.x1) & (sy > bb.y0) & (sy < bb.y1)))
            inside = bb.x0 >= axbox.x0 and bb.x1 <= axbox.x1 and bb.y0 >= axbox.y0 and bb.y1 <= axbox.y1
            cost += 0 if inside else 10
            if best_cost is None or cost < best_cost:
                if best is not None:
                    best.remove()
                best, best_cost, best_bb = t, cost, bb
                if cost == 0:
                    break
            else:
                t.remove()
        if best_cost and not force:
            for t in out + [best]:
                t.remove()
            return None
        placed.append(best_bb)
        out.append(best)
    return out


def _legend_right(ax, handles, labels, title=None):
    return ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0,
        title=title,
        alignment="left",
    )


def _key_handle(**kw):
    from matplotlib.lines import Line2D

    return Line2D([], [], **kw)


def tradeoff(table, ax=None, title=None, highlight=None, annotate=False, frontier=True, labels="auto"):
    """Test error (%, log axis) against compressed size (KB, log axis): the course's chart.
    Introduced in notebook 00.

    With ``highlight`` (a notebook name) the axes are scaled to that notebook's points, drawn in
    colour (one per technique, one marker per model) and labelled (``labels``: "auto" names
    where they fit, else numbers with a key; "names", "numbers", "none"); the rest of the course
    is grey context, the dashed line each model's Pareto frontier. Without ``highlight``: every
    row coloured by technique family (``annotate=True`` labels them). Rows lacking size or
    accuracy are skipped.
    """
    plt = style()
    data = table.dropna(subset=["size_bytes", "accuracy"]) if len(table) else table
    own_fig = ax is None
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.6, 4.9))
        fig.subplots_adjust(left=0.09, right=0.66, bottom=0.13, top=0.9)
    ax.set_title(_title(title or "Test error versus size ({profile} profile)", data))
    ax.set_xlabel(SIZE_LABEL)
    ax.set_ylabel(ERROR_LABEL)
    if not len(data):
        ax.text(0.5, 0.5, "no results recorded yet", transform=ax.transAxes, ha="center")
        return ax
    data = data.assign(kb=data["size_bytes"] / 1024, err=_error_pct(data["accuracy"]))
    mine = data[data["notebook"] == highlight] if highlight is not None else data.iloc[0:0]
    if highlight is None or mine.empty:
        mine, rest, by = data, data.iloc[0:0], "family"
    else:
        rest, by = data[data["notebook"] != highlight], "technique"
    _log_axis(ax, "x", *_limits(mine["kb"]))
    _log_axis(ax, "y", *_limits(mine["err"]))
    handles, names, lines = [], [], []
    if len(rest):
        ax.scatter(rest["kb"], rest["err"], s=14, color="0.78", zorder=1, linewidth=0)
        handles.append(_key_handle(marker="o", linestyle="", color="0.75", markersize=5))
        names.append("other notebooks")
    for model in mine["model"].unique() if frontier else []:
        front = results.pareto_front(data[data["model"] == model])
        if len(front) > 1:
            ax.plot(front["kb"], front["err"], "--", color="0.35", linewidth=1, zorder=2)
            lines.append(np.column_stack([front["kb"], front["err"]]))
    if lines:
        handles.append(_key_handle(linestyle="--", color="0.35", linewidth=1))
        names.append(
            "Pareto frontier, all notebooks" + (" (per model)" if mine["model"].nunique() > 1 else "")
        )
    keys = mine["technique"].map(family) if by == "family" else mine["technique"]
    order = list(FAMILIES) if by == "family" else list(dict.fromkeys(mine["technique"]))
    order = [k for k in order if k in set(keys)] + sorted(set(keys) - set(order))
    if by == "family":
        colors = {k: FAMILY_COLORS.get(k, "tab:gray") for k in order}
    else:
        colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(order)}
    edge = dict(edgecolor="black", linewidth=0.6, zorder=4)
    key_kw = dict(marker="o", linestyle="", markeredgecolor="black", markeredgewidth=0.6, markersize=7)
    for key in order:
        for model, g in mine[keys == key].groupby("model"):
            ax.scatter(g["kb"], g["err"], s=44, marker=MARKERS.get(model, "D"), color=colors[key], **edge)
        handles.append(_key_handle(color=colors[key], **key_kw))
        names.append(str(key))
    models_here = list(dict.fromkeys(mine["model"]))
    for model in models_here if len(models_here) > 1 or by == "technique" else []:
        marker = MARKERS.get(model, "D")
        handles.append(
            _key_handle(marker=marker, linestyle="", color="white", markeredgecolor="black", markersize=7)
        )
        names.append(MODEL_NAMES.get(model, model))
    legend = _legend_right(ax, handles, names)
    if highlight is not None or annotate:
        _label_points(ax, mine, legend, labels, lines, own_fig=own_fig)
    return ax


def _title(title: str, data) -> str:
    prof = str(data["profile"].iloc[0]) if len(data) and "profile" in data else "?"
    return _wrap(title.replace("{profile}", prof), 70)


def _label_points(ax, mine, legend, labels: str, lines, own_fig: bool = False):
    """Label every point of ``mine``: variant names if they fit, else numbers and a key (beside
    the chart; below it in two columns when long and the figure is ours to resize)."""
    if labels == "none" or not len(mine):
        return
    rank = {m: i for i, m in enumerate(dict.fromkeys(mine["model"]))}
    mine = mine.sort_values(["model", "kb"], key=lambda s: s.map(rank) if s.name == "model" else s)
    several = mine["model"].nunique() > 1
    variants = [str(v) for v in mine["variant"]]
    models_ = [MODEL_NAMES.get(m, m) for m in mine["model"]]
    if several and len(set(variants)) == 1:  # e.g. the three float32 baselines: name the models
        names = models_
    elif len(set(variants)) < len(variants):
        names = [_wrap(f"{m}: {v}") for m, v in zip(models_, variants)]
    else:
        names = [_wrap(v) for v in variants]
    xs, ys = mine["kb"].to_numpy(), mine["err"].to_numpy()
    if labels in ("auto", "names"):
        if _place_labels(ax, xs, ys, names, lines=lines, force=labels == "names") is not None:
            return
    key = [
        f"{i + 1}  " + (f"{m}: " if several else "") + v for i, (m, v) in enumerate(zip(models_, variants))
    ]
    fig = ax.figure
    wrapped = [_wrap(k, 46).replace("\n", "\n      ") for k in key]
    if own_fig and sum(w.count("\n") + 1 for w in wrapped) > 14:
        half = int(np.ceil(len(wrapped) / 2))
        cols = [wrapped[:half], wrapped[half:]]
        rows = max(sum(w.count("\n") + 1 for w in c) for c in cols)
        (w_in, h_in), pos = fig.get_size_inches(), ax.get_position()
        extra = rows * 9 * 1.3 / 72 + 0.35
        new_h = h_in + extra
        fig.set_size_inches(w_in, new_h)
        fig.subplots_adjust(bottom=(pos.y0 * h_in + extra) / new_h, top=1 - (1 - pos.y1) * h_in / new_h)
        for col, x in zip(cols, (0.02, 0.52)):
            fig.text(
                x, (extra - 0.2) / new_h, "\n".join(col), va="top", ha="left", fontsize=9, linespacing=1.3
            )
    else:
        bottom = legend.get_window_extent(fig.canvas.get_renderer()).transformed(ax.transAxes.inverted()).y0
        text = "\n".join(wrapped)
        ax.text(
            1.02,
            bottom - 0.04,
            text,
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=9,
            linespacing=1.25,
        )
    _place_labels(ax, xs, ys, [str(i + 1) for i in range(len(mine))], lines=lines, force=True)


def course_frontier(table):
    """The rows on the Pareto frontier of each course-map panel, numbered as on the map.

    Panels are per model (00's narrow MLPs share LeNet-300-100's); ``#`` is the number each
    frontier point carries on ``course_map``.

    Introduced in notebook 08.
    """
    data = table.dropna(subset=["size_bytes", "accuracy"]) if len(table) else table
    if not len(data):
        return data.assign(panel=[], **{"#": []})
    data = data.assign(panel=data["model"].map(lambda m: _PANEL_OF.get(m, m)))
    fronts = [results.pareto_front(g).assign(panel=p) for p, g in data.groupby("panel", sort=False)]
    out = __import__("pandas").concat(fronts)
    rank = {p: i for i, p in enumerate(list(PANELS) + sorted(set(out["panel"]) - set(PANELS)))}
    out = out.sort_values(["panel", "size_bytes"], key=lambda s: s.map(rank) if s.name == "panel" else s)
    return out.assign(**{"#": range(1, len(out) + 1)})


def _panels(n: int, figsize=(9.0, 7.6)):
    """A grid for n panels plus one cell for the legend; returns (fig, panel axes, legend axes)."""
    plt = style()
    cols = 2 if n >= 2 else 1
    rows = int(np.ceil((n + 1) / cols)) if n >= 2 else 2
    fig, axes = plt.subplots(rows, cols, figsize=(figsize[0], figsize[1] * rows / 2), squeeze=False)
    axes = list(axes.ravel())
    for extra in axes[n + 1 :]:
        extra.remove()
    axes[n].axis("off")
    return fig, axes[:n], axes[n]


def _course_panels(table, x: str, xlabel: str, title: str, papers: bool, numbers: bool):
    """The body of course_map: one panel per model, colours by family."""
    from matplotlib.lines import Line2D

    need = ["accuracy", x]
    data = table.dropna(subset=need) if len(table) else table
    if not len(data):
        plt = style()
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.text(0.5, 0.5, "no results recorded yet", transform=ax.transAxes, ha="center")
        ax.set_title(_title(title, data))
        return fig, [ax]
    scale = 1 / 1024 if x == "size_bytes" else 1.0
    data = data.assign(
        xv=data[x] * scale,
        err=_error_pct(data["accuracy"]),
        panel=data["model"].map(lambda m: _PANEL_OF.get(m, m)),
        fam=data["technique"].map(family),
    )
    order = [p for p in PANELS if p in set(data["panel"])] + sorted(set(data["panel"]) - set(PANELS))
    fig, axes, legend_ax = _panels(len(order))
    paper = None
    if papers and x == "size_bytes":
        from . import report

        paper = report.paper_points(table).assign(
            err=lambda d: _error_pct(d["accuracy"]), xv=lambda d: d["size_bytes"] * scale
        )
    front_all = course_frontier(table) if numbers else None
    fams_used = []
    for ax, panel in zip(axes, order):
        d = data[data["panel"] == panel]
        pp = paper[paper["model"] == panel] if paper is not None else None
        xs = list(d["xv"]) + (list(pp["xv"]) if pp is not None else [])
        ys = list(d["err"]) + (list(pp["err"]) if pp is not None else [])
        _log_axis(ax, "x", *_limits(xs, margin=0.08))
        _log_axis(ax, "y", *_limits(ys, margin=0.08))
        for fam in [f for f in list(FAMILIES) + ["other"] if f in set(d["fam"])]:
            g = d[d["fam"] == fam]
            ax.scatter(
                g["xv"],
                g["err"],
                s=30,
                color=FAMILY_COLORS.get(fam, "tab:gray"),
                edgecolor="white",
                linewidth=0.5,
                zorder=3,
                alpha=0.9,
            )
            fams_used.append(fam)
        front = results.pareto_front(d, size=x)
        if len(front) > 1:
            ax.plot(front["xv"], front["err"], "-", color="black", linewidth=1.1, zorder=2.5, alpha=0.8)
        ax.scatter(
            front["xv"], front["err"], s=90, facecolor="none", edgecolor="black", linewidth=1.1, zorder=4
        )
        if front_all is not None:
            f = front_all[front_all["panel"] == panel]
            _place_labels(
                ax,
                (f[x] * scale).to_numpy(),
                _error_pct(f["accuracy"]),
                [str(n) for n in f["#"]],
                fontsize=10,
                force=True,
                obstacles=np.column_stack([d["xv"], d["err"]]),
            )
        if pp is not None and len(pp):
            ax.scatter(
                pp["xv"],
                pp["err"],
                s=150,
                marker="*",
                color="gold",
                edgecolor="black",
                linewidth=0.8,
                zorder=5,
            )
        ax.set_title(
            PANELS.get(panel, MODEL_NAMES.get(panel, panel))
            if (d["model"] != panel).any()
            else MODEL_NAMES.get(panel, panel),
            fontsize=10,
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test error (%, log)")
    names = [f for f in list(FAMILIES) + ["other"] if f in set(fams_used)]
    handles = [
        Line2D([], [], marker="o", linestyle="", color=FAMILY_COLORS.get(f, "tab:gray"), markersize=7)
        for f in names
    ]
    handles.append(
        Line2D([], [], marker="o", color="black", markerfacecolor="none", markersize=9, linewidth=1.1)
    )
    names.append("Pareto frontier" + (" (numbers: table below)" if numbers else ""))
    if paper is not None:
        handles.append(
            Line2D([], [], marker="*", linestyle="", color="gold", markeredgecolor="black", markersize=12)
        )
        names.append(_wrap(f"paper: {report.PAPER_POINTS[0]['paper']}, baseline and Deep Compression", 34))
    legend_ax.legend(
        handles,
        names,
        loc="center left",
        fontsize=10,
        title="technique family",
        title_fontsize=10,
        alignment="left",
        borderaxespad=0,
        labelspacing=0.7,
    )
    prof = str(data["profile"].iloc[0]) if "profile" in data else "?"
    fig.suptitle(_wrap(title.replace("{profile}", prof), 95), fontsize=11)
    fig.tight_layout()
    return fig, axes


def course_map(table, title: str | None = None, papers: bool = True, numbers: bool = True):
    """The whole course on one map (notebook 08): test error (%, log) against size (KB, log),
    one panel per model, one colour per technique family (``FAMILIES``), the Pareto frontier
    ringed and joined (numbered as in ``course_frontier``), the papers' points as stars.
    Returns the figure.

    Introduced in notebook 08.
    """
    fig, _ = _course_panels(
        table,
        "size_bytes",
        "size (KB, log scale)",
        title or "Every measured variant of the course ({profile} profile); lower left is better",
        papers,
        numbers=numbers,
    )
    return fig


def curves(
    series: dict, xlabel: str, ylabel: str, title: str, ax=None, logy: bool = False, legend: str = "right"
):
    """Line plot of several named curves, each with its own colour and line style; the legend
    outside the data (``legend``: "right", "below" or "none"). A curve is a list of y values or (x, y).
    Introduced in notebook 01."""
    plt = style()
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.4, 4.2))
        if series and legend in ("right", "below"):
            right, bottom = (0.7, 0.14) if legend == "right" else (0.97, 0.3)
            fig.subplots_adjust(left=0.1, right=right, bottom=bottom, top=0.88)
    for i, (name, ys) in enumerate(series.items()):
        dash = LINESTYLES[(i // 10 if len(series) > 10 else i) % len(LINESTYLES)]
        xy = ys if isinstance(ys, tuple) and len(ys) == 2 else (np.arange(len(ys)), ys)
        ax.plot(*xy, label=str(name), linestyle=dash, linewidth=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title, 70))
    if logy:
        ax.set_yscale("log")
    if series and legend == "right":
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    elif series and legend == "below":
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(series)), borderaxespad=0)
    return ax


def digits(
    images, labels=None, ncols: int = 10, title: str | None = None, size: float = 0.9, fontsize: float = 10
):
    """A grid of digit images with optional labels (strings or ints) above each.
    Introduced in notebook 00. At most 9 inches wide, so JupyterLab shows it unscaled."""
    plt = style()
    images = np.asarray(images)
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    size = min(size, 9.0 / ncols)
    texts = [str(lab) for lab in labels] if labels is not None else []
    longest = max((len(t) for t in texts), default=1) if labels is not None else 0
    label_h = (
        (max((t.count("\n") + 1 for t in texts), default=1) if labels is not None else 0)
        * fontsize
        * 1.4
        / 72
    )
    figsize = (ncols * size, nrows * (size + label_h) + (0.45 if title else 0.1))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    label_size = fontsize if longest * fontsize * 0.6 / 72 <= size * 1.15 else max(9, fontsize - 1)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].squeeze(), cmap="gray_r")
            if labels is not None:
                ax.set_title(texts[i], fontsize=label_size, pad=2)
    if title:
        fig.suptitle(_wrap(title, 90), fontsize=11)
    fig.tight_layout(pad=0.3)
    return fig


def _number_format(values, percent: bool):
    """A format for one column of numbers: separators, no scientific notation."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if percent:
        return lambda v: "" if v is None or not np.isfinite(v) else f"{100 * v:.2f} %"
    if finite.size and np.all(finite == np.round(finite)):
        spec = ",.0f"
    else:
        top = float(np.max(np.abs(finite))) if finite.size else 0.0
        places = 0 if top >= 1000 else 2 if top >= 1 else 4 if top >= 1e-4 else 6
        small = np.abs(finite[finite != 0])
        if places == 0 and small.size and small.min() < 10:  # e.g. a loss of 2.3 next to a diverged 7e5
            places = 2
        spec = f",.{places}f"
    return lambda v: "" if v is None or not np.isfinite(v) else format(v, spec)


def table(df, percent=(), caption: str | None = None, hide_index: bool = False):
    """A DataFrame formatted for people: thousands separators, ``percent`` columns as percentages,
    no scientific notation; returns a pandas Styler.
    Introduced in notebook 00. Put units in column names; an unknown ``percent`` column is an error."""
    import pandas as pd

    missing = [c for c in percent if c not in df.columns]
    if missing:
        raise KeyError(
            f"percent names columns the table does not have: {missing}; its columns are {list(df.columns)}"
        )
    formats = {
        col: _number_format([None if pd.isna(v) else float(v) for v in df[col]], col in percent)
        for col in df.columns
        if pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
    }
    styler = df.style.format(formats, na_rep="")
    text = [c for c in df.columns if c not in formats]
    if text:  # "<= 0.1 points" must show as text, not as the start of an HTML tag
        styler = styler.format(escape="html", subset=text, na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    return styler.hide(axis="index") if hide_index else styler
