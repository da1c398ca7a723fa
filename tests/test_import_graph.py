"""The layers' import rules, read from the source with ast (every import, also the ones
inside functions): the world is state and imports no engine; the topology is data."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(APP.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def offenders(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in files:
        hits = sorted(
            m
            for m in imported_modules(path)
            if any(m == f or m.startswith(f + ".") for f in forbidden)
        )
        if hits:
            bad[str(path.relative_to(APP.parent))] = hits
    return bad


def test_the_world_imports_no_engine() -> None:
    files = sorted((APP / "world").rglob("*.py"))
    assert files
    forbidden = ("app.engines", "app.lab", "app.web", "app.scenarios", "app.sandbox")
    assert offenders(files, forbidden) == {}


def test_the_topology_is_data() -> None:
    forbidden = ("app.engines", "app.world", "app.lab", "app.web", "app.sandbox")
    assert offenders([APP / "topology.py"], forbidden) == {}


def test_the_checker_sees_a_nested_import(tmp_path: Path) -> None:
    nested = APP / "world" / "_probe_nested.py"
    nested.write_text("def f():\n    from ..engines import base\n    return base\n", "utf-8")
    try:
        assert offenders([nested], ("app.engines",)) == {
            "app/world/_probe_nested.py": ["app.engines", "app.engines.base"]
        }
    finally:
        nested.unlink()
