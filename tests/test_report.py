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
