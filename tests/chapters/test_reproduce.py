"""Executing one notebook for the book: the injected parameters are hidden, the kernel runs encrypted."""

from __future__ import annotations

import nbformat
import pytest

from kdlib.chapters import reproduce


def _notebook(path, source: str = "print(profile)") -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "tiny"')
    params.metadata["tags"] = ["parameters", "remove-cell"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A page"), params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_hide_injected_parameters_tags_only_papermills_cell(tmp_path):
    path = tmp_path / "page.ipynb"
    _notebook(path)
    nb = nbformat.read(path, as_version=4)
    injected = nbformat.v4.new_code_cell('# Parameters\ndata_root = "/somewhere/on/this/machine"')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(2, injected)
    nbformat.write(nb, path)
    reproduce.hide_injected_parameters(path)
    reproduce.hide_injected_parameters(path)  # twice: one tag
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [[], ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], []]


def test_execute_hides_the_parameters_and_the_kernel_does_not_warn(tmp_path, monkeypatch, capfd):
    from jupyter_client.kernelspec import KernelSpecManager

    if "curve" not in KernelSpecManager().get_kernel_spec("python3").metadata.get("supported_encryption", []):
        pytest.skip("the python3 kernelspec does not declare CurveZMQ support (ipykernel < 7)")
    repo, stage = tmp_path / "repo", tmp_path / "stage"
    (repo / "notebooks").mkdir(parents=True)
    _notebook(repo / "notebooks" / "page.ipynb")
    monkeypatch.setattr(reproduce, "REPO_ROOT", repo)
    reproduce.execute(reproduce.Path("notebooks/page.ipynb"), stage, {"profile": "small"}, "python3", 120)
    cells = nbformat.read(stage / "notebooks" / "page.ipynb", as_version=4).cells
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
    assert cells[-1].outputs[0]["text"].strip() == "small"
    assert "without encryption" not in capfd.readouterr().err
    assert not list(stage.rglob("*.running.ipynb"))


def _minimal_book(stage) -> None:
    (stage / "book").mkdir(parents=True)
    (stage / "_static").mkdir()
    (stage / "_config.yml").write_text('title: t\nexecute:\n  execute_notebooks: "off"\n'
                                       "sphinx:\n  config:\n    html_static_path: [_static]\n"
                                       "    html_css_files: [kdlib.css]\n")
    (stage / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (stage / "book" / "intro.md").write_text("# A page\n\nSome text.\n")


def test_rebuilding_a_book_with_unchanged_pages_serves_the_new_static_files(tmp_path):
    _minimal_book(tmp_path)
    css = tmp_path / "_static" / "kdlib.css"
    css.write_text("p { color: red; }\n")
    html = reproduce.build_book(tmp_path)
    assert (html / "_static" / "kdlib.css").read_text() == css.read_text()
    css.write_text("p { color: blue; }\n")  # no page changed: Sphinx alone keeps the red copy
    html = reproduce.build_book(tmp_path)
    assert (html / "_static" / "kdlib.css").read_text() == "p { color: blue; }\n"


def test_refresh_static_copies_only_missing_or_changed_files(tmp_path):
    source, built = tmp_path / "src", tmp_path / "built"
    (source / "sub").mkdir(parents=True)
    built.mkdir()
    (source / "same.css").write_text("a")
    (built / "same.css").write_text("a")
    (source / "changed.css").write_text("new")
    (built / "changed.css").write_text("old")
    (source / "sub" / "missing.js").write_text("js")
    copied = reproduce.refresh_static(source, built)
    assert sorted(p.relative_to(built).as_posix() for p in copied) == ["changed.css", "sub/missing.js"]
    assert (built / "changed.css").read_text() == "new" and (built / "sub" / "missing.js").read_text() == "js"
