"""The course-wide view of the results log: what is missing, the best hand-tuned points
and the targets against the papers (notebook 08)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

NOTEBOOK_TITLES = {
    "01_sgd_loss_formulation": "01: the baselines",
    "02_pruning": "02: pruning",
    "03_quantization": "03: quantization",
    "04_clustering_distillation_deep_compression": "04: clustering, distillation, Deep Compression",
    "05_mixed_precision": "05: mixed precision",
    "06_dynamic_networks": "06: dynamic networks",
    "07_parallelism": "07: parallelism",
}
# Notebook 09 (deploying with ONNX Runtime) is left out on purpose: it runs after 08, whose
# course map lists these notebooks as the ones to run first (explain_missing); 09's rows
# (techniques "LiteRT" and "ONNX Runtime") still appear on the map when they are in the log.


# The papers' LeNet figures the course compares against (Han, Mao, Dally 2016, "Deep
# Compression", Table 1; the baselines' errors are models.PAPER_ERROR): top-1 test error
# after compression and the compression ratio over the dense float32 weights. Used by
# ``targets`` (the goals) and by plots.course_map (the papers' points on the course map).
PAPER_POINTS = [
    {
        "model": "lenet_300_100",
        "paper": "Han, Mao, Dally 2016",
        "what": "Deep Compression",
        "error": 0.0158,
        "compression": 40,
    },
    {
        "model": "lenet5",
        "paper": "Han, Mao, Dally 2016",
        "what": "Deep Compression",
        "error": 0.0074,
        "compression": 39,
    },
]


def paper_points(table=None) -> pd.DataFrame:
    """The papers' points (baselines and Deep Compression) as rows of the results log's shape.

    ``size_bytes`` is the dense float32 bytes of the course's baseline (from ``table``'s
    notebook-01 row when there is one, else the architecture's parameter count x 4) over the
    paper's compression ratio; ``accuracy`` is 1 - the paper's error. Notebook 08's map.

    Introduced in notebook 08.
    """
    import pandas as pd

    from . import models

    rows = []
    for model, base_error in models.PAPER_ERROR.items():
        base = baseline_row(table, model) if table is not None and len(table) else None
        dense = (
            float(base["dense_fp32_bytes"]) if base is not None else 4.0 * models.build(model).count_params()
        )
        rows.append(
            {
                "model": model,
                "variant": "paper baseline",
                "paper": "Han, Mao, Dally 2016 (their baseline)",
                "accuracy": 1 - base_error,
                "size_bytes": dense,
                "compression": 1.0,
            }
        )
        for p in PAPER_POINTS:
            if p["model"] == model:
                rows.append(
                    {
                        "model": model,
                        "variant": f"{p['what']}, {p['compression']}x",
                        "paper": p["paper"],
                        "accuracy": 1 - p["error"],
                        "size_bytes": dense / p["compression"],
                        "compression": float(p["compression"]),
                    }
                )
    return pd.DataFrame(rows)


def missing(table, notebooks) -> list[str]:
    """The notebooks (of ``notebooks``) that have no rows in ``table`` yet.

    Introduced in notebook 08.
    """
    have = set(table["notebook"]) if len(table) else set()
    return [nb for nb in notebooks if nb not in have]


def explain_missing(table, notebooks, profile_name: str) -> str:
    """'' if all rows are there, else a sentence saying which notebooks to run first.

    Introduced in notebook 08.
    """
    gone = missing(table, notebooks)
    if not gone:
        return ""
    names = ", ".join(f"{nb}.ipynb" for nb in gone)
    return (
        f"No results from {names} in the {profile_name} profile's log yet. Run "
        f"{'it' if len(gone) == 1 else 'them'} under the same profile "
        f"(EFFCOURSE_PROFILE={profile_name}), then re-run this cell; the rest of this "
        "notebook shows what is there."
    )


def baseline_row(table, model: str):
    """The notebook-01 baseline row of ``model``, or None if notebook 01 has not run.

    Introduced in notebook 01.
    """
    rows = table[(table["notebook"] == "01_sgd_loss_formulation") & (table["model"] == model)]
    return None if rows.empty else rows.iloc[-1]


def best_within(table, model: str, floor: float, notebooks=None):
    """The smallest recorded variant of ``model`` with accuracy >= ``floor`` (None if none).

    Introduced in notebook 08.
    """
    rows = table[(table["model"] == model) & table["size_bytes"].notna() & table["accuracy"].notna()]
    if notebooks is not None:
        rows = rows[rows["notebook"].isin(list(notebooks))]
    rows = rows[rows["accuracy"] >= floor]
    if rows.empty:
        return None
    return rows.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]


def ratio(numerator, denominator) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0.

    Introduced in notebook 02.
    """
    try:
        num, den = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return float("nan")
    return num / den if den and np.isfinite(num) and np.isfinite(den) else float("nan")


def _extra(row, key, default=None):
    import json

    raw = row.get("extra") if hasattr(row, "get") else None
    if not isinstance(raw, str):
        return default
    return json.loads(raw).get(key, default)


def _rows(table, notebook, technique=None, model=None):
    """Rows of one notebook (and technique, model), oldest first: the last row is the newest run."""
    rows = table[table["notebook"] == notebook]
    if "timestamp" in rows:
        rows = rows.sort_values("timestamp", kind="stable")
    if technique is not None:
        rows = rows[rows["technique"] == technique]
    if model is not None:
        rows = rows[rows["model"] == model]
    return rows


def _field(rows, name):
    """Column ``name`` of ``rows`` (None where empty): the log's structured fields, never labels."""
    if name not in rows:
        return rows.index.to_series().map(lambda _: None)
    return rows[name].map(lambda v: v if isinstance(v, str) and v else None)


def _lacks(rows, name) -> bool:
    """True when ``rows`` exist but none carries the field ``name`` (a log from before the field)."""
    return not rows.empty and _field(rows, name).isna().all()


def _refresh(notebook, field) -> str:
    return (
        f"re-run notebook {notebook[:2]}: its rows in this log have no `{field}` field "
        f"(written before notebook {notebook[:2]} recorded it)"
    )


def _paper(model) -> str:
    p = next(p for p in PAPER_POINTS if p["model"] == model)
    return f"{p['paper']}: {p['compression']}x at {p['error']:.2%} error"


def _target(name, source, _goal, measured, reached, notebook):
    return {
        "target": name,
        "paper / goal": source,
        "measured here": measured,
        "reached": {True: "yes", False: "no", None: "not measured", "partly": "partly"}[reached],
        "notebook": notebook,
    }


def _pruning_target(table, model):
    nb, base = "02_pruning", baseline_row(table, model)
    rows = _rows(table, nb, "pruning", model)
    if base is None or rows.empty:
        return None, "run notebooks 01 and 02"
    params = base["dense_fp32_bytes"] / 4
    nonzero = rows.apply(lambda r: _extra(r, "nonzero"), axis=1).astype(float)
    rows = rows.assign(fewer=params / nonzero)
    ok = rows[rows["accuracy"] >= base["accuracy"]]
    if ok.empty:
        best = rows.sort_values("accuracy").iloc[-1]
        return False, (
            f"no pruned variant at the baseline's {base['accuracy']:.2%}; most accurate: "
            f"{best['fewer']:.1f}x fewer at {best['accuracy']:.2%}"
        )
    best = ok.sort_values("fewer").iloc[-1]
    return bool(best["fewer"] >= 12), (
        f"{best['fewer']:.1f}x fewer non-zeros at {best['accuracy']:.2%} "
        f"(baseline {base['accuracy']:.2%}; {best['variant']})"
    )


def _search_targets(table) -> list:
    """Notebook 08's targets: the searched files against the hand-tuned ones (rows by setting and role)."""
    nb = "08_automated_compression"
    auto = _rows(table, nb, "automated search")
    auto = auto.assign(setting=_field(auto, "setting"), role=_field(auto, "role"))
    out = []
    for model in ("lenet_300_100", "lenet5"):
        name = f"automated search, {model}: no larger than 04's hand-tuned file, <= 0.1 points below the baseline"
        source = "issue target (moonshot 50x on LeNet-300-100); Han et al.: 40x / 39x by hand"
        mine = auto[(auto["model"] == model) & (auto["setting"] == "size")]
        won, ref = mine[mine["role"] == "treated"], mine[mine["role"] == "reference"]
        base = baseline_row(table, model)
        dc = _rows(table, "04_clustering_distillation_deep_compression", "deep compression", model)
        hand = dc.sort_values("size_bytes").iloc[0] if len(dc) else (ref.iloc[-1] if len(ref) else None)
        if won.empty or base is None or hand is None:
            out.append(_target(name, source, None, "run notebooks 01, 04 and 08", None, "08"))
            continue
        w = won.iloc[-1]
        loss = (base["accuracy"] - w["accuracy"]) * 100
        where = "notebook 04" if len(dc) else "04's plan re-run in 08"
        x = ratio(w["dense_fp32_bytes"], w["size_bytes"])
        moonshot = (
            f"; moonshot 50x: {'yes' if x >= 50 and loss <= 0.1 + 1e-9 else 'no'}"
            if model == "lenet_300_100"
            else ""
        )
        out.append(
            _target(
                name,
                source,
                None,
                f"{w['size_bytes']:,.0f} B ({x:.1f}x) at {w['accuracy']:.2%}, {abs(loss):.2f} points "
                f"{'below' if loss > 0 else 'above'} the baseline; {w['variant']}; vs {where}: "
                f"{hand['size_bytes']:,.0f} B ({ratio(hand['dense_fp32_bytes'], hand['size_bytes']):.1f}x){moonshot}",
                bool(w["size_bytes"] <= hand["size_bytes"] and loss <= 0.1 + 1e-9),
                "08",
            )
        )
    name = "latency search: dominates 02's hand-chosen channel widths (faster, at least as accurate)"
    lat = auto[auto["setting"] == "latency"]
    won, ref = lat[lat["role"] == "treated"], lat[lat["role"] == "reference"]
    if won.empty or ref.empty:
        out.append(
            _target(name, "AMC (He et al. 2018), HAQ (Wang et al. 2019)", None, "run notebook 08", None, "08")
        )
    else:
        w, h = won.iloc[-1], ref.iloc[-1]
        out.append(
            _target(
                name,
                "AMC (He et al. 2018), HAQ (Wang et al. 2019)",
                None,
                f"{w['latency_ms'] * 1000:.1f} µs at {w['accuracy']:.2%} vs 02's widths {h['latency_ms'] * 1000:.1f} µs "
                f"at {h['accuracy']:.2%} (timed side by side in 08)",
                bool(
                    w["latency_ms"] < h["latency_ms"]
                    and w["accuracy"] >= h["accuracy"]
                    and _extra(w, "config") != _extra(h, "config")  # the hand point itself never dominates
                ),
                "08",
            )
        )
    return out


def _mixed_precision_target(table):
    """Each mixed policy's mean test loss and accuracy over seeds within PARITY_K float32 sd of float32's."""
    from .precision.parity import PARITY_K, parity_table

    name = (
        f"mixed precision: mean test loss and accuracy within {PARITY_K:g} float32 seed-to-seed "
        "standard deviations of float32's"
    )
    source = "Micikevicius et al. 2018: parity"
    mp = _rows(table, "05_mixed_precision", "mixed precision")
    mp = mp.assign(setting=_field(mp, "setting"))
    if mp.empty or _lacks(mp, "setting"):
        why = _refresh("05_mixed_precision", "setting") if _lacks(mp, "setting") else "run notebook 05"
        return _target(name, source, None, why, None, "05")
    seeded = mp[mp["setting"].notna() & mp.apply(lambda r: _extra(r, "seed_accuracy") is not None, axis=1)]
    if seeded.empty or "float32" not in set(seeded["setting"]):
        return _target(
            name,
            source,
            None,
            "one run per policy, no seed spread to compare with: re-run notebook 05",
            False,
            "05",
        )
    runs = []
    for _, r in seeded.groupby("setting", sort=False).tail(1).iterrows():  # the newest run of each policy
        for loss, acc in zip(_extra(r, "seed_test_loss"), _extra(r, "seed_accuracy")):
            runs.append({"policy": r["setting"], "test_loss": loss, "accuracy": acc})
    try:
        par = parity_table(runs)
    except ValueError as err:
        return _target(name, source, None, f"{err} Re-run notebook 05.", False, "05")
    ref = par.loc["float32"]
    parts = [
        f"float32 loss {ref['test loss']:.4f} (sd {ref['test loss sd']:.4f}), accuracy {ref['accuracy (%)']:.2f}% "
        f"(sd {ref['accuracy sd (points)']:.2f}), {int(ref['seeds'])} seeds"
    ]
    others = par.drop(index="float32")
    for policy, r in others.iterrows():
        parts.append(
            f"{policy}: loss {r['test loss - float32']:+.4f} (limit {r['loss limit']:.4f}), accuracy "
            f"{r['accuracy - float32 (points)']:+.2f} points (limit {r['accuracy limit (points)']:.2f})"
            f"{'' if r['at parity'] else ', outside'}"
        )
    reached = bool(len(others)) and bool(others["at parity"].all())
    return _target(name, source, None, "; ".join(parts), reached, "05")


def targets(table) -> pd.DataFrame:
    """The course's targets against the papers' figures, measured from the results log.

    One row per target: what the paper or the issue asked, what this profile's log shows,
    and whether it was reached ("not measured" names the notebook to run).

    Introduced in notebook 08.
    """
    import pandas as pd

    out = []
    for model in ("lenet_300_100", "lenet5"):
        reached, text = _pruning_target(table, model)
        out.append(
            _target(
                f"pruning {model}: >= 12x fewer non-zero weights, error no higher",
                "Han et al. 2015: 12x on both",
                12,
                text,
                reached,
                "02",
            )
        )
    # channel pruning
    rows = _rows(table, "02_pruning", "channel pruning")
    if rows.empty:
        out.append(
            _target(
                "channel pruning: >= 2x fewer MACs and >= 2x lower latency, <= 0.5 points lost",
                "issue target",
                None,
                "run notebook 02",
                None,
                "02",
            )
        )
    else:
        r = rows.iloc[-1]
        base = baseline_row(table, r["model"])
        mac_x = ratio(base["macs"], r["macs"]) if base is not None else float("nan")
        lat_x = ratio(_extra(r, "dense_latency_ms"), r["latency_ms"])
        loss = (base["accuracy"] - r["accuracy"]) * 100 if base is not None else float("nan")
        out.append(
            _target(
                "channel pruning: >= 2x fewer MACs and >= 2x lower latency, <= 0.5 points lost",
                "issue target",
                None,
                f"{r['model']}: {mac_x:.1f}x fewer MACs, {lat_x:.1f}x lower latency, {loss:+.2f} points lost",
                bool(mac_x >= 2 and lat_x >= 2 and loss <= 0.5 + 1e-9),
                "02",
            )
        )
    # quantization
    q = _rows(table, "03_quantization")
    if q.empty or _lacks(q, "setting"):
        why = "run notebook 03" if q.empty else _refresh("03_quantization", "setting")
        out.append(
            _target(
                "int8 (PTQ and QAT): <= 0.1 points lost, >= 3.9x smaller (gzip)",
                "issue target",
                None,
                why,
                None,
                "03",
            )
        )
        out.append(
            _target(
                "int8 latency, LeNet-300-100: >= 2.5x faster than float32 in LiteRT",
                "Efficient Deep Learning book: 1.29x (its CNN, x86)",
                None,
                why,
                None,
                "03",
            )
        )
    else:
        q = q.assign(setting=_field(q, "setting"))
        parts, ok = [], True
        for model, grp in q.groupby("model"):
            f32 = grp[grp["setting"] == "float32"]
            for variant in ("int8", "qat_int8"):
                v = grp[grp["setting"] == variant]
                if f32.empty or v.empty:
                    continue
                loss = (f32["accuracy"].iloc[0] - v["accuracy"].iloc[0]) * 100
                smaller = f32["size_bytes"].iloc[0] / v["size_bytes"].iloc[0]
                ok &= bool(loss <= 0.1 + 1e-9 and smaller >= 3.9)
                parts.append(f"{model} {variant}: {loss:+.2f} points, {smaller:.2f}x smaller")
        out.append(
            _target(
                "int8 (PTQ and QAT): <= 0.1 points lost, >= 3.9x smaller (gzip)",
                "issue target",
                None,
                "; ".join(parts),
                ok,
                "03",
            )
        )
        d = q[q["model"] == "lenet_300_100"]
        speed = ratio(
            d.loc[d["setting"] == "float32", "latency_ms"].min(),
            d.loc[d["setting"] == "int8", "latency_ms"].min(),
        )
        out.append(
            _target(
                "int8 latency, LeNet-300-100: >= 2.5x faster than float32 in LiteRT",
                "Efficient Deep Learning book: 1.29x (its CNN, x86)",
                None,
                f"{speed:.2f}x",
                bool(speed >= 2.5) if np.isfinite(speed) else None,
                "03",
            )
        )
    # Deep Compression
    goals = {p["model"]: p["compression"] for p in PAPER_POINTS}
    dc = _rows(table, "04_clustering_distillation_deep_compression", "deep compression")
    for model, goal in goals.items():
        rows, base = dc[dc["model"] == model], baseline_row(table, model)
        if rows.empty or base is None:
            out.append(
                _target(
                    f"Deep Compression {model}: >= {goal}x, error +0.1 points at most",
                    _paper(model),
                    goal,
                    "run notebooks 01 and 04",
                    None,
                    "04",
                )
            )
            continue
        r = rows.sort_values("size_bytes").iloc[0]
        x = base["dense_fp32_bytes"] / r["size_bytes"]
        extra_err = (base["accuracy"] - r["accuracy"]) * 100
        out.append(
            _target(
                f"Deep Compression {model}: >= {goal}x, error +0.1 points at most",
                _paper(model),
                goal,
                f"{x:.1f}x, error {extra_err:+.2f} points ({r['variant']})",
                bool(x >= goal and extra_err <= 0.1 + 1e-9),
                "04",
            )
        )
    # distillation
    dist = _rows(table, "04_clustering_distillation_deep_compression", "distillation")
    teacher = baseline_row(table, "lenet5")
    dist = dist.assign(setting=_field(dist, "setting"), role=_field(dist, "role"))
    shares = {}
    for setting in dist.loc[dist["role"].notna(), "setting"].dropna().unique():
        alone = dist[(dist["role"] == "reference") & (dist["setting"] == setting)]
        distilled = dist[(dist["role"] == "treated") & (dist["setting"] == setting)]
        if alone.empty or distilled.empty or teacher is None:
            continue
        a, d = alone.iloc[-1], distilled.iloc[-1]
        # a row may carry every seed's test accuracy (mean over seeds); else its own accuracy
        e_a = 1 - float(np.mean(_extra(a, "seed_accuracies", None) or [a["accuracy"]]))
        e_d = 1 - float(np.mean(_extra(d, "seed_accuracies", None) or [d["accuracy"]]))
        e_t = 1 - teacher["accuracy"]
        shares[setting] = (ratio(e_a - e_d, e_a - e_t), e_a, e_d, e_t)
    goal = {"all images": 0.5}  # Hinton et al.'s setting; a small transfer set: 75%
    name = "distillation recovers the student-teacher error gap: >= 50% on all images, >= 75% on a small set"
    source = "Hinton et al. 2015: 146 -> 74 errors, teacher 67 (91%)"
    if not shares:
        why = (
            _refresh("04_clustering_distillation_deep_compression", "role")
            if teacher is not None and _lacks(dist, "role")
            else "run notebooks 01 and 04"
        )
        out.append(_target(name, source, None, why, None, "04"))
    else:
        met = [share >= goal.get(setting, 0.75) for setting, (share, *_) in shares.items()]
        text = "; ".join(
            f"{setting}: {share:.0%} (errors {e_a:.2%} alone, {e_d:.2%} distilled, teacher {e_t:.2%})"
            for setting, (share, e_a, e_d, e_t) in shares.items()
        )
        out.append(
            _target(name, source, None, text, all(met) if all(met) or not any(met) else "partly", "04")
        )
    # early exits
    ee = _rows(table, "06_dynamic_networks", "early exit")
    full, dyn = ee[_field(ee, "role") == "reference"], ee[_field(ee, "role") == "treated"]
    if full.empty or dyn.empty:
        why = _refresh("06_dynamic_networks", "role") if _lacks(ee, "role") else "run notebook 06"
        out.append(
            _target(
                "early exit: >= 5x fewer mean MACs, >= 3.3x lower mean latency, <= 0.05 points lost",
                "BranchyNet 2016: 5.4x CPU speedup",
                None,
                why,
                None,
                "06",
            )
        )
    else:
        f, d = full.iloc[-1], dyn.iloc[-1]
        mac_x, lat_x = ratio(f["macs"], d["macs"]), _extra(d, "speedup_mean_latency", float("nan"))
        loss = (f["accuracy"] - d["accuracy"]) * 100
        out.append(
            _target(
                "early exit: >= 5x fewer mean MACs, >= 3.3x lower mean latency, <= 0.05 points lost",
                "BranchyNet 2016: 5.4x CPU speedup, 99.25% vs 99.20%",
                None,
                f"{mac_x:.1f}x fewer MACs, {float(lat_x):.1f}x lower latency, {loss:+.2f} points ({d['variant']})",
                bool(mac_x >= 5 and float(lat_x) >= 3.3 and loss <= 0.05 + 1e-9),
                "06",
            )
        )
    # mixed precision: parity within float32's own seed-to-seed spread (notebook 05)
    out.append(_mixed_precision_target(table))
    # parallelism
    par = _rows(table, "07_parallelism")
    if par.empty:
        out.append(
            _target(
                "data parallel gradients equal (1e-6); workers' weights equal; bubble within 10% of "
                "(K-1)/(M+K-1) for 2+ settings",
                "GPipe (Huang et al. 2019): the bubble formula",
                None,
                "run notebook 07",
                None,
                "07",
            )
        )
    else:
        grad = par[par["technique"] == "data_parallel"].apply(lambda r: _extra(r, "max_abs_diff"), axis=1)
        grad = grad.dropna() if len(grad) else grad  # only the gradient checks carry max_abs_diff
        mw = par[par["technique"] == "multi_worker"].apply(
            lambda r: _extra(r, "workers_weights_max_diff"), axis=1
        )
        rel = (
            par[par["technique"] == "pipeline"].apply(lambda r: _extra(r, "relative_error"), axis=1).dropna()
        )
        g = float(grad.max()) if len(grad) else float("nan")
        w = float(mw.max()) if len(mw) else float("nan")
        within = int((rel.astype(float).abs() <= 0.10).sum()) if len(rel) else 0
        out.append(
            _target(
                "data parallel gradients equal (1e-6); workers' weights equal; bubble within 10% of "
                "(K-1)/(M+K-1) for 2+ settings",
                "GPipe (Huang et al. 2019): the bubble formula",
                None,
                f"gradient max diff {g:.1e}; workers' weights max diff {w:.1e}; "
                f"{within} of {len(rel)} (K, M) settings within 10%",
                bool(g <= 1e-6 and w == 0 and within >= 2),
                "07",
            )
        )
    out.extend(_search_targets(table))
    return pd.DataFrame(out)
