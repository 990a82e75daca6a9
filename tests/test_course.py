from pathlib import Path

from effcourse import course

ROOT = Path(__file__).parent.parent


def test_notebooks_are_in_order():
    names = [p.name for p in course.notebooks(ROOT)]
    assert names == sorted(names) and names[0].startswith("00_")


def test_index_links_every_notebook(tmp_root):
    entries = [
        {"name": p.stem, "title": f"T{i}", "seconds": 12.0 + i, "ok": i != 1}
        for i, p in enumerate(course.notebooks(ROOT))
    ]
    assert len(entries) >= 2
    out = tmp_root / "build" / "html"
    out.mkdir(parents=True)
    page = course.write_index(out, entries, "quick").read_text()
    for e in entries:
        assert f"href='{e['name']}.html'" in page
    assert "FAILED" in page and "quick profile" in page
    assert "Targets against the papers" in page and "not measured" in page  # empty log: says what to run
