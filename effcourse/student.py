"""Student copies of the notebooks: solutions removed, checks kept (``make student``).

A code cell tagged ``solution`` holds a reference answer. In the student copy the lines
between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` become
``raise NotImplementedError(...)`` at the same indentation (so the surrounding ``def``
line and signature stay as a scaffold); a tagged cell without markers is replaced whole.
Outputs are cleared. Usage: ``python -m effcourse.student [out_dir]``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("Exercise: write your code here, then run the check below.")'


def strip_solution(source: str) -> str:
    """The student version of one solution cell's source."""
    if BEGIN not in source:
        keep = [ln for ln in source.splitlines() if ln.lstrip().startswith("#")]
        return "\n".join(keep + [PLACEHOLDER])
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError("nested '### BEGIN SOLUTION' markers")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out.append(indent + PLACEHOLDER)
        elif stripped.startswith(END):
            if not inside:
                raise ValueError("'### END SOLUTION' without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without an END")
    return "\n".join(out)


def student_notebook(nb):
    """A copy of a notebook (nbformat node) with solutions stripped and outputs cleared."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        if "solution" in cell.get("metadata", {}).get("tags", []):
            cell.source = strip_solution(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "solution"] + ["exercise"]
    return nb


def main(argv=None) -> int:
    import nbformat

    from .env import atomic_write_bytes, project_root

    args = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args[0]) if args else project_root() / "build" / "student"
    notebooks = sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in notebooks:
        nb = student_notebook(nbformat.read(path, as_version=4))
        atomic_write_bytes(out_dir / path.name, nbformat.writes(nb).encode())
        print(f"student copy: {out_dir / path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
