"""The workshop kit: predict-then-measure checks (00, 03), the students' zip."""

import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from effcourse import checks, measure, student

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def blob_of(n_bytes, seed=0):
    """Incompressible bytes: their gzip size is n_bytes plus gzip's header."""
    return np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()


# --- predict, then measure: the shared range scoring (checks.nb00) ---------------------------


@pytest.mark.parametrize(
    "guess, hint",
    [
        (..., "not written yet"),
        (None, "not written yet"),
        (12_000, "pair"),
        ("12000", "pair"),
        ((12_000, 12_000), "single value"),  # a tie: a point, not a range
        ((13_000, 11_000), "reversed"),
        ((0, 10), "above 0"),
        ((5_000, 50_000), "factor 10"),  # so wide it cannot miss
        ((float("nan"), 1.0), "finite"),
    ],
)
def test_prediction_range_rejects_non_predictions(guess, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.nb00.prediction_range(guess, "the size", 1.5)


def test_prediction_range_accepts_ranges_within_the_factor():
    assert checks.nb00.prediction_range((10_000, 15_000), "the size", 1.5) == (10_000.0, 15_000.0)
    assert checks.nb00.prediction_range([np.float32(2.0), np.int64(3)], "x", 1.5) == (2.0, 3.0)


def test_nb00_wide_mlp_size(capsys):
    blob = blob_of(40_000)
    size = measure.compressed_size(blob)
    widest = {"hidden 128": 10_300}  # the already-measured MLP a quarter as wide
    reference = (0.9 * 4 * 10_000, 1.1 * 4 * 10_000)  # the notebook's reasoning: parameters x bytes each
    checks.nb00.wide_mlp_size(reference, blob, widest)
    out = capsys.readouterr().out
    assert out.count("PASS") == 1 and f"{size:,}" in out
    checks.nb00.wide_mlp_size((size - 5_000, size + 5_000), blob, widest)  # any range holding it passes
    capsys.readouterr()
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb00.wide_mlp_size(..., blob, widest)
    with pytest.raises(checks.CheckFailed, match="single value"):
        checks.nb00.wide_mlp_size((size, size), blob, widest)
    with pytest.raises(checks.CheckFailed, match="copied from an output"):  # hard-coded from the output
        checks.nb00.wide_mlp_size((size, 1.2 * size), blob, widest)
    with pytest.raises(checks.CheckFailed, match="already measured"):  # the widest MLP's size copied
        checks.nb00.wide_mlp_size((9_000, 12_000), blob, widest)
    with pytest.raises(checks.CheckFailed, match="above your whole range"):
        checks.nb00.wide_mlp_size((20_000, 29_000), blob, {})
    with pytest.raises(checks.CheckFailed, match="below your whole range"):
        checks.nb00.wide_mlp_size((50_000, 70_000), blob, {})
    with pytest.raises(checks.CheckFailed, match="not a prediction"):
        checks.nb00.wide_mlp_size((1_000, 1_000_000), blob, widest)


def test_nb03_int8_ratio_prediction(capsys):
    float_blob, int8_blob = blob_of(36_000), blob_of(10_000, seed=1)
    ratio = measure.compressed_size(float_blob) / measure.compressed_size(int8_blob)  # about 3.6
    checks.nb03.int8_ratio_prediction(
        (0.92 * 3.7, 1.08 * 3.7), float_blob, int8_blob
    )  # reasoned from a sibling
    assert capsys.readouterr().out.count("PASS") == 1
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb03.int8_ratio_prediction(..., float_blob, int8_blob)
    with pytest.raises(checks.CheckFailed, match="single value"):
        checks.nb03.int8_ratio_prediction((ratio, ratio), float_blob, int8_blob)
    with pytest.raises(checks.CheckFailed, match="built around 4"):  # the textbook 4x, not measured
        checks.nb03.int8_ratio_prediction((3.9, 4.5), float_blob, int8_blob)
    with pytest.raises(checks.CheckFailed, match="not a prediction"):
        checks.nb03.int8_ratio_prediction((2.0, 6.0), float_blob, int8_blob)
    with pytest.raises(checks.CheckFailed, match="copied"):
        checks.nb03.int8_ratio_prediction((ratio, 1.15 * ratio), float_blob, int8_blob)


# --- student copies and the students' zip -------------------------------------------------------


def test_placeholder_names_the_exercise():
    src = "x = 1\n### BEGIN SOLUTION\nanswer = 2\n### END SOLUTION\n"
    out = student.strip_solution(src, "Exercise 4")
    assert 'NotImplementedError("Exercise 4 is not solved yet' in out and "answer = 2" not in out
    assert student.exercise_label("text **Exercise 5 (predict, then measure).** more") == "Exercise 5"
    assert student.exercise_label("no exercise here") is None


def solution_lines(cell):
    body = (
        cell.source.split(student.BEGIN)[1].split(student.END)[0]
        if student.BEGIN in cell.source
        else cell.source
    )
    return [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_student_zip_has_every_check_and_no_solution(tmp_path, capsys):
    student.main(["--out", str(tmp_path / "student")])
    zip_path = tmp_path / "student.zip"
    assert zip_path.exists() and "for students" in capsys.readouterr().out
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        root = student.ZIP_ROOT
        for must in [
            "README.md",
            "pyproject.toml",
            "Makefile",
            "effcourse/__init__.py",
            "effcourse/checks/nb00.py",
        ]:
            assert f"{root}/{must}" in names, must
        assert not any("/tests/" in n for n in names)
        readme = zf.read(f"{root}/README.md").decode()
        assert "make venv" in readme and "stops there" in readme
        for path in NOTEBOOKS:
            original = nbformat.read(path, as_version=4)
            copy = nbformat.reads(zf.read(f"{root}/notebooks/{path.name}").decode(), as_version=4)
            assert [c.id for c in copy.cells] == [c.id for c in original.cells]
            for orig, new in zip(original.cells, copy.cells):
                if "checks.nb" in orig.source and "solution" not in orig.metadata.get("tags", []):
                    assert new.source == orig.source, f"{path.name}: check cell {orig.id} changed"
                if "solution" in orig.metadata.get("tags", []):
                    assert "NotImplementedError" in new.source and "is not solved yet" in new.source
                    kept = set(new.source.splitlines())
                    assert not [ln for ln in solution_lines(orig) if ln in kept], f"{path.name} {orig.id}"
                if new.cell_type == "code":
                    assert new.outputs == [] and new.execution_count is None


def test_student_notebook_00_stops_at_its_first_exercise(tmp_path):
    """Run All on a student copy runs every cell before the first exercise, then stops with its message."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = student.student_notebook(nbformat.read(ROOT / "notebooks" / "00_setup_and_tour.ipynb", as_version=4))
    first = next(i for i, c in enumerate(nb.cells) if "exercise" in c.metadata.get("tags", []))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError, match="Exercise 1 is not solved yet"):
        client.execute()
    ran = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is not None]
    before = [i for i, c in enumerate(nb.cells[:first]) if c.cell_type == "code"]
    assert ran == before + [first]
    for cell in nb.cells[:first]:
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))


# The offline rooms' Makefile routes (wheelhouse, venv from it) are tested in tests/test_install.py.
