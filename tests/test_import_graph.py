"""The project's import graph, read with `ast` (imports inside functions count too): no cycles,
the library never imports the CLI, evaluation never imports the trainer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "prn_jax"
# Installed inside the package (pyproject.toml's package-dir); their folders sit beside it.
MAPPED = {"prn_jax.configs": PACKAGE.parent / "configs", "prn_jax.datasets": PACKAGE.parent / "datasets"}


def _modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of the package (packages as their __init__)."""
    out = {}
    for prefix, root in {"prn_jax": PACKAGE, **MAPPED}.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(node: ast.AST, importer: str, modules: dict[str, Path]) -> set[str]:
    """Project modules an import statement runs: the named module (or, for `from X import Y`, the
    submodule X.Y when it is one) and the packages above it that the importer is not inside."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        named = [
            f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
            for alias in node.names
        ]
    else:
        return set()
    own = set(_ancestors(importer))
    out = set()
    for name in named:
        while name and name not in modules:  # `import a.b.c` of an attribute: the module above it
            name = name.rpartition(".")[0]
        if name:
            out |= {name, *_ancestors(name)} - own - {importer}
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set().union(*(_targets(n, name, modules) for n in ast.walk(tree)))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 60 and "prn_jax.train.loop" in graph["prn_jax.cli.train"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles_inside_functions(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = "def f():\n    from prn_jax.train import loop\n"
    modules = {"prn_jax": None, "prn_jax.train": None, "prn_jax.train.loop": None, "prn_jax.x": None}
    edges = set().union(*(_targets(n, "prn_jax.x", modules) for n in ast.walk(ast.parse(source))))
    assert edges == {"prn_jax.train", "prn_jax.train.loop"}


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("prn_jax", "prn_jax.cli"),  # the library never imports the command line
        ("prn_jax.evaluation", "prn_jax.train.loop"),  # evaluators are handed predict functions
        ("prn_jax.evaluation", "prn_jax.train.trainer"),
        ("prn_jax.model", "prn_jax.train"),
        ("prn_jax.geometry", "prn_jax.train"),
        ("prn_jax.data", "prn_jax.train"),
    ],
)
def test_layers_do_not_reach_up(layer, forbidden):
    graph = import_graph()
    offenders = sorted(
        name
        for name, targets in graph.items()
        if (name == layer or name.startswith(layer + "."))
        and not name.startswith("prn_jax.cli")
        and any(t == forbidden or t.startswith(forbidden + ".") for t in targets)
    )
    assert not offenders, f"{offenders} import {forbidden}"
