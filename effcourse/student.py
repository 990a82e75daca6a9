"""Student copies of the notebooks: solutions removed, checks kept (``make student``).

In every code cell tagged ``solution`` or holding markers, the lines between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` become ``raise NotImplementedError("Exercise N is not
solved yet ...")`` at the same indentation (a tagged cell without markers is replaced whole),
so a copy run top to bottom stops at the first unsolved exercise; in markdown the text between
markers becomes a line asking for the answer. Outputs are cleared.
``python -m effcourse.student [--out DIR]`` writes the copies to ``DIR`` (default
``build/student``) and ``<DIR>.zip``: notebooks, the package without this module, the install
files and a README, which runs with the same ``make venv`` / ``make lab``.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("Exercise: write your code here, then run the check below.")'
# Files of the course that go into the students' zip besides the notebooks (no tests, no solutions).
ZIP_FILES = "pyproject.toml constraints.txt Makefile environment.yml data/README.md docs/TROUBLESHOOTING.md"
ZIP_ROOT = "effcourse-student"
# Package modules left out of the students' zip: this one names the markers and makes the copies.
ZIP_EXCLUDE = ("effcourse/student.py",)
MARKDOWN_ANSWER = "*(Write your answer here.)*"

STUDENT_README = """\
# effcourse: the student copy

The notebooks of the course on making neural networks smaller, faster and cheaper to train,
with the exercise answers removed. Each exercise is a cell to complete followed by a check
cell that prints `PASS` or a hint about what is off (never the answer).

## Set up (once, before the day)

You need Python 3.10, 3.11 or 3.12. In this folder:

```bash
make venv                     # creates .venv and installs the course (about 1 GB download)
make prepare                  # MNIST, the three baselines, then the doctor: says what to fix
```

Without `make` (Windows PowerShell or cmd; on macOS/Linux use `.venv/bin/python`):

```
py -3.11 -m venv .venv
.venv\\Scripts\\python -m pip install -c constraints.txt -e .
.venv\\Scripts\\python -m effcourse.prepare
```

If your instructor gave you a `wheelhouse/` folder, put it here first: `make venv` then
installs from it without the internet (without make: add `--no-index --find-links wheelhouse`
to the pip line). MNIST is downloaded into `data/`, or read from the folder named by
`EFFCOURSE_DATA_DIR` (your instructor may give you one).

## Work

```bash
make lab PROFILE=quick          # short runs (small data, few epochs): for the workshop
make lab                            # the full course (longer; the real results)
```

Open the notebooks in order (`00_` first). Run a notebook top to bottom ("Run All"): it
runs until the first exercise you have not solved and stops there with that exercise's
message. Write your answer in place of the `raise NotImplementedError(...)` line, run that
cell, then the check below it; when it prints `PASS`, run the rest. Some exercises ask for a
prediction before a measurement: write your honest guess first, then run and compare.

Problems and their fixes: TROUBLESHOOTING.md.
"""


def placeholder(label: str | None = None) -> str:
    """The line that replaces a solution: names its exercise when the label is known."""
    if not label:
        return PLACEHOLDER
    return f'raise NotImplementedError("{label} is not solved yet: write your answer here, then run the check below.")'


def strip_solution(source: str, label: str | None = None) -> str:
    """The student version of one solution cell's source (``label`` names the exercise in the placeholder)."""
    line_to_raise = placeholder(label)
    if BEGIN not in source:
        keep = [ln for ln in source.splitlines() if ln.lstrip().startswith("#")]
        return "\n".join(keep + [line_to_raise])
    return _replace_blocks(source, line_to_raise)


def has_markers(source: str) -> bool:
    """True when ``source`` holds a solution marker (BEGIN or END) anywhere."""
    return BEGIN in source or END in source


def _replace_blocks(source: str, replacement: str) -> str:
    """Every BEGIN..END block of ``source`` replaced by ``replacement`` at the BEGIN line's indentation."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if BEGIN in stripped:
            if inside:
                raise ValueError("nested '### BEGIN SOLUTION' markers")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.append(indent + replacement)
        elif END in stripped:
            if not inside:
                raise ValueError("'### END SOLUTION' without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without an END")
    return "\n".join(out)


def exercise_label(markdown: str) -> str | None:
    """'Exercise N' from the last **Exercise N.** (or **Exercise N (...).**) in a markdown cell."""
    found = re.findall(r"\*\*Exercise (\d+)\b", markdown)
    return f"Exercise {found[-1]}" if found else None


def student_notebook(nb):
    """A copy of a notebook (nbformat node) with solutions stripped and outputs cleared."""
    import copy

    nb = copy.deepcopy(nb)
    label = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            if cell.cell_type == "markdown":
                label = exercise_label(cell.source) or label
            if has_markers(cell.source):
                cell.source = _replace_blocks(cell.source, MARKDOWN_ANSWER)
            continue
        cell.outputs = []
        cell.execution_count = None
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution" in tags or has_markers(cell.source):
            cell.source = strip_solution(cell.source, label)
            cell.metadata["tags"] = [t for t in tags if t not in ("solution", "exercise")] + ["exercise"]
    return nb


def write_zip(zip_path: Path, notebooks: dict[str, bytes], root: Path) -> Path:
    """The students' course folder as one zip: notebooks, the package, install files, a README."""
    import io

    from .env import atomic_write_bytes

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{ZIP_ROOT}/README.md", STUDENT_README)
        for name, body in notebooks.items():
            zf.writestr(f"{ZIP_ROOT}/notebooks/{name}", body)
        for rel in ZIP_FILES.split():
            if (root / rel).exists():
                zf.write(root / rel, f"{ZIP_ROOT}/{Path(rel).name if rel.startswith('docs/') else rel}")
        for path in sorted((root / "effcourse").rglob("*.py")):
            if path.relative_to(root).as_posix() in ZIP_EXCLUDE:
                continue
            zf.write(path, f"{ZIP_ROOT}/{path.relative_to(root).as_posix()}")
    return atomic_write_bytes(zip_path, buffer.getvalue())


def main(argv=None) -> int:
    import nbformat

    from .env import atomic_write_bytes, project_root

    parser = argparse.ArgumentParser(
        prog="python -m effcourse.student",
        description="Write solution-free copies of the notebooks and a zip.",
    )
    parser.add_argument(
        "--out", type=Path, help="folder for the copies (default: build/student); zip beside it"
    )
    args = parser.parse_args(argv)
    root = project_root()
    out_dir = args.out or root / "build" / "student"
    written = {}
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        body = nbformat.writes(student_notebook(nbformat.read(path, as_version=4))).encode()
        atomic_write_bytes(out_dir / path.name, body)
        written[path.name] = body
        print(f"student copy: {out_dir / path.name}")
    zip_path = write_zip(out_dir.parent / f"{out_dir.name}.zip", written, root)
    print(f"for students: {zip_path} ({len(written)} notebooks, the effcourse package, README.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
