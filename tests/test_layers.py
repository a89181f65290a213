"""Dependencies point one way: the core library (edgetune/) never imports the pipeline side.

The agent image installs only edgetune/; an upward import would break it on a device.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "edgetune"
UPWARD = ("edgetune.components", "edgetune.pipelines", "edgetune.zoo", "edgetune.configs")
# The CLI is the one entry point that dispatches to every side, importing lazily.
ALLOWED = {CORE / "cli.py"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_core_library_imports_nothing_from_components_or_pipelines():
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(CORE.rglob("*.py"))
        if path not in ALLOWED
        for line, name in _imports(path)
        if name.startswith(UPWARD)
    ]
    assert not upward, "\n".join(upward)


def test_the_walk_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from edgetune.components.common import tracking\n")
    assert (2, "edgetune.components.common") in _imports(bad)


def test_zoo_imports_nothing_from_components_or_pipelines():
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / "zoo").rglob("*.py"))
        for line, name in _imports(path)
        if name.startswith(UPWARD[:2])
    ]
    assert not upward, "\n".join(upward)
