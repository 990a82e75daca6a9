"""Build the course: execute every notebook in order and write HTML (``make course``).

Runs ``notebooks/NN_*.ipynb`` under the active profile with nbclient, writes
``build/html/<name>.html``, the executed .ipynb to ``build/executed/``, the run times to
``build/html/timings.json`` and an index page. ``python -m effcourse.course [--only 02_pruning]``.
"""

from __future__ import annotations

import argparse
import html
import json
import time
from pathlib import Path

from . import env, profile as _profile


def notebooks(root: Path | None = None) -> list[Path]:
    """The course notebooks in order."""
    return sorted(((root or env.project_root()) / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def title_of(nb) -> str:
    """The first markdown heading of a notebook."""
    heads = [
        ln for c in nb.cells if c.cell_type == "markdown" for ln in c.source.splitlines() if ln[:1] == "#"
    ]
    return heads[0].lstrip("#").strip() if heads else ""


def run_one(path: Path, out_html: Path, out_nb: Path, timeout: int) -> float:
    """Execute one notebook, write its HTML and executed copy; return seconds taken."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            store_widget_state=True,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # the kernel's own start-up warnings
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        seconds = time.perf_counter() - start
        env.atomic_write_bytes(out_nb / path.name, nbformat.writes(nb).encode())
        body, _ = HTMLExporter().from_notebook_node(nb)
        env.atomic_write_bytes(out_html / f"{path.stem}.html", body.encode())
    return seconds


def write_index(out_html: Path, entries: list[dict], prof_name: str) -> Path:
    """build/html/index.html: the syllabus with each notebook's measured run time and link."""
    rows = "\n".join(
        f"<tr><td><a href='{html.escape(e['name'])}.html'>{html.escape(e['name'])}</a></td>"
        f"<td>{html.escape(e['title'])}</td><td>{e['seconds']:.0f} s</td>"
        f"<td>{'ok' if e['ok'] else 'FAILED'}</td></tr>"
        for e in entries
    )
    figure = ""
    for name, heading in (("course_tradeoff", "Course-wide tradeoff"), ("course_latency", "Latency")):
        if (env.build_dir("figures") / f"{name}.png").exists():
            figure += f"<h2>{heading}</h2><img src='../figures/{name}.png' width='850'>"
    try:
        from . import report, results

        targets = report.targets(results.load(prof_name)).to_html(index=False, escape=True)
        figure += "<h2>Targets against the papers</h2>" + targets
    except Exception as err:  # the index must still be written
        figure += f"<p>Targets table unavailable: {html.escape(str(err))}</p>"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>effcourse ({prof_name})</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.3em .8em}"
        "</style></head><body>"
        f"<h1>effcourse: executed notebooks ({html.escape(prof_name)} profile)</h1>"
        f"<table><tr><th>notebook</th><th>title</th><th>run time</th><th>status</th></tr>{rows}</table>"
        f"{figure}</body></html>"
    )
    return env.atomic_write_bytes(out_html / "index.html", page.encode())


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    prof = _profile.active()
    out_html, out_nb = env.build_dir("html"), env.build_dir("executed")
    todo = [p for p in notebooks() if not args.only or p.stem in args.only]
    timings_path = out_html / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    entries, total = [], time.perf_counter()

    def expected(stem):
        return _profile.RUN_MINUTES.get(stem, {}).get(prof.name, float("nan"))

    for i, path in enumerate(todo, 1):
        left = sum(expected(p.stem) for p in todo[i - 1 :])
        eta = f"expected about {expected(path.stem):g} min; about {left:.1f} min left in all"
        print(f"[{i}/{len(todo)}] {path.name} ({prof.name} profile): {eta}", flush=True)
        ok = True
        try:
            seconds = run_one(path, out_html, out_nb, args.timeout)
        except Exception as err:  # keep going; report at the end
            ok, seconds = False, float("nan")
            print(f"    FAILED: {type(err).__name__}: {str(err)[:500]}", flush=True)
        else:
            print(f"    done in {seconds:.0f} s -> build/html/{path.stem}.html", flush=True)
        timings.setdefault(prof.name, {})[path.stem] = seconds
        env.atomic_write_bytes(timings_path, json.dumps(timings, indent=1).encode())
        title = title_of(nbformat.read(path, as_version=4))
        entries.append({"name": path.stem, "title": title, "seconds": seconds, "ok": ok})
    index = write_index(out_html, entries, prof.name)
    failed = [e["name"] for e in entries if not e["ok"]]
    failures = f"; FAILED: {', '.join(failed)}" if failed else ""
    print(f"Course built in {time.perf_counter() - total:.0f} s: {index}{failures}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
