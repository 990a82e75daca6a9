import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from effcourse import plots, results


def _row(i, **kw):
    base = dict(notebook="01_x", technique="baseline", model="m", variant=f"v{i}",
                accuracy=0.9, size_bytes=1000 + i, dense_fp32_bytes=4000)
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
    results.record(notebook="07_p", technique="data_parallel", model="cnn", variant="2 replicas",
                   samples_per_s=1234.5)
    table = results.load("quick")
    assert results.extra(table, "samples_per_s").iloc[0] == 1234.5


@pytest.mark.parametrize("bad, match", [
    (dict(notebook=""), "non-empty"),
    (dict(model=None), "non-empty"),
    (dict(accuracy=97.5), "fraction"),
    (dict(size_bytes=-1), ">= 0"),
    (dict(latency_ms=float("nan")), "finite"),
    (dict(accuracy="high"), "number"),
])
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
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        pool.map(_writer, [(str(tmp_root), w) for w in range(4)])
    table = results.load("quick")
    assert len(table) == 20 and table.groupby("notebook").size().tolist() == [5] * 4


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
    assert ax.get_xscale() == "log"
    assert "KB" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert len(ax.collections) == 2  # one scatter per (technique, model)
    path = plots.save(ax.figure, "t")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.parent == tmp_root / "build" / "figures"
    empty = plots.tradeoff(results.load("full"))
    assert "no results" in empty.texts[0].get_text()


def test_latency_chart_and_colours_agree(tmp_root):
    results.record(**_row(1, technique="pruning", latency_ms=0.05, latency_p90_ms=0.07))
    results.record(**_row(2, technique="baseline"))  # no latency: not on the latency chart
    table = results.load("quick")
    colors = plots.technique_colors(table)
    ax = plots.latency_chart(table)
    assert ax.get_xscale() == "log" and "ms" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["pruning"]
    import matplotlib.colors as mcolors
    drawn = ax.lines[0].get_color()  # the marker line of the pruning errorbar
    assert mcolors.to_rgba(drawn) == mcolors.to_rgba(colors["pruning"])


def test_table_formats_for_people():
    import pandas as pd

    df = pd.DataFrame({"model": ["a", "b"], "params": [266610, 1234], "accuracy": [0.98123, 0.97],
                       "latency (ms)": [0.0207, 0.31], "size (bytes)": [1.2e6, 3.4e3]})
    text = plots.table(df, percent=["accuracy"]).to_html()
    for shown in ("266,610", "98.12 %", "0.0207", "1,200,000", "3,400"):
        assert shown in text
    assert "e+0" not in text and "e-0" not in text
    with pytest.raises(KeyError, match="does not have"):
        plots.table(df, percent=["acc"])
