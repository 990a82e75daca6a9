"""Repository rules: notebooks committed without outputs, one setup call, no installs,
no star imports; environment.yml and pyproject.toml name the same packages."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_numbered():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_rules(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert not cell.outputs, f"{path.name}: committed with outputs (clear them)"
        assert cell.execution_count is None, f"{path.name}: committed with execution counts"
        assert not re.search(r"^\s*[!%]\s*pip\s+install|pip install", cell.source, re.M), (
            f"{path.name}: notebooks never install packages"
        )
        assert "import *" not in cell.source, f"{path.name}: no star imports"
        assert "TF_USE_LEGACY_KERAS" not in cell.source, "only effcourse.env knows about that"
    first = code[0].source
    assert "import effcourse" in first and "effcourse.setup(" in first, (
        f"{path.name}: the first code cell imports effcourse and calls setup()"
    )
    assert sum("effcourse.setup(" in c.source for c in code) == 1
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def _names(reqs):
    return {re.split(r"[<>=~!\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in reqs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"])  # the learner set; test tools are the `test` extra
    env_text = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+- (\S+)\s*(?:#.*)?$", env_text.split("- pip:")[1], re.M)
    listed = _names(p for p in pip_lines if not p.startswith("-"))
    assert listed == wanted
    assert "python=3.11" in env_text and "-e ." in env_text and "-c constraints.txt" in env_text
    for line in env_text.split("- pip:")[1].splitlines():
        if line.strip().startswith("- "):
            assert "#" in line, f"environment.yml line without a reason: {line.strip()}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "EFFCOURSE_DATA_DIR" in ci


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_normalised_and_renders(path):
    """The .ipynb is the source: committed exactly as `make nbfix` writes it, no broken text."""
    from effcourse import nbsource

    assert nbsource.check(path) == []


def test_normaliser_keeps_ids_strips_outputs_and_fills_missing_ids():
    from effcourse import nbsource

    nb = nbformat.v4.new_notebook()
    a = nbformat.v4.new_code_cell(
        "x = 1", id="keep-me", execution_count=3, outputs=[nbformat.v4.new_output("stream", text="1")]
    )
    a.metadata.update({"scrolled": True, "tags": ["solution", "solution"]})
    b = nbformat.v4.new_markdown_cell("# T", id="keep-me")  # a duplicate id (pasted cell)
    nb.cells = [b.copy(), a, b]
    nb.cells[0].id = "first"
    nb.metadata["widgets"] = {"state": {}}
    out = nbsource.normalise(nb)
    assert [c.id for c in out.cells][:2] == ["first", "keep-me"]
    assert out.cells[2].id not in ("first", "keep-me") and len(out.cells[2].id) == 8
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None
    assert out.cells[1].metadata == {"tags": ["solution"]}
    assert "widgets" not in out.metadata
    # idempotent, and inserting a cell does not change the others' ids
    again = nbsource.normalise(out)
    assert nbsource.serialise(again) == nbsource.serialise(out)
    out.cells.insert(0, nbformat.v4.new_code_cell("y = 2"))
    del out.cells[0]["id"]
    moved = nbsource.normalise(out)
    assert [c.id for c in moved.cells][1:] == [c.id for c in again.cells]


def test_text_problems_finds_a_tab_where_tfrac_was_meant():
    from effcourse import nbsource

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("$w/s = k + \tfrac12$")]
    assert any("tab character" in p for p in nbsource.text_problems(nb))
    nb.cells = [nbformat.v4.new_markdown_cell("$w/s = k + \\tfrac12$")]
    assert nbsource.text_problems(nb) == []


def test_run_time_line_is_rewritten_from_the_one_source():
    from effcourse import nbsource, profile

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 02 · Pruning\n\n**Run time:** about 99 min, maybe\n\nText")]
    out = nbsource.normalise(nb, "02_pruning")
    assert profile.run_time_line("02_pruning") in out.cells[0].source
    assert "99 min" not in out.cells[0].source and out.cells[0].source.endswith("Text")


def test_readme_syllabus_run_times_come_from_the_one_source():
    from effcourse import profile

    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\d\d_[a-z0-9_]+)` \|.*\| ([\d.]+) min \| ([\d.]+) min[^|]*\|$", readme, re.M)
    assert {stem for stem, _, _ in rows} == {p.stem for p in NOTEBOOKS} == set(profile.RUN_MINUTES)
    for stem, quick, full in rows:
        assert float(quick) == profile.RUN_MINUTES[stem]["quick"], stem
        assert float(full) == profile.RUN_MINUTES[stem]["full"], stem


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_long_cells_are_the_exception_with_a_reason(path):
    """Logic belongs in the tested package; a code cell over 25 lines must say why it is long."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if cell.cell_type == "code" and len(lines) > 25:
            assert lines[0].startswith("# Long cell:"), (
                f"{path.name}: cell {cell.id} has {len(lines)} lines; move its logic into effcourse "
                "(a tested function) or start it with '# Long cell: <why>'"
            )


MAX_CODE_LINE = 100  # JupyterLab's default width shows about 100 characters of a code cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_jupyterlabs_width(path):
    """Every line of every code cell is at most MAX_CODE_LINE characters (no sideways scrolling)."""
    nb = nbformat.read(path, as_version=4)
    long = [
        f"cell {cell.id} line {i}: {len(line)} characters"
        for cell in nb.cells
        if cell.cell_type == "code"
        for i, line in enumerate(cell.source.splitlines(), 1)
        if len(line) > MAX_CODE_LINE
    ]
    assert not long, f"{path.name}: code lines over {MAX_CODE_LINE} characters: {long}"


# Modules that are tools around the course (commands, checks, plumbing), not the API a notebook teaches.
TOOL_MODULES = {
    "course",
    "nbsource",
    "student",
    "errors",
    "validate",
    "_mw_worker",
    "doctor",
    "prepare",
    "wheelhouse",
}


def _public_definitions():
    import ast

    for path in sorted((ROOT / "effcourse").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "checks" in rel.parts or path.stem in TOOL_MODULES:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                yield f"{rel}:{node.name}", ast.get_docstring(node) or ""


def test_every_public_name_says_which_notebook_introduces_it_one_way():
    """One tag form, "Introduced in notebook NN.", on every public function and class."""
    missing = [
        name
        for name, doc in _public_definitions()
        if not re.search(r"^Introduced in notebook \d\d\.", doc, re.M)
    ]
    assert not missing, f"{len(missing)} public names lack 'Introduced in notebook NN.': {missing[:10]}"
    for name, doc in _public_definitions():
        first = doc.splitlines()[0] if doc else ""
        assert not re.search(r"\(notebooks? \d\d\)\.?$|Notebook \d\d\.$", first), f"{name}: old tag form"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_has_prerequisites_and_the_run_time_from_the_one_source(path):
    from effcourse import profile

    first = nbformat.read(path, as_version=4).cells[0].source
    assert profile.run_time_line(path.stem) in first
    assert "Prerequisites" in first and "learn" in first.lower()
