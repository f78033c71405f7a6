"""Reproducing the book: execute every notebook with papermill, then build the book (``kdlib reproduce``).

The notebooks are taken from the book's table of contents (``_toc.yml``), in its order, so a
new chapter only has to be listed there. Each is executed into a staging copy of the book
(``<out>/book/``) with the profile's parameters, one at a time; the book is then built from
the executed copies with ``execute_notebooks: "off"`` and ``-W`` so that a missing glue key
or a broken reference fails the build. A failing notebook stops the run with its name and
cell; the executed copy with the traceback is kept beside the others for reading.

Two things of papermill's execution are set for the book: the cell papermill injects with the run's
parameters (absolute paths of this machine) is tagged ``remove-cell`` like the notebook's own
``parameters`` cell (:func:`hide_injected_parameters`), and the kernel manager provisions CurveZMQ
keys for kernels whose kernelspec declares ``supported_encryption: curve`` (jupyter_client's
``KernelManager.transport_encryption = "auto"``), so the kernels' sockets are encrypted and ipykernel
no longer warns, once per notebook, that it runs over TCP without encryption.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kdlib.errors import UserError
from kdlib.files import require_writable
from kdlib.files import write_json
from kdlib.paths import REPO_ROOT, resolve_data_root

BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
BOOK_DIRS = ("book", "_static")  # _static: the offline MathJax and the book's CSS
KERNEL_HELP = "register it once with: python -m ipykernel install --user --name kdlib"


def toc_entries(toc_path: Path) -> list[str]:
    """Every ``file`` of ``_toc.yml`` (root first), in reading order, without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def toc_notebooks(repo: Path = REPO_ROOT) -> list[Path]:
    """The notebooks of the table of contents, relative to ``repo``, in book order."""
    return [Path(f + ".ipynb") for f in toc_entries(repo / "_toc.yml") if (repo / (f + ".ipynb")).exists()]


def check_kernel(name: str) -> None:
    """Raise :class:`UserError` unless kernel ``name`` is installed and its Python still exists."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise UserError(f"the Jupyter kernel {name!r} is not installed; {KERNEL_HELP} "
                        "(or pass --kernel python3)") from None
    exe = Path(spec.argv[0]) if spec.argv else None
    if exe is not None and exe.is_absolute() and not exe.exists():
        raise UserError(f"the Jupyter kernel {name!r} runs {exe}, which no longer exists (deleted environment?)"
                        "; re-register it from the environment kdlib is installed in with: "
                        f"python -m ipykernel install --user --name {name}")


@dataclass(frozen=True)
class NotebookRun:
    notebook: Path
    seconds: float


def execute(nb: Path, stage: Path, params: dict, kernel: str, timeout: int | None,
            progress: bool = False) -> NotebookRun:
    """Run one notebook into ``stage/nb`` (``timeout``: seconds per cell, None for no limit); on failure
    raise :class:`UserError` naming the cell. ``progress``: papermill's bar over the cells and the
    cells' own output (training and evaluation bars) echoed to the terminal as they run."""
    import papermill as pm
    from traitlets.config import Config

    src, dst = REPO_ROOT / nb, stage / nb
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".running.ipynb")
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name=kernel, cwd=str(dst.parent),
                            progress_bar=progress, log_output=progress, execution_timeout=timeout,
                            config=Config({"KernelManager": {"transport_encryption": "auto"}}))
    except pm.PapermillExecutionError as err:
        failed = dst.with_name(dst.stem + ".failed.ipynb")
        tmp.replace(failed)
        raise UserError(f"notebook {nb} failed at cell {err.cell_index} (In [{err.exec_count}]): "
                        f"{err.ename}: {err.evalue}\n  the executed copy with the traceback: {failed}") from None
    hide_injected_parameters(tmp)
    tmp.replace(dst)
    return NotebookRun(nb, time.perf_counter() - start)


def hide_injected_parameters(path: Path) -> None:
    """Tag the cell papermill injected into the notebook at ``path`` (tag ``injected-parameters``)
    ``remove-cell``, so that the built book does not show it (it holds this machine's paths)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(notebook, path)


def stage_book(stage: Path) -> None:
    """Copy the book's own files (config, toc, markdown pages, static files) into the staging folder."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, stage / name)
    for name in BOOK_DIRS:
        shutil.copytree(REPO_ROOT / name, stage / name, dirs_exist_ok=True)


def build_book(stage: Path) -> Path:
    """``jupyter-book build -W -n --keep-going``; returns the HTML folder."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe if exe.exists() else "jupyter-book"), "build", str(stage), "-W", "-n", "--keep-going"]
    log = stage / "build.log"
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise UserError(f"the book build failed (exit {proc.returncode}); full log: {log}\n{tail}")
    html = stage / "_build" / "html"
    refresh_static(stage / "_static", html / "_static")
    return html


def refresh_static(source: Path, built: Path) -> list[Path]:
    """Copy every file of the book's ``_static`` whose built copy is missing or differs; returns them.

    Sphinx copies static files only when some page is out of date, so rebuilding a book whose pages
    did not change (a new ``kdlib.css`` alone) would keep the old copy in ``_build/html/_static``."""
    copied = []
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        dst = built / src.relative_to(source)
        if not dst.is_file() or not filecmp.cmp(src, dst, shallow=False):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(dst)
    return copied


def reproduce(profile_name: str, overrides: dict, data_root: str | None, out: Path, seed: int, device: str,
              kernel: str, timeout: int | None, build: bool = True, only: list[str] | None = None,
              progress: bool = False) -> Path:
    """Execute the book's notebooks and build it; returns the HTML folder (or the staging folder)."""
    root = resolve_data_root(data_root)  # fails first, before anything is written
    check_kernel(kernel)
    notebooks = toc_notebooks()
    if only:
        notebooks = [nb for nb in notebooks if nb.stem in only]
        if not notebooks:
            raise UserError(f"--only {only}: no such notebook in _toc.yml")
    out = out.resolve()
    require_writable(out)
    stage = out / "book"
    stage_book(stage)
    params = {"profile": profile_name, "data_root": str(root), "out_dir": str(out), "seed": seed,
              "device": device, "progress": progress, "overrides": overrides}
    if progress:  # papermill echoes the cells' output through its logger
        logging.getLogger("papermill").addHandler(logging.StreamHandler(sys.stderr))
        logging.getLogger("papermill").setLevel(logging.INFO)
    runs = []
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb} ...", end="\n" if progress else " ", flush=True)
        runs.append(execute(nb, stage, params, kernel, timeout, progress))
        print(f"done in {runs[-1].seconds:.1f} s", flush=True)
    write_json(out / "timings.json", {str(r.notebook): round(r.seconds, 1) for r in runs}, sort_keys=False)
    print(f"executed {len(runs)} notebooks in {sum(r.seconds for r in runs):.0f} s")
    if not build:
        return stage
    html = build_book(stage)
    print(f"book built: {html / 'index.html'}")
    return html
