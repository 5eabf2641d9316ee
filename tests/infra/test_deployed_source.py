"""The deployed archive leaves out functions/local and functions/cli (infra/functions.tf):
the code it ships must not need them, at import or at any later, lazy import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("functions.local", "functions.cli")


def _shipped_modules() -> list[Path]:
    shipped = [ROOT / "main.py", *sorted((ROOT / "functions").rglob("*.py"))]
    left_out = [ROOT / "functions" / "local", ROOT / "functions" / "cli"]
    return [p for p in shipped if not any(p.is_relative_to(d) for d in left_out)]


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_shipped_module_imports_the_left_out_packages() -> None:
    """Every import statement, including ones inside functions (lazy imports), is checked."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imported_names(path) if name.startswith(LEFT_OUT)
        )
        for path in _shipped_modules()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_entry_points_load_with_the_left_out_packages_missing() -> None:
    """As in the archive: importing main and building its Flask routes works without them."""
    script = (
        "import sys\n"
        f"for name in {LEFT_OUT!r}:\n"
        "    sys.modules[name] = None  # import of it raises ImportError, as if absent\n"
        "import main\n"
        "for fn in ('ingest', 'ingest_pubsub', 'run_batch', 'jobs_api', 'cleanup_jobs'):\n"
        "    assert callable(getattr(main, fn)), fn\n"
        "import functions.web.api, functions.service, functions.store.sqlite\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
