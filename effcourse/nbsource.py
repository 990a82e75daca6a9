"""Keep the notebooks as their own source: normalise, check, and list problems (contributors).

``make nbfix`` (``python -m effcourse.nbsource --fix``) makes a notebook byte-for-byte what
the repository expects: no outputs or execution counts, metadata reduced to the kernel spec
and cell ``tags``, every cell with a unique id (kept; new random ones where missing or
duplicated), the first cell's ``**Run time:**`` line from ``profile.RUN_MINUTES``, and
nbformat's layout. ``--check`` (run by the test suite) changes nothing and also reports text
that renders wrongly, such as a tab where ``\\t`` in ``\\tfrac`` was meant.
"""

from __future__ import annotations

import argparse
import re
import sys
import uuid
from pathlib import Path

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
ID_PATTERN = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")  # nbformat 4.5's rule for cell ids
RUN_TIME = re.compile(r"^\*\*Run time:\*\*.*$", re.M)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything but \n, and \t handled below


def normalise(nb, stem: str | None = None):
    """A normalised copy of a notebook node; with ``stem`` (file name) its run-time line too."""
    import copy

    import nbformat

    from . import profile

    nb = copy.deepcopy(nb)
    first = nb.cells[0] if nb.cells else None
    if stem in profile.RUN_MINUTES and first is not None and first.cell_type == "markdown":
        source = first.source if isinstance(first.source, str) else "".join(first.source)
        first.source = RUN_TIME.sub(lambda _: profile.run_time_line(stem), source)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    nb.metadata = nbformat.from_dict({"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    taken: set = set()
    for cell in nb.cells:
        tags = sorted(set(cell.get("metadata", {}).get("tags", [])))
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
        cid = cell.get("id")
        while not cid or cid in taken or not ID_PATTERN.match(cid):
            cid = uuid.uuid4().hex[:8]
        cell.id = cid
        taken.add(cid)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        if isinstance(cell.source, list):
            cell.source = "".join(cell.source)
        cell.source = cell.source.rstrip("\n")
    nbformat.validate(nb)
    return nb


def text_problems(nb) -> list[str]:
    """Characters in cell sources that render wrongly (control characters, tabs in markdown)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        for lineno, line in enumerate(source.split("\n"), 1):
            where = f"cell {i} (id {cell.get('id')}), line {lineno}"
            if _CONTROL.search(line):
                char = _CONTROL.search(line).group()
                problems.append(
                    f"{where}: control character {char!r} (a backslash escape such as \\b or \\f lost in a string?)"
                )
            if cell.cell_type == "markdown" and "\t" in line:
                problems.append(
                    f"{where}: tab character in markdown (was \\t in \\tfrac or \\theta meant?): {line.strip()[:60]!r}"
                )
    return problems


def serialise(nb) -> str:
    """The notebook as the repository stores it (nbformat's writer, trailing newline)."""
    import nbformat

    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def check(path: Path) -> list[str]:
    """Problems of one notebook file: not normalised, or text that renders wrongly."""
    import nbformat

    text = Path(path).read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    problems = [f"{path}: {p}" for p in text_problems(nb)]
    if serialise(normalise(nb, Path(path).stem)) != text:
        problems.append(
            f"{path}: not normalised (outputs, metadata, ids, formatting or run time); "
            "run `make nbfix` (python -m effcourse.nbsource --fix)"
        )
    return problems


def fix(path: Path) -> bool:
    """Normalise one notebook file in place (atomic write); True if it changed."""
    import nbformat

    from .env import atomic_write_bytes

    text = Path(path).read_text(encoding="utf-8")
    new = serialise(normalise(nbformat.reads(text, as_version=4), Path(path).stem))
    if new != text:
        atomic_write_bytes(path, new.encode("utf-8"))
    return new != text


def main(argv=None) -> int:
    import nbformat

    from .course import notebooks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fix", action="store_true", help="normalise in place (default)")
    group.add_argument("--check", action="store_true", help="report, change nothing; exit 1 on problems")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.paths or notebooks()
    if args.check:
        problems = [p for path in paths for p in check(path)]
        print("\n".join(problems) or f"{len(paths)} notebooks normalised, no text problems")
        return 1 if problems else 0
    changed = [path for path in paths if fix(path)]
    for path in changed:
        print(f"normalised {path}")
    remaining = [p for path in paths for p in text_problems(nbformat.read(path, as_version=4))]
    print("\n".join(remaining) or f"{len(paths)} notebooks checked, {len(changed)} changed")
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
