"""Which packages may import which: logging must not lean on the job store's package."""

from __future__ import annotations

import ast
from pathlib import Path

import functions

PACKAGE_ROOT = Path(functions.__file__).parent


def imported_modules(package: str) -> set[str]:
    modules: set[str] = set()
    for path in (PACKAGE_ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
    return modules


def test_observability_imports_nothing_from_the_job_store() -> None:
    from_store = sorted(
        m for m in imported_modules("observability") if m.startswith("functions.store")
    )
    assert from_store == []


def test_the_page_cursor_helper_imports_neither_the_store_nor_logging() -> None:
    paging = ast.parse((PACKAGE_ROOT / "paging.py").read_text())
    imports = {n.module for n in ast.walk(paging) if isinstance(n, ast.ImportFrom) and n.module}
    assert (
        sorted(m for m in imports if m.startswith(("functions.store", "functions.observability")))
        == []
    )
