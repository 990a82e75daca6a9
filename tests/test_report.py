import pandas as pd

from effcourse import report, results


def _table():
    return pd.DataFrame([
        dict(notebook="01_sgd_loss_formulation", technique="baseline", model="m", variant="float32",
             accuracy=0.98, size_bytes=1000.0),
        dict(notebook="02_pruning", technique="pruning", model="m", variant="a", accuracy=0.975, size_bytes=100.0),
        dict(notebook="02_pruning", technique="pruning", model="m", variant="b", accuracy=0.90, size_bytes=50.0),
        dict(notebook="03_quantization", technique="int8", model="m", variant="c", accuracy=0.979, size_bytes=250.0),
        dict(notebook="03_quantization", technique="int8", model="other", variant="d", accuracy=0.99, size_bytes=10.0),
    ])


def test_missing_notebooks_are_named_with_the_fix():
    table = _table()
    assert report.missing(table, ["02_pruning", "05_mixed_precision"]) == ["05_mixed_precision"]
    text = report.explain_missing(table, ["05_mixed_precision", "06_dynamic_networks"], "full")
    assert "05_mixed_precision.ipynb" in text and "06_dynamic_networks.ipynb" in text
    assert "EFFCOURSE_PROFILE=full" in text
    assert report.explain_missing(table, ["02_pruning"], "full") == ""
    assert report.missing(results.load("nonexistent-profile"), ["02_pruning"]) == ["02_pruning"]


def test_best_within_respects_floor_model_and_notebooks():
    table = _table()
    best = report.best_within(table, "m", 0.97)
    assert best["variant"] == "a"  # b is smaller but below the floor; d is another model
    assert report.best_within(table, "m", 0.97, ["03_quantization"])["variant"] == "c"
    assert report.best_within(table, "m", 0.999) is None
    assert report.baseline_row(table, "m")["variant"] == "float32"
    assert report.baseline_row(table, "zzz") is None
    assert report.ratio(10, 4) == 2.5 and report.ratio(1, 0) != report.ratio(1, 0)  # NaN


def test_targets_from_a_constructed_log():
    import json

    def row(nb, tech, model, variant, acc, size=None, macs=None, lat=None, **extra):
        return dict(notebook=nb, technique=tech, model=model, variant=variant, accuracy=acc, size_bytes=size,
                    dense_fp32_bytes=400_000.0, macs=macs, latency_ms=lat, extra=json.dumps(extra))

    table = pd.DataFrame([
        row("01_sgd_loss_formulation", "baseline", "lenet_300_100", "float32", 0.98, 390_000, 1000, 0.02),
        row("02_pruning", "pruning", "lenet_300_100", "a", 0.981, 30_000, nonzero=8000),   # 12.5x, as accurate
        row("02_pruning", "pruning", "lenet_300_100", "b", 0.95, 10_000, nonzero=2000),    # 50x, but worse
        row("07_parallelism", "data_parallel", "m", "gradient_check_2", None, max_abs_diff=2e-6),
    ])
    out = report.targets(table).set_index("target")
    pruning = out.loc["pruning lenet_300_100: >= 12x fewer non-zero weights, error no higher"]
    assert pruning["reached"] == "yes" and "12.5x" in pruning["measured here"]
    assert out.loc["pruning lenet5: >= 12x fewer non-zero weights, error no higher", "reached"] == "not measured"
    assert "run notebook 06" in out["measured here"].str.cat()
    par = out[out.index.str.startswith("data parallel")].iloc[0]
    assert par["reached"] == "no" and "2.0e-06" in par["measured here"]


def test_targets_use_the_newest_run_and_tolerate_float_round_off():
    import json

    def row(variant, acc, macs, ts, **extra):
        return dict(notebook="06_dynamic_networks", technique="early exit", model="lenet5", variant=variant,
                    accuracy=acc, size_bytes=1.0, dense_fp32_bytes=4.0, macs=macs, latency_ms=0.01,
                    timestamp=ts, extra=json.dumps(extra))

    table = pd.DataFrame([
        row("dynamic, old", 0.90, 100, "2026-01-02"),
        row("full network (never exit)", 0.9951, 2_293_000, "2026-01-01"),
        row("dynamic, new", 0.9941, 432_198, "2026-01-03", speedup_mean_latency=3.3),
    ])
    early = report.targets(table).set_index("target").filter(like="early exit", axis=0).iloc[0]
    assert "dynamic, new" in early["measured here"] and early["reached"] == "yes"  # 0.10 points is allowed
