"""The main job: `kdlib reproduce --profile tiny` executes every notebook and builds the book."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kdlib.paths import REPO_ROOT
from kdlib.chapters.reproduce import toc_entries, toc_notebooks


def kdlib_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kdlib.cli", *args], capture_output=True, text=True, env=env)


def test_every_toc_entry_exists_and_notebooks_have_parameters():
    for entry in toc_entries(REPO_ROOT / "_toc.yml"):
        assert any((REPO_ROOT / (entry + sfx)).exists() for sfx in (".md", ".ipynb")), entry
    notebooks = toc_notebooks()
    assert notebooks, "the book has no notebook"
    for nb in notebooks:
        cells = json.loads((REPO_ROOT / nb).read_text())["cells"]
        first = next(c for c in cells if c["cell_type"] == "code")
        assert "parameters" in first["metadata"].get("tags", []), f"{nb}: first code cell is not tagged parameters"
        # the page shows papermill's injected values (the profile it ran at), not the defaults
        assert "remove-cell" in first["metadata"]["tags"], f"{nb}: the default parameters cell is shown in the book"
        source = "".join(first["source"])
        for name in ("profile", "data_root", "out_dir", "seed", "device", "progress", "overrides"):
            assert re.search(rf"^{name}\s*:", source, re.M), f"{nb}: parameter {name!r} missing"


def test_without_data_it_stops_at_once_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = kdlib_cli("reproduce", "--profile", "tiny", "--data-root", str(tmp_path / "absent"), "--out", str(out))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--data-root" in proc.stderr and "KDLIB_DATA" in proc.stderr and "ucmerced" in proc.stderr.lower()
    assert not out.exists()


def test_missing_kernel_is_named(tmp_path, data_root):
    proc = kdlib_cli("reproduce", "--kernel", "no-such-kernel", "--data-root", str(data_root), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "no-such-kernel" in proc.stderr and "ipykernel install" in proc.stderr


def test_cells_have_no_time_limit_unless_one_is_asked_for():
    """A `small` training cell runs for about an hour on a CPU: no default limit may kill it."""
    from kdlib.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["reproduce"]).timeout is None
    assert parser.parse_args(["reproduce", "--timeout", "60"]).timeout == 60
    proc = kdlib_cli("reproduce", "--timeout", "0")
    assert proc.returncode == 2 and "--timeout must be a positive number of seconds" in proc.stderr


class PageCheck(HTMLParser):
    """Collects what makes a built page broken: error outputs, images without a file, empty tables."""

    def __init__(self):
        super().__init__()
        self.errors, self.images, self.tables, self._rows = [], [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "error" in classes or "traceback" in classes or "output_error" in classes:
            self.errors.append(a.get("class"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self._rows = 0
        if tag == "td" and self._rows is not None:
            self._rows += 1

    def handle_endtag(self, tag):
        if tag == "table" and self._rows is not None:
            self.tables.append(self._rows)
            self._rows = None


def check_page(html: Path) -> list[str]:
    parser = PageCheck()
    text = html.read_text(errors="replace")
    parser.feed(text)
    problems = [f"error output ({c})" for c in parser.errors]
    problems += ["traceback text" for _ in re.findall(r"Traceback \(most recent call last\)", text)]
    problems += ["figure shown as text" for _ in re.findall(r"&lt;Figure size", text)]
    for src in parser.images:
        if not src.startswith(("data:", "http")) and not (html.parent / src.split("#")[0]).exists():
            problems.append(f"missing figure {src}")
    problems += ["empty table" for n in parser.tables if n == 0]
    return problems


@pytest.mark.slow
def test_reproduce_tiny_builds_every_page(tiny_book):
    out, returncode = tiny_book
    assert returncode == 0
    html = out / "book" / "_build" / "html"
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {str(nb) for nb in toc_notebooks()}
    for entry in toc_entries(REPO_ROOT / "_toc.yml"):
        page = html / (entry + ".html")
        assert page.exists(), f"page {entry} was not built"
        assert check_page(page) == [], f"{entry}: {check_page(page)}"


def test_progress_flag_defaults_to_on_only_at_a_terminal(monkeypatch):
    import io

    from kdlib.cli import build_parser

    for tty in (True, False):
        fake = io.StringIO()
        fake.isatty = lambda tty=tty: tty
        monkeypatch.setattr("sys.stderr", fake)
        assert build_parser("reproduce").parse_args(["reproduce"]).progress is tty
    assert build_parser("reproduce").parse_args(["reproduce", "--progress"]).progress is True
    assert build_parser("reproduce").parse_args(["reproduce", "--no-progress"]).progress is False
