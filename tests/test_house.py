"""The house: imports flow one way, and files stay small.

No module of ``nbexplain`` imports a module above it, nor in a circle.
Read from the source (imports inside functions too), so an import that runs only in some code
path is still seen. Ranks, bottom to top: plain helpers (checks, render, montage, samples,
models) < engine < methods < dataset, optvis, metrics < widgets, export < the package's
own ``__init__``. A module that no rank names fails, so a new package has to be placed.
No source file in ``nbexplain/`` or ``js/src/`` is over ``MAX_LINES`` lines (one module, one job);
``nbexplain/static/`` holds the bundle that ``js/build.mjs`` generates from ``js/src/``, not source.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nbexplain"
MAX_LINES = 400
RANKS = {
    "nbexplain.checks": 0, "nbexplain.render": 0, "nbexplain.montage": 0,
    "nbexplain.samples": 0, "nbexplain.models": 0,
    "nbexplain.engine": 1, "nbexplain.explanation": 1,  # the engine's Explanation, where it used to live
    "nbexplain.methods": 2,
    "nbexplain.dataset": 3, "nbexplain.optvis": 3, "nbexplain.metrics": 3,
    "nbexplain.widgets": 4, "nbexplain.export": 4,
    "nbexplain": 5,
}


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def rank(module: str) -> int | None:
    """The rank of the longest entry of ``RANKS`` that is ``module`` or a package above it."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = RANKS.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def imports(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """The ``nbexplain`` modules ``path`` imports: ``from a import b`` is module ``a.b`` when that
    is a module, else ``a``; relative imports resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return {name for name in found if name == "nbexplain" or name.startswith("nbexplain.")}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(path, root.parent) for path in paths}
    return {module_name(path, root.parent): imports(path, known, root.parent) for path in paths}


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges (importer, imported) that run to a higher rank (or from/to an unranked module)."""
    bad = []
    for importer, names in graph.items():
        for name in names:
            low, high = rank(importer), rank(name)
            if low is None or high is None or high > low:
                bad.append((importer, name))
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module, or a module
    importing itself), by Tarjan's algorithm."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_runs_upward():
    graph = import_graph()
    assert len(graph) > 40
    assert upward(graph) == []


def test_no_import_runs_in_a_circle():
    assert cycles(import_graph()) == []


def test_the_engine_imports_no_method_and_no_widget():
    graph = import_graph()
    engine = {name: deps for name, deps in graph.items() if name.startswith("nbexplain.engine")}
    assert len(engine) > 10
    assert {n: sorted(d for d in deps if not d.startswith(("nbexplain.engine", "nbexplain.checks",
                                                             "nbexplain.render", "nbexplain.models")))
            for n, deps in engine.items()} == {n: [] for n in engine}


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    """The checks themselves, on a small tree that breaks both rules."""
    tree = tmp_path / "nbexplain"
    (tree / "engine").mkdir(parents=True)
    (tree / "methods").mkdir()
    (tree / "__init__.py").write_text("")
    (tree / "engine" / "__init__.py").write_text("")
    (tree / "methods" / "__init__.py").write_text("")
    (tree / "engine" / "a.py").write_text("def f():\n    from ..methods import m\n")
    (tree / "engine" / "b.py").write_text("from . import c\n")
    (tree / "engine" / "c.py").write_text("from .b import thing\n")
    (tree / "methods" / "m.py").write_text("from ..engine.a import f\n")
    graph = import_graph(tree)
    assert upward(graph) == [("nbexplain.engine.a", "nbexplain.methods.m")]
    assert sorted(cycles(graph)) == [
        ["nbexplain.engine.a", "nbexplain.methods.m"],
        ["nbexplain.engine.b", "nbexplain.engine.c"],
    ]


def test_no_source_file_is_over_400_lines():
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "js" / "src").rglob("*.js")]
    assert len(sources) > 40
    long = {str(path.relative_to(ROOT)): n for path in sources
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
