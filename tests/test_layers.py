"""The package's imports point one way: data -> models -> losses -> sampling/train -> evaluate ->
analysis -> chapters -> commands (docs/code.md), with no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import kdlib

PACKAGE = Path(kdlib.__file__).parent
LAYERS = {"data": 1, "models": 2, "losses": 3, "sampling": 4, "pruning": 4, "train": 4, "evaluate": 5,
          "analysis": 6, "chapters": 7, "book": 7, "commands": 8, "cli": 8}
"""Top-level module or sub-package -> its layer; the base modules (paths, profiles, run, files, ...) are 0."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kdlib_imports(path: Path) -> set[str]:
    """Every ``kdlib...`` module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdlib"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("kdlib"))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for target in kdlib_imports(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != "kdlib" and not name.startswith(target + "."):
                targets.add(target)
        edges[name] = targets
    return edges


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_no_module_imports_from_a_layer_above_it():
    upward = [(m, t) for m, targets in graph().items() for t in targets if layer(t) > layer(m)]
    assert not upward, upward


def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start, [start])
            assert cycle is None, " -> ".join(cycle)


def test_the_check_sees_an_upward_import():
    assert layer("kdlib.commands.train") > layer("kdlib.train.study") > layer("kdlib.models.io") > layer("kdlib.run")
    assert "kdlib.train.study" in graph()["kdlib.commands.train"]
