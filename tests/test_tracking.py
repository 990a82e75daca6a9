import pytest

from effcourse import tracking

ROWS = [
    {"sparsity": 0.5, "model": "lenet5", "per_channel": True, "accuracy": 0.991, "size_bytes": 61000},
    {"sparsity": 0.9, "model": "lenet5", "per_channel": False, "accuracy": 0.985, "size_bytes": 21000},
    {
        "sparsity": 0.9,
        "model": "lenet_300_100",
        "per_channel": False,
        "accuracy": float("nan"),
        "size_bytes": 9000,
    },
]


def test_one_run_per_row_with_its_params_and_metrics(tmp_path):
    out = tracking.log_runs(ROWS, tmp_path / "sweep", metrics=["accuracy", "size_bytes"])
    runs = tracking.read_runs(out)
    assert sorted(runs) == ["run-000", "run-001", "run-002"]
    for i, row in enumerate(ROWS):
        run = runs[f"run-{i:03d}"]
        assert run["params"] == {
            "sparsity": pytest.approx(row["sparsity"]),
            "model": row["model"],
            "per_channel": row["per_channel"],
        }
        assert run["metrics"]["size_bytes"] == row["size_bytes"]
    assert runs["run-000"]["metrics"]["accuracy"] == pytest.approx(0.991)
    assert "accuracy" not in runs["run-002"]["metrics"]  # NaN is left out, not logged as a number


def test_logging_again_replaces_the_runs(tmp_path):
    tracking.log_runs(ROWS, tmp_path / "sweep", metrics=["accuracy"], names=["a", "b", "c"])
    tracking.log_runs(ROWS[:2], tmp_path / "sweep", metrics=["accuracy"], names=["a", "b"])
    runs = tracking.read_runs(tmp_path / "sweep")
    assert sorted(runs) == ["a", "b"]
    assert not (tmp_path / "sweep.writing").exists() and not (tmp_path / "sweep.old").exists()


def test_explicit_params_leave_other_keys_out(tmp_path):
    tracking.log_runs(ROWS, tmp_path / "s", metrics=["size_bytes"], params=["sparsity"])
    assert set(tracking.read_runs(tmp_path / "s")["run-001"]["params"]) == {"sparsity"}


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at least one row"):
        tracking.log_runs([], tmp_path / "x", metrics=["accuracy"])
    with pytest.raises(ValueError, match="names of the metrics"):
        tracking.log_runs(ROWS, tmp_path / "x", metrics=[])
    with pytest.raises(KeyError, match="latency"):
        tracking.log_runs(ROWS, tmp_path / "x", metrics=["latency"])
    with pytest.raises(ValueError, match="distinct"):
        tracking.log_runs(ROWS, tmp_path / "x", metrics=["accuracy"], names=["a", "a", "b"])
    with pytest.raises(FileNotFoundError, match="No TensorBoard log"):
        tracking.read_runs(tmp_path / "missing")
