"""Input locations: a directory of documents to list, confined to the allowed roots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from functions.errors import InvalidArgument

MAX_ITEMS = 1_000_000


def resolve_location(location: str, allowed_roots: Sequence[Path]) -> Path:
    """The real path of `location`, which must lie inside one of `allowed_roots` (after
    resolving symlinks and `..`, so neither can escape). `InvalidArgument` otherwise."""
    if "://" in location:
        raise InvalidArgument(f"location {location!r}: only local paths are supported here")
    path = Path(location).expanduser().resolve()
    for root in allowed_roots:
        if path == root.resolve() or path.is_relative_to(root.resolve()):
            if not path.exists():
                raise InvalidArgument(f"location {location!r} does not exist")
            return path
    roots = ", ".join(str(r) for r in allowed_roots) or "(none configured)"
    raise InvalidArgument(f"location {location!r} is outside the allowed roots: {roots}")


def list_location(path: Path) -> list[str]:
    """Every regular file under `path` (or `path` itself), as sorted absolute paths."""
    if path.is_file():
        return [str(path)]
    files: list[str] = []
    for child in sorted(path.rglob("*")):
        if child.is_file() and not child.name.startswith("."):
            files.append(str(child))
            if len(files) > MAX_ITEMS:
                raise InvalidArgument(f"location {path} holds more than {MAX_ITEMS} files")
    return files
