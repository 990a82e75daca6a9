"""The course's targets against the papers, measured from the results log (notebook 08).

``TARGETS`` is a table, one ``Target`` per row: what it asks, where the figure comes from,
the rows it reads (selected by notebook, technique and model, carrying the structured fields
it needs: never labels), what it measures and the comparisons that must all hold; the short
loop of ``targets(table)`` reads it. ``paper_points`` gives the papers' points to the course map.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

# The papers' LeNet figures the course compares against (Han, Mao, Dally 2016, "Deep
# Compression", Table 1; the baselines' errors are models.PAPER_ERROR): top-1 test error
# after compression and the compression ratio over the dense float32 weights. Used by
# ``targets`` (the goals) and by plots.course_map (the papers' points on the course map).
PAPER_POINTS = [
    {"model": m, "paper": "Han, Mao, Dally 2016", "what": "Deep Compression", "error": e, "compression": x}
    for m, e, x in (("lenet_300_100", 0.0158, 40), ("lenet5", 0.0074, 39))
]


def paper_points(table=None) -> pd.DataFrame:
    """The papers' points (baselines and Deep Compression) as rows of the results log's shape.

    ``size_bytes`` is the dense float32 bytes of the course's baseline (from ``table``'s
    notebook-01 row when there is one, else the architecture's parameter count x 4) over the
    paper's compression ratio; ``accuracy`` is 1 - the paper's error. Notebook 08's map.

    Introduced in notebook 08.
    """
    from . import models

    rows = []
    for model, base_error in models.PAPER_ERROR.items():
        base = _baseline(table, model) if table is not None and len(table) else None
        dense = (
            float(base["dense_fp32_bytes"]) if base is not None else 4.0 * models.build(model).count_params()
        )
        points = [("paper baseline", "Han, Mao, Dally 2016 (their baseline)", base_error, 1)]
        points += [
            (f"{p['what']}, {p['compression']}x", p["paper"], p["error"], p["compression"])
            for p in PAPER_POINTS
            if p["model"] == model
        ]
        rows += [
            dict(model=model, variant=v, paper=s, accuracy=1 - e, size_bytes=dense / x, compression=float(x))
            for v, s, e, x in points
        ]
    return pd.DataFrame(rows)


def _baseline(table, model: str):
    """The notebook-01 baseline row of ``model``, or None if notebook 01 has not run."""
    rows = table[(table["notebook"] == "01_sgd_loss_formulation") & (table["model"] == model)]
    return None if rows.empty else rows.iloc[-1]


def _ratio(numerator, denominator) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0."""
    try:
        num, den = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return float("nan")
    return num / den if den and np.isfinite(num) and np.isfinite(den) else float("nan")


def _extra(row, key, default=None):
    raw = row.get("extra")
    return json.loads(raw).get(key, default) if isinstance(raw, str) else default


def _rows(table, notebook, technique=None, model=None):
    """Rows of one notebook (and technique, model), oldest first: the last row is the newest run."""
    rows = table[table["notebook"] == notebook]
    rows = rows.sort_values("timestamp", kind="stable") if "timestamp" in rows else rows
    if technique is not None:
        rows = rows[rows["technique"] == technique]
    return rows if model is None else rows[rows["model"] == model]


def _field(rows, name):
    """Column ``name`` of ``rows`` (None where empty): the log's structured fields, never labels."""
    if name not in rows:
        return pd.Series([None] * len(rows), index=rows.index, dtype=object)
    return rows[name].map(lambda v: v if isinstance(v, str) and v else None)


def _lacks(rows, name) -> bool:
    """True when ``rows`` exist but none carries the field ``name`` (a log from before the field)."""
    return not rows.empty and _field(rows, name).isna().all()


def _refresh(notebook, field) -> str:
    nb = notebook[:2]
    return f"re-run notebook {nb}: its rows in this log have no `{field}` field (written before notebook {nb} recorded it)"


def _newest(rows, **fields):
    for k, v in fields.items():
        rows = rows[_field(rows, k) == v]
    return None if rows.empty else rows.iloc[-1]


def _base(table, model, key):
    b = _baseline(table, model)
    return float("nan") if b is None else b[key]


# --- what each target measures: (rows, table) -> quantities and "text", or a str saying why not measured


def _pruning(model):
    def measure(rows, table):
        base = _baseline(table, model)
        if base is None:
            return "run notebooks 01 and 02"
        nonzero = rows.apply(lambda r: _extra(r, "nonzero"), axis=1).astype(float)
        rows = rows.assign(fewer=base["dense_fp32_bytes"] / 4 / nonzero)
        ok = rows[rows["accuracy"] >= base["accuracy"]]
        if ok.empty:
            b = rows.sort_values("accuracy").iloc[-1]
            text = f"most accurate: {b['fewer']:.1f}x fewer at {b['accuracy']:.2%}"
            return {
                "fewer": float("nan"),
                "text": f"no pruned variant at the baseline's {base['accuracy']:.2%}; {text}",
            }
        b = ok.sort_values("fewer").iloc[-1]
        text = f"(baseline {base['accuracy']:.2%}; {b['variant']})"
        return {
            "fewer": b["fewer"],
            "text": f"{b['fewer']:.1f}x fewer non-zeros at {b['accuracy']:.2%} {text}",
        }

    return measure


def _speed(mac_x, lat_x, loss, what):
    text = f"{mac_x:.1f}x fewer MACs, {lat_x:.1f}x lower latency, {loss:+.2f} points{what}"
    return dict(mac_x=mac_x, lat_x=lat_x, loss=loss, text=text)


def _channels(rows, table):
    r = rows.iloc[-1]
    speed = _speed(
        _ratio(_base(table, r["model"], "macs"), r["macs"]),
        _ratio(_extra(r, "dense_latency_ms"), r["latency_ms"]),
        (_base(table, r["model"], "accuracy") - r["accuracy"]) * 100,
        " lost",
    )
    return {**speed, "text": f"{r['model']}: {speed['text']}"}


def _int8(rows, table):
    q, parts, losses, smaller = rows.assign(setting=_field(rows, "setting")), [], [], []
    for model, grp in q.groupby("model"):
        f32 = grp[grp["setting"] == "float32"]
        for variant in ("int8", "qat_int8"):
            v = grp[grp["setting"] == variant]
            if len(f32) and len(v):
                losses.append((f32["accuracy"].iloc[0] - v["accuracy"].iloc[0]) * 100)
                smaller.append(f32["size_bytes"].iloc[0] / v["size_bytes"].iloc[0])
                parts.append(f"{model} {variant}: {losses[-1]:+.2f} points, {smaller[-1]:.2f}x smaller")
    return {
        "loss": max(losses, default=-np.inf),
        "smaller": min(smaller, default=np.inf),
        "text": "; ".join(parts),
    }


def _int8_latency(rows, table):
    d = rows[rows["model"] == "lenet_300_100"]
    setting = _field(d, "setting")
    speed = _ratio(
        d.loc[setting == "float32", "latency_ms"].min(), d.loc[setting == "int8", "latency_ms"].min()
    )
    return {"speed": speed, "text": f"{speed:.2f}x", **({} if np.isfinite(speed) else {"reached": None})}


def _deep_compression(model):
    def measure(rows, table):
        base = _baseline(table, model)
        if base is None:
            return "run notebooks 01 and 04"
        r = rows.sort_values("size_bytes").iloc[0]
        x, err = base["dense_fp32_bytes"] / r["size_bytes"], (base["accuracy"] - r["accuracy"]) * 100
        return {"x": x, "err": err, "text": f"{x:.1f}x, error {err:+.2f} points ({r['variant']})"}

    return measure


def _distillation(rows, table):
    teacher = _baseline(table, "lenet5")
    dist = rows.assign(setting=_field(rows, "setting"), role=_field(rows, "role"))
    shares = {}
    for setting in dist.loc[dist["role"].notna(), "setting"].dropna().unique():
        a, d = (
            _newest(dist, role="reference", setting=setting),
            _newest(dist, role="treated", setting=setting),
        )
        if a is None or d is None or teacher is None:
            continue
        # a row may carry every seed's test accuracy (the mean over seeds); else its own accuracy
        e_a, e_d = (1 - float(np.mean(_extra(r, "seed_accuracies") or [r["accuracy"]])) for r in (a, d))
        e_t = 1 - teacher["accuracy"]
        shares[setting] = (_ratio(e_a - e_d, e_a - e_t), e_a, e_d, e_t)
    if not shares:
        nb04 = "04_clustering_distillation_deep_compression"
        return (
            _refresh(nb04, "role")
            if teacher is not None and _lacks(rows, "role")
            else "run notebooks 01 and 04"
        )
    met = [share >= {"all images": 0.5}.get(setting, 0.75) for setting, (share, *_) in shares.items()]
    return {
        "reached": all(met) if all(met) or not any(met) else "partly",
        "text": "; ".join(
            f"{setting}: {share:.0%} (errors {e_a:.2%} alone, {e_d:.2%} distilled, teacher {e_t:.2%})"
            for setting, (share, e_a, e_d, e_t) in shares.items()
        ),
    }


def _early_exit(rows, table):
    f, d = _newest(rows, role="reference"), _newest(rows, role="treated")
    if f is None or d is None:
        return "run notebook 06"
    lat_x = float(_extra(d, "speedup_mean_latency", float("nan")))
    loss = (f["accuracy"] - d["accuracy"]) * 100
    return _speed(_ratio(f["macs"], d["macs"]), lat_x, loss, f" ({d['variant']})")


def _mixed_precision(rows, table):
    """Each mixed policy's mean test loss and accuracy over seeds within PARITY_K float32 sd of float32's."""
    from .precision.parity import parity_table

    mp = rows.assign(setting=_field(rows, "setting"))
    seeded = mp[mp["setting"].notna() & mp.apply(lambda r: _extra(r, "seed_accuracy") is not None, axis=1)]
    if seeded.empty or "float32" not in set(seeded["setting"]):
        return {
            "reached": False,
            "text": "one run per policy, no seed spread to compare with: re-run notebook 05",
        }
    runs = [
        {"policy": r["setting"], "test_loss": loss, "accuracy": acc}
        for _, r in seeded.groupby("setting", sort=False).tail(1).iterrows()  # the newest run of each policy
        for loss, acc in zip(_extra(r, "seed_test_loss"), _extra(r, "seed_accuracy"))
    ]
    try:
        par = parity_table(runs)
    except ValueError as err:
        return {"reached": False, "text": f"{err} Re-run notebook 05."}
    ref, others = par.loc["float32"], par.drop(index="float32")
    parts = [
        f"float32 loss {ref['test loss']:.4f} (sd {ref['test loss sd']:.4f}), accuracy "
        f"{ref['accuracy (%)']:.2f}% (sd {ref['accuracy sd (points)']:.2f}), {int(ref['seeds'])} seeds"
    ] + [
        f"{policy}: loss {r['test loss - float32']:+.4f} (limit {r['loss limit']:.4f}), accuracy "
        f"{r['accuracy - float32 (points)']:+.2f} points (limit {r['accuracy limit (points)']:.2f})"
        f"{'' if r['at parity'] else ', outside'}"
        for policy, r in others.iterrows()
    ]
    outside = int((~others["at parity"].astype(bool)).sum())
    return {"policies": len(others), "outside": outside, "text": "; ".join(parts)}


def _parallel(rows, table):
    def most(technique, key):
        return rows[rows["technique"] == technique].apply(lambda r: _extra(r, key), axis=1).dropna()

    grad, mw = most("data_parallel", "max_abs_diff"), most("multi_worker", "workers_weights_max_diff")
    rel = most("pipeline", "relative_error")
    g = float(grad.max()) if len(grad) else float("nan")
    w = float(mw.max()) if len(mw) else float("nan")
    within = int((rel.astype(float).abs() <= 0.10).sum()) if len(rel) else 0
    text = f"gradient max diff {g:.1e}; workers' weights max diff {w:.1e}; {within} of {len(rel)} (K, M) settings within 10%"
    return {"g": g, "w": w, "within": within, "text": text}


def _size_search(model):
    def measure(rows, table):
        mine = rows.assign(setting=_field(rows, "setting"), role=_field(rows, "role"))
        mine = mine[(mine["model"] == model) & (mine["setting"] == "size")]
        w, ref, base = _newest(mine, role="treated"), _newest(mine, role="reference"), _baseline(table, model)
        dc = _rows(table, "04_clustering_distillation_deep_compression", "deep compression", model)
        hand = dc.sort_values("size_bytes").iloc[0] if len(dc) else ref
        if w is None or base is None or hand is None:
            return "run notebooks 01, 04 and 08"
        where = "notebook 04" if len(dc) else "04's plan re-run in 08"
        loss, x = (base["accuracy"] - w["accuracy"]) * 100, _ratio(w["dense_fp32_bytes"], w["size_bytes"])
        moonshot = x >= 50 and loss <= 0.1 + 1e-9
        moonshot = f"; moonshot 50x: {'yes' if moonshot else 'no'}" if model == "lenet_300_100" else ""
        hand_x = _ratio(hand["dense_fp32_bytes"], hand["size_bytes"])
        text = (
            f"{w['size_bytes']:,.0f} B ({x:.1f}x) at {w['accuracy']:.2%}, {abs(loss):.2f} points "
            f"{'below' if loss > 0 else 'above'} the baseline; {w['variant']}; vs {where}: "
            f"{hand['size_bytes']:,.0f} B ({hand_x:.1f}x){moonshot}"
        )
        return {"over": w["size_bytes"] - hand["size_bytes"], "loss": loss, "text": text}

    return measure


def _latency_search(rows, table):
    lat = rows[_field(rows, "setting") == "latency"]
    w, h = _newest(lat, role="treated"), _newest(lat, role="reference")
    if w is None or h is None:
        return "run notebook 08"
    return {
        "faster": w["latency_ms"] - h["latency_ms"],
        "gain": w["accuracy"] - h["accuracy"],
        "other": _extra(w, "config") != _extra(h, "config"),  # the hand point itself never dominates
        "text": f"{w['latency_ms'] * 1000:.1f} µs at {w['accuracy']:.2%} vs 02's widths "
        f"{h['latency_ms'] * 1000:.1f} µs at {h['accuracy']:.2%} (timed side by side in 08)",
    }


@dataclass(frozen=True)
class Target:
    """One of the course's targets: what it asks, where the figure comes from, the results-log rows it reads
    (``select``: notebook, technique, model; ``needs``: structured fields they must carry), what it measures,
    and the comparisons that decide it (quantity, operator, threshold; all must hold).

    Introduced in notebook 08.
    """

    name: str
    source: str
    select: tuple  # (notebook, technique or None, model or None)
    measure: Callable
    tests: tuple = ()
    missing: str = ""
    needs: tuple = ()


NB02, NB03, NB04 = "02_pruning", "03_quantization", "04_clustering_distillation_deep_compression"
NB08 = "08_automated_compression"

TARGETS = [
    *(
        Target(
            f"pruning {m}: >= 12x fewer non-zero weights, error no higher",
            "Han et al. 2015: 12x on both",
            (NB02, "pruning", m),
            _pruning(m),
            (("fewer", ">=", 12),),
            "run notebooks 01 and 02",
        )
        for m in ("lenet_300_100", "lenet5")
    ),
    Target(
        "channel pruning: >= 2x fewer MACs and >= 2x lower latency, <= 0.5 points lost",
        "issue target",
        (NB02, "channel pruning", None),
        _channels,
        (("mac_x", ">=", 2), ("lat_x", ">=", 2), ("loss", "<=", 0.5)),
        "run notebook 02",
    ),
    Target(
        "int8 (PTQ and QAT): <= 0.1 points lost, >= 3.9x smaller (gzip)",
        "issue target",
        (NB03, None, None),
        _int8,
        (("loss", "<=", 0.1), ("smaller", ">=", 3.9)),
        "run notebook 03",
        ("setting",),
    ),
    Target(
        "int8 latency, LeNet-300-100: >= 2.5x faster than float32 in LiteRT",
        "Efficient Deep Learning book: 1.29x (its CNN, x86)",
        (NB03, None, None),
        _int8_latency,
        (("speed", ">=", 2.5),),
        "run notebook 03",
        ("setting",),
    ),
    *(
        Target(
            f"Deep Compression {p['model']}: >= {p['compression']}x, error +0.1 points at most",
            f"{p['paper']}: {p['compression']}x at {p['error']:.2%} error",
            (NB04, "deep compression", p["model"]),
            _deep_compression(p["model"]),
            (("x", ">=", p["compression"]), ("err", "<=", 0.1)),
            "run notebooks 01 and 04",
        )
        for p in PAPER_POINTS
    ),
    Target(
        "distillation recovers the student-teacher error gap: >= 50% on all images, >= 75% on a small set",
        "Hinton et al. 2015: 146 -> 74 errors, teacher 67 (91%)",
        (NB04, "distillation", None),
        _distillation,
        missing="run notebooks 01 and 04",
    ),
    Target(
        "early exit: >= 5x fewer mean MACs, >= 3.3x lower mean latency, <= 0.05 points lost",
        "BranchyNet 2016: 5.4x CPU speedup, 99.25% vs 99.20%",
        ("06_dynamic_networks", "early exit", None),
        _early_exit,
        (("mac_x", ">=", 5), ("lat_x", ">=", 3.3), ("loss", "<=", 0.05)),
        "run notebook 06",
        ("role",),
    ),
    Target(
        "mixed precision: mean test loss and accuracy within 2 float32 seed-to-seed standard deviations of "
        "float32's",
        "Micikevicius et al. 2018: parity",
        ("05_mixed_precision", "mixed precision", None),
        _mixed_precision,
        (("outside", "==", 0), ("policies", ">=", 1)),
        "run notebook 05",
        ("setting",),
    ),
    Target(
        "data parallel gradients equal (1e-6); workers' weights equal; bubble within 10% of (K-1)/(M+K-1) "
        "for 2+ settings",
        "GPipe (Huang et al. 2019): the bubble formula",
        ("07_parallelism", None, None),
        _parallel,
        (("g", "<=", 1e-6), ("w", "==", 0), ("within", ">=", 2)),
        "run notebook 07",
    ),
    *(
        Target(
            f"automated search, {m}: no larger than 04's hand-tuned file, <= 0.1 points below the baseline",
            "issue target (moonshot 50x on LeNet-300-100); Han et al.: 40x / 39x by hand",
            (NB08, "automated search", None),
            _size_search(m),
            (("over", "<=", 0), ("loss", "<=", 0.1)),
            "run notebooks 01, 04 and 08",
        )
        for m in ("lenet_300_100", "lenet5")
    ),
    Target(
        "latency search: dominates 02's hand-chosen channel widths (faster, at least as accurate)",
        "AMC (He et al. 2018), HAQ (Wang et al. 2019)",
        (NB08, "automated search", None),
        _latency_search,
        (("faster", "<", 0), ("gain", ">=", 0), ("other", "==", True)),
        "run notebook 08",
    ),
]
_OPS = {">=": np.greater_equal, "<=": lambda a, t: a <= t + 1e-9, "<": np.less, "==": np.equal}
_REACHED = {True: "yes", False: "no", None: "not measured", "partly": "partly"}


def targets(table) -> pd.DataFrame:
    """The course's targets (``TARGETS``) measured from the results log, one row each: what the paper or the
    issue asked, what this profile's log shows, and whether it was reached ("not measured" names the notebook
    to run, or to re-run when its rows lack a field the target reads).

    Introduced in notebook 08.
    """
    out = []
    for t in TARGETS:
        notebook, technique, model = t.select
        rows = _rows(table, notebook, technique, model)
        lacking = [f for f in t.needs if _lacks(rows, f)]
        got = (
            t.missing if rows.empty else _refresh(notebook, lacking[0]) if lacking else t.measure(rows, table)
        )
        if isinstance(got, str):
            text, reached = got, None
        else:
            text = got["text"]
            reached = (
                got["reached"] if "reached" in got else all(bool(_OPS[op](got[q], v)) for q, op, v in t.tests)
            )
        out.append(
            {
                "target": t.name,
                "paper / goal": t.source,
                "measured here": text,
                "reached": _REACHED[reached],
                "notebook": notebook[:2],
            }
        )
    return pd.DataFrame(out)
