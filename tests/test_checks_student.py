import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from effcourse import checks, student

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


# --- the mechanism ---------------------------------------------------------------------


def test_check_on_placeholder_gives_a_hint():
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.call(todo, name="f")
    with pytest.raises(checks.CheckFailed, match="ZeroDivisionError"):
        checks.call(lambda: 1 / 0, name="f")


def test_close_reports_the_gap(capsys):
    checks.close([1.0, 2.0], [1.0, 2.0], "x")
    assert capsys.readouterr().out.startswith("PASS")
    with pytest.raises(checks.CheckFailed, match="off by 0.5"):
        checks.close(1.5, 1.0, "x")


def test_unknown_checks_module():
    with pytest.raises(AttributeError):
        checks.nothing_here  # noqa: B018  (the attribute access is the test)


# --- notebook 01 checks: fail on the placeholder and on typical mistakes, pass on answers ---


def ce_solution(labels, logits):
    import tensorflow as tf

    logits = tf.convert_to_tensor(logits)
    picked = tf.gather(logits, tf.cast(labels, tf.int32), axis=-1, batch_dims=1)
    return tf.reduce_mean(tf.reduce_logsumexp(logits, axis=-1) - picked)


def ce_naive(labels, logits):
    import tensorflow as tf

    p = tf.exp(logits) / tf.reduce_sum(tf.exp(logits), axis=1, keepdims=True)
    return -tf.reduce_mean(tf.math.log(tf.gather(p, tf.cast(labels, tf.int32), axis=-1, batch_dims=1)))


def ce_summed(labels, logits):
    return 3 * ce_solution(labels, logits)


def ce_numpy(labels, logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


def test_nb01_cross_entropy(capsys):
    checks.nb01.cross_entropy(ce_solution)
    assert capsys.readouterr().out.startswith("PASS")
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb01.cross_entropy(todo)
    with pytest.raises(checks.CheckFailed, match="log-sum-exp|not finite"):
        checks.nb01.cross_entropy(ce_naive)
    with pytest.raises(checks.CheckFailed, match="summed"):
        checks.nb01.cross_entropy(ce_summed)
    with pytest.raises(checks.CheckFailed, match="differentiate"):
        checks.nb01.cross_entropy(ce_numpy)  # right value, but NumPy: no gradient for the SGD step


def test_nb01_layer_macs(capsys):
    def solution(layer):
        return int(np.prod(layer.output_shape[1:-1])) * int(np.prod(layer.kernel.shape))

    checks.nb01.layer_macs(solution)
    assert capsys.readouterr().out.startswith("PASS")
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb01.layer_macs(todo)
    with pytest.raises(checks.CheckFailed, match="every output position"):
        checks.nb01.layer_macs(lambda layer: int(np.prod(layer.kernel.shape)))  # the kernel, not the work
    with pytest.raises(checks.CheckFailed, match="biases"):
        checks.nb01.layer_macs(lambda layer: solution(layer) + int(np.prod(layer.output_shape[1:])))
    with pytest.raises(checks.CheckFailed, match="output positions"):  # input positions instead
        checks.nb01.layer_macs(
            lambda layer: int(np.prod(layer.input_shape[1:-1])) * int(np.prod(layer.kernel.shape))
        )


# --- student copies ------------------------------------------------------------------------


def test_strip_solution_keeps_scaffold():
    src = "def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    out = student.strip_solution(src)
    assert "return x + 1" not in out and "def f(x):" in out and "'''doc'''" in out
    assert "    raise NotImplementedError" in out
    whole = student.strip_solution("# choose k\nk = 8\n")
    assert whole.splitlines() == ["# choose k", student.PLACEHOLDER]
    with pytest.raises(ValueError):
        student.strip_solution("### BEGIN SOLUTION\nx = 1\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_has_no_solutions(path):
    nb = nbformat.read(path, as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    if path.stem != "00_setup_and_tour":
        assert len(solutions) >= 3, "every topic notebook has at least three exercises"
    copy = student.student_notebook(nb)
    for orig, new in zip(nb.cells, copy.cells):
        if "solution" in orig.metadata.get("tags", []):
            assert "NotImplementedError" in new.source
            body = (
                orig.source.split(student.BEGIN)[1].split(student.END)[0]
                if student.BEGIN in orig.source
                else orig.source
            )
            for line in body.strip().splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    assert line not in new.source.splitlines()
    assert nb.cells[0].source == copy.cells[0].source


def test_markers_are_stripped_wherever_they_are():
    """Untagged code cells, several blocks in a cell, a marker mid-line, markdown: nothing survives."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Exercise 3.** Write the rule."),
        nbformat.v4.new_code_cell(  # no `solution` tag
            "def rule(p):\n    ### BEGIN SOLUTION\n    return p.max() > 0.9\n    ### END SOLUTION\n"
            "t = 1  ### BEGIN SOLUTION\nt = 0.85\n### END SOLUTION"
        ),
        nbformat.v4.new_markdown_cell(
            "Why?\n### BEGIN SOLUTION\nBecause the exit is cheap.\n### END SOLUTION"
        ),
    ]
    copy = student.student_notebook(nb)
    code, text = copy.cells[1].source, copy.cells[2].source
    assert "p.max() > 0.9" not in code and "0.85" not in code and "def rule(p):" in code
    assert code.count("Exercise 3 is not solved yet") == 2 and "exercise" in copy.cells[1].metadata.tags
    assert "cheap" not in text and student.MARKDOWN_ANSWER in text
    assert not any(student.has_markers(c.source) for c in copy.cells)


def _reference_lines(nb) -> set[str]:
    """Every substantial line of every reference answer (between markers, or a tagged cell without them)."""
    lines = set()
    for cell in nb.cells:
        tagged = "solution" in cell.metadata.get("tags", [])
        if not (tagged or student.has_markers(cell.source)):
            continue
        if student.BEGIN in cell.source:
            bodies = [b.split(student.END)[0] for b in cell.source.split(student.BEGIN)[1:]]
        else:
            bodies = [cell.source]
        for body in bodies:
            for line in body.splitlines()[1:] if student.BEGIN in cell.source else body.splitlines():
                text = line.strip()
                if len(text) >= 12 and not text.startswith("#"):
                    lines.add(text)
    elsewhere = {  # lines the notebook also shows outside its answers are no leak
        ln.strip()
        for c in nb.cells
        if "solution" not in c.metadata.get("tags", []) and not student.has_markers(c.source)
        for ln in c.source.splitlines()
    }
    return lines - elsewhere


def test_student_copies_and_zip_hold_no_marker_and_no_reference_code(tmp_path):
    """Every student notebook and every file of the students' zip: no marker, no line of an answer."""
    import zipfile

    student.main(["--out", str(tmp_path / "student")])
    with zipfile.ZipFile(tmp_path / "student.zip") as zf:
        members = {n: zf.read(n).decode("utf-8", "replace") for n in zf.namelist()}
    for needed in ("constraints.txt", "Makefile", "pyproject.toml"):  # `make venv` installs from them
        assert f"{student.ZIP_ROOT}/{needed}" in members
    assert f"{student.ZIP_ROOT}/effcourse/student.py" not in members
    # a marker in the package is one that starts a line (the checks' docstring may name them in ``quotes``)
    marked = re.compile(rf"^\s*(?:{student.BEGIN}|{student.END})", re.M)
    assert not [n for n, body in members.items() if marked.search(body)]
    for path in NOTEBOOKS:
        answers = _reference_lines(nbformat.read(path, as_version=4))
        for where in (tmp_path / "student" / path.name, f"{student.ZIP_ROOT}/notebooks/{path.name}"):
            body = where.read_text() if isinstance(where, Path) else members[where]
            copy = nbformat.reads(body, as_version=4)
            shown = {ln.strip() for c in copy.cells for ln in c.source.splitlines()}
            assert not answers & shown, f"{path.name}: answer lines in the student copy: {answers & shown}"
            assert not any(student.has_markers(c.source) for c in copy.cells), path.name


def test_student_command_line():
    """--help prints usage (no folder named --help); an unknown option is an error."""
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "effcourse.student", "--help"], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0 and "usage:" in done.stdout and "--out" in done.stdout
    assert not (root / "--help").exists()
    with pytest.raises(SystemExit) as exit_info:
        student.main(["--bogus"])
    assert exit_info.value.code == 2


def test_every_exercise_is_followed_by_a_check():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if "solution" in cell.metadata.get("tags", []):
                following = "\n".join(c.source for c in nb.cells[i + 1 : i + 3] if c.cell_type == "code")
                assert "checks." in following, f"{path.name} cell {i}: no check after the exercise"


def test_every_check_prints_exactly_one_pass_line(capsys):
    """A check made of several verifications reports one PASS line: the learner reads one verdict."""
    import effcourse.checks.nb03 as nb03

    def quantize(x, scale, zero_point, q_min=-128, q_max=127):
        return np.clip(np.round(np.asarray(x, dtype=float) / scale) + zero_point, q_min, q_max).astype(
            np.int8
        )

    nb03.quantize_dequantize(quantize, lambda q, scale, zero_point: scale * (q.astype(float) - zero_point))
    out = capsys.readouterr().out
    assert out.count("PASS") == 1 and out.startswith("PASS: q = clip(round(x / s) + z")
    checks.close(1.0, 1.0, "outside a check")  # a helper used on its own still prints its line
    assert capsys.readouterr().out.count("PASS") == 1


def sweep(finals, steps=90, noise=0.02, seed=0):
    """Loss curves per learning rate that end near the given final losses (None: diverged)."""
    rng = np.random.default_rng(seed)
    out = {}
    for lr, final in finals.items():
        if final is None:
            out[lr] = np.concatenate([np.linspace(2.3, 40.0, steps - 5), [np.nan] * 5])
        else:
            out[lr] = final + (2.3 - final) * np.exp(-np.arange(steps) / 15) + rng.normal(0, noise, steps)
    return out


def test_nb01_learning_rate_choice(capsys):
    curves = sweep({0.01: 2.0, 0.1: 0.45, 0.5: 0.30, 2.0: None})
    checks.nb01.learning_rate_choice(0.5, curves)  # the best
    assert capsys.readouterr().out.count("PASS") == 1
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb01.learning_rate_choice(None, curves)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb01.learning_rate_choice(..., curves)
    with pytest.raises(checks.CheckFailed, match="one rate, not several"):  # hedging on a tie of choices
        checks.nb01.learning_rate_choice([0.1, 0.5], curves)
    with pytest.raises(checks.CheckFailed, match="one of the rates"):  # a number the sweep does not measure
        checks.nb01.learning_rate_choice(0.3, curves)
    with pytest.raises(checks.CheckFailed, match="diverged"):
        checks.nb01.learning_rate_choice(2.0, curves)
    with pytest.raises(checks.CheckFailed, match="larger step"):
        checks.nb01.learning_rate_choice(0.1, curves)
    tied = sweep({0.01: 2.0, 0.1: 0.300, 0.5: 0.302, 2.0: None})
    for right in (0.1, 0.5):  # two rates within noise of each other: both right answers
        checks.nb01.learning_rate_choice(right, tied)
    assert capsys.readouterr().out.count("PASS") == 2
    with pytest.raises(checks.CheckFailed, match="every rate diverged"):
        checks.nb01.learning_rate_choice(0.1, {0.1: [np.inf] * 20, 0.5: [np.nan] * 20})
