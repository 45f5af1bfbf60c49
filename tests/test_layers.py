"""Import layering: engine never imports nodes/server/diffgraph; server never imports nodes/diffgraph.

Also: no import cycles between modules, and nodes reach the engine only through its public surface.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"engine": {"nodes", "server", "diffgraph"}, "server": {"nodes", "diffgraph"}}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_no_forbidden_imports(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "forbidden import edges:\n" + "\n".join(offenders)


def test_layers_checker_sees_imports(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import nodes.pack\nfrom server import app\nfrom . import x\n")
    assert imported_packages(sample) == {"nodes", "server"}


PACKAGES = ("engine", "nodes", "server", "diffgraph")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST):
    """Every node of a module except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> nx.DiGraph:
    """Module -> module edges for every import that runs (deferred ones inside functions included)."""
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p): p for p in paths}
    graph = nx.DiGraph()
    for name, path in modules.items():
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` names a module when sub is one; otherwise it imports pkg itself.
                subs = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [s for s in subs if s in modules] or [node.module]
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def test_layers_no_import_cycles():
    graph = import_graph()
    # A package's __init__ importing its own submodules is how re-exports work, not a cycle of concerns.
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if b.startswith(a + ".")])
    cycles = [" -> ".join([*c, c[0]]) for c in nx.simple_cycles(graph, length_bound=8)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layers_nodes_use_public_engine_surface():
    offenders = []
    for path in sorted((ROOT / "nodes").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in modules if m.startswith("engine.")]
    assert not offenders, "nodes must import `engine` itself, not its submodules:\n" + "\n".join(offenders)


def test_layers_cycle_checker_finds_a_cycle(tmp_path, monkeypatch):
    for name, body in {"a": "from pkg import b\n", "b": "def f():\n    import pkg.a\n"}.items():
        (tmp_path / "pkg").mkdir(exist_ok=True)
        (tmp_path / "pkg" / f"{name}.py").write_text(body)
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGES", ("pkg",))
    monkeypatch.setattr(this, "ROOT", tmp_path)
    assert [sorted(c) for c in nx.simple_cycles(import_graph())] == [["pkg.a", "pkg.b"]]
