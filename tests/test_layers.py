"""Import layering: engine never imports nodes/server/diffgraph; server never imports nodes/diffgraph."""

from __future__ import annotations

import ast
from pathlib import Path

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
