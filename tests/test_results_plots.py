import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from effcourse import plots, results


def _row(i, **kw):
    base = dict(
        notebook="01_x",
        technique="baseline",
        model="m",
        variant=f"v{i}",
        accuracy=0.9,
        size_bytes=1000 + i,
        dense_fp32_bytes=4000,
    )
    base.update(kw)
    return base


def test_record_load_and_replace(tmp_root):
    results.record(**_row(1))
    results.record(**_row(2, accuracy=0.8))
    results.record(**_row(1, accuracy=0.95))  # re-run of v1 replaces its row
    table = results.load("quick")
    assert len(table) == 2
    assert table.set_index("variant").loc["v1", "accuracy"] == 0.95
    assert table.set_index("variant").loc["v2", "compression"] == 4000 / 1002
    assert set(results.COLUMNS) <= set(table.columns) and (table["profile"] == "quick").all()
    assert "tf=" in table["versions"].iloc[0]


def test_extra_metrics_round_trip(tmp_root):
    results.record(
        notebook="07_p", technique="data_parallel", model="cnn", variant="2 replicas", samples_per_s=1234.5
    )
    table = results.load("quick")
    assert results.extra(table, "samples_per_s").iloc[0] == 1234.5


def test_setting_and_role_are_fields_not_extra(tmp_root):
    results.record(**_row(1, setting="int8", role="treated"))
    results.record(**_row(2))
    table = results.load("quick").set_index("variant")
    assert (table.loc["v1", "setting"], table.loc["v1", "role"]) == ("int8", "treated")
    assert table.loc["v2", "setting"] is None and table.loc["v2", "role"] is None
    assert results.extra(table, "setting").isna().all()  # not in the extra JSON


def test_a_log_written_before_the_fields_existed_still_reads_and_appends(tmp_root):
    old_columns = [c for c in results.COLUMNS if c not in results.FIELDS]
    target = results.path("quick")
    target.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        [dict(_row(0), profile="quick", timestamp="2026-01-01", versions="tf=x", extra="{}")],
        columns=old_columns,
    ).to_csv(target, index=False)
    table = results.load("quick")
    assert (
        table.loc[0, "setting"] is None and table.loc[0, "role"] is None and table.loc[0, "accuracy"] == 0.9
    )
    results.record(**_row(1, setting="float32", role="reference"))
    table = results.load("quick").set_index("variant")
    assert list(table.index) == ["v0", "v1"] and table.loc["v1", "role"] == "reference"
    assert table.loc["v0", "role"] is None


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(notebook=""), "non-empty"),
        (dict(model=None), "non-empty"),
        (dict(accuracy=97.5), "fraction"),
        (dict(size_bytes=-1), ">= 0"),
        (dict(latency_ms=float("nan")), "finite"),
        (dict(accuracy="high"), "number"),
        (dict(role="baseline"), "role must be one of"),
        (dict(setting=""), "setting must be non-empty"),
        (dict(setting=8), "setting must be non-empty"),
    ],
)
def test_bad_rows_are_refused_and_nothing_written(tmp_root, bad, match):
    with pytest.raises(results.ResultError, match=match):
        results.record(**_row(1, **bad))
    assert not results.path("quick").exists()


def test_row_without_any_measurement(tmp_root):
    with pytest.raises(results.ResultError, match="no measurement"):
        results.record(notebook="n", technique="t", model="m", variant="v")


def _writer(args):
    root, worker = args
    import os

    os.environ["EFFCOURSE_ROOT"] = root
    os.environ["EFFCOURSE_PROFILE"] = "quick"
    from effcourse import results as r

    for i in range(5):
        r.record(notebook=f"nb{worker}", technique="t", model="m", variant=f"v{i}", accuracy=0.5)


def test_parallel_appends_lose_nothing(tmp_root):
    """Processes appending at once under the lock (filelock, every OS): no row lost, no torn line."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(4) as pool:
        pool.map(_writer, [(str(tmp_root), w) for w in range(4)])
    table = results.load("quick")
    assert len(table) == 20 and table.groupby("notebook").size().tolist() == [5] * 4
    import csv

    with open(results.path("quick"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == results.COLUMNS and all(len(row) == len(results.COLUMNS) for row in rows[1:])


def test_pareto_on_a_constructed_set():
    size = [1, 2, 3, 4, 2, 5, np.nan]
    acc = [0.5, 0.7, 0.6, 0.9, 0.7, 0.9, 0.99]
    # (3, .6) is beaten by (2, .7); (5, .9) by (4, .9); the duplicate (2, .7) points both stay
    assert results.pareto_mask(size, acc).tolist() == [True, True, False, True, True, False, False]
    front = results.pareto_front(pd.DataFrame({"size_bytes": size, "accuracy": acc}))
    assert front["size_bytes"].is_monotonic_increasing


def test_tradeoff_chart_is_labelled_and_saved(tmp_root):
    for i, tech in enumerate(["baseline", "pruning", "pruning"]):
        results.record(**_row(i, technique=tech, size_bytes=10_000 / (i + 1), accuracy=0.99 - 0.01 * i))
    ax = plots.tradeoff(results.load("quick"))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "KB" in ax.get_xlabel() and "error (%" in ax.get_ylabel()
    assert len(ax.collections) == 2  # one scatter per technique family
    path = plots.save(ax.figure, "t")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.parent == tmp_root / "build" / "figures"
    empty = plots.tradeoff(results.load("full"))
    assert "no results" in empty.texts[0].get_text()


def _course_table():
    rows = [
        dict(
            notebook="00_setup_and_tour",
            technique="narrower model",
            model="mlp",
            variant="hidden 8",
            accuracy=0.67,
            size_bytes=24_000,
        ),
        dict(
            notebook="01_sgd_loss_formulation",
            technique="baseline",
            model="lenet_300_100",
            variant="float32",
            accuracy=0.984,
            size_bytes=980_000,
            dense_fp32_bytes=1_066_440,
        ),
        dict(
            notebook="01_sgd_loss_formulation",
            technique="baseline",
            model="lenet5",
            variant="float32",
            accuracy=0.992,
            size_bytes=1_590_000,
            dense_fp32_bytes=1_724_320,
        ),
    ]
    for i, (acc, size) in enumerate(
        [(0.9815, 240_000), (0.9812, 238_000), (0.9821, 252_000), (0.9808, 61_000)]
    ):
        rows.append(
            dict(
                notebook="03_quantization",
                technique="post-training quantization",
                model="lenet_300_100",
                variant=f"variant {i}",
                accuracy=acc,
                size_bytes=size,
                latency_ms=0.01 + i / 1000,
                latency_p90_ms=0.02,
            )
        )
    rows.append(
        dict(
            notebook="04_clustering_distillation_deep_compression",
            technique="deep compression",
            model="lenet5",
            variant="pruned + clustered + PCQAT (int8 file)",
            accuracy=0.991,
            size_bytes=45_000,
        )
    )
    table = pd.DataFrame(rows)
    table["profile"] = "quick"
    return table


def test_highlighted_notebook_sets_the_axis_limits():
    table = _course_table()
    ax = plots.tradeoff(table, highlight="03_quantization")
    mine = table[table["notebook"] == "03_quantization"]
    err = (1 - mine["accuracy"]) * 100
    lo, hi = ax.get_ylim()
    assert lo < err.min() and hi > err.max()
    # scaled to 03's points (1.79 to 1.92 % error), not stretched to 00's 33 % MLP
    assert hi < 3 and lo > 1
    xlo, xhi = ax.get_xlim()
    assert xlo < mine["size_bytes"].min() / 1024 < mine["size_bytes"].max() / 1024 < xhi < 980_000 / 1024
    # every highlighted point carries a label (its variant name, or a number with a key)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert all(v in texts for v in mine["variant"]) or all(str(i) in texts for i in range(1, len(mine) + 1))
    # the legend sits outside the data, and every text is at least 9 pt
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).x0 >= 1
    assert min(t.get_fontsize() for t in list(ax.texts) + legend.get_texts()) >= 9
    assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 9


def test_labels_do_not_overlap():
    ax = plots.tradeoff(_course_table(), highlight="03_quantization", labels="auto")
    renderer = ax.figure.canvas.get_renderer()
    boxes = [
        t.get_window_extent(renderer)
        for t in ax.texts
        if t.get_text().strip() and "\n" not in t.get_text() or len(t.get_text()) < 40
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)


def test_every_technique_has_a_family():
    import glob
    import re

    # every technique name the notebooks record (string literals of results.record calls, and
    # the names used through a helper or a variable)
    found = set()
    for path in glob.glob("notebooks/*.ipynb"):
        text = open(path).read().replace('\\"', '"')
        found |= set(re.findall(r'technique="([^"]+)"', text))
        found |= set(re.findall(r'results\.record\((?:NB|"[0-9]{2}_[a-z_]+"), "([^"]+)"', text))
        found |= set(re.findall(r'(?<!\.)\brecord\("([^"]+)", ', text))
        found |= set(re.findall(r'"((?:post-training|quantization-aware)[^"]*)"', text))
        found |= set(re.findall(r'technique = "([^"]+)"', text))
        found |= set(re.findall(r'": \("([a-z][^"]+)", ', text))  # rows = {variant: (technique, ...)}
    assert {"baseline", "pruning", "early exit", "automated search"} <= found
    unmapped = sorted(t for t in found if plots.family(t) == "other")
    assert not unmapped, f"techniques without a family: {unmapped}"
    assert plots.family("pruning 4:8") == "pruning" and plots.family("something new") == "other"


def test_course_map_is_short_and_marks_frontier_and_papers():
    table = _course_table()
    fig = plots.course_map(table)
    legend = [a.get_legend() for a in fig.axes if a.get_legend() is not None][0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) <= 11 and any("Pareto" in t for t in labels) and any("paper" in t for t in labels)
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title().split(":")[0] for a in panels] == ["MLPs", "LeNet-5"]
    assert all(a.get_yscale() == "log" and "error" in a.get_ylabel() for a in panels)
    # the frontier points carry the numbers of course_frontier's "#" column
    front = plots.course_frontier(table)
    numbers = {t.get_text() for a in panels for t in a.texts}
    assert {str(n) for n in front["#"]} <= numbers
    assert front.groupby("panel")["size_bytes"].apply(lambda s: s.is_monotonic_increasing).all()
    # the papers' Deep Compression points are drawn (stars) from report.PAPER_POINTS
    from effcourse import report

    stars = [c for a in panels for c in a.collections if c.get_sizes().size and c.get_sizes()[0] == 150]
    assert sum(len(c.get_offsets()) for c in stars) == 2 * len(report.PAPER_POINTS)


def test_digits_and_curves_are_readable():
    fig = plots.digits(np.zeros((30, 28, 28)), list(range(30)), ncols=15)
    assert fig.get_size_inches()[0] <= 9
    assert min(a.title.get_fontsize() for a in fig.axes if a.get_title()) >= 9
    ax = plots.curves({"a": [1, 2, 3], "b": [3, 2, 1]}, "step", "loss", "t")
    assert ax.lines[0].get_linestyle() != ax.lines[1].get_linestyle()
    assert ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted()).x0 >= 1


def test_nice_ticks():
    assert plots._nice_ticks(0.7, 1.4) == [0.7, 0.8, 0.9, 1, 1.2]
    ticks = plots._nice_ticks(1.7, 2.0)
    assert 2 <= len(ticks) <= 7 and all(1.7 <= t <= 2.0 for t in ticks)
    assert plots._nice_ticks(1, 1000) == [1, 10, 100, 1000]


def test_table_formats_for_people():
    import pandas as pd

    df = pd.DataFrame(
        {
            "model": ["a", "b"],
            "params": [266610, 1234],
            "accuracy": [0.98123, 0.97],
            "latency (ms)": [0.0207, 0.31],
            "size (bytes)": [1.2e6, 3.4e3],
        }
    )
    text = plots.table(df, percent=["accuracy"]).to_html()
    for shown in ("266,610", "98.12 %", "0.0207", "1,200,000", "3,400"):
        assert shown in text
    assert "e+0" not in text and "e-0" not in text
    with pytest.raises(KeyError, match="does not have"):
        plots.table(df, percent=["acc"])
