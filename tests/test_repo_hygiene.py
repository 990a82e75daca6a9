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
        assert not re.search(r"^\s*[!%]\s*pip\s+install|pip install", cell.source, re.M), \
            f"{path.name}: notebooks never install packages"
        assert "import *" not in cell.source, f"{path.name}: no star imports"
        assert "TF_USE_LEGACY_KERAS" not in cell.source, "only effcourse.env knows about that"
    first = code[0].source
    assert "import effcourse" in first and "effcourse.setup(" in first, \
        f"{path.name}: the first code cell imports effcourse and calls setup()"
    assert sum("effcourse.setup(" in c.source for c in code) == 1
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def _names(reqs):
    return {re.split(r"[<>=~!\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in reqs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["dev"])
    env_text = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+- (\S+)\s*(?:#.*)?$", env_text.split("- pip:")[1], re.M)
    listed = _names(p for p in pip_lines if not p.startswith("-e"))
    assert listed == wanted
    assert "python=3.11" in env_text and "-e ." in env_text
    for line in env_text.split("- pip:")[1].splitlines():
        if line.strip().startswith("- "):
            assert "#" in line, f"environment.yml line without a reason: {line.strip()}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "EFFCOURSE_DATA_DIR" in ci
