"""Before and after in one session: run a bench module at two git revisions, interleaved
(the order flips each round, so a machine that slows down weighs on both sides), and print
one JSON line per backend: each numeric figure's median per side, head / base, and every
run's value.

Each revision is exported with `git archive` into a scratch directory and run there with
this interpreter, so the working tree is never touched.

Usage: python -m bench.compare [--base main] [--head HEAD] [--rounds 3] MODULE [ARGS...]
e.g.   python -m bench.compare bench.store --firestore google --fanout 100
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def export(rev: str, into: Path) -> Path:
    """The tree of `rev` in `into`, with this checkout's node_modules (the npm emulator)."""
    tree = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(into, filter="data")
    if (ROOT / "node_modules").is_dir():
        (into / "node_modules").symlink_to(ROOT / "node_modules")
    return into


def run(tree: Path, module: str, args: list[str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=tree, check=True, capture_output=True, text=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary(runs: list[dict[str, Any]]) -> dict[str, float | bool]:
    """Each numeric figure's median over the runs; each flag (`fanin_exact`) held by all."""
    found: dict[str, float | bool] = {}
    for name, value in runs[0].items():
        if isinstance(value, bool):
            found[name] = all(r[name] for r in runs)
        elif isinstance(value, int | float):
            found[name] = statistics.median(r[name] for r in runs)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--base", default="main")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("module")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    sides = {"base": opts.base, "head": opts.head}
    figures: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {side: export(rev, Path(tmp) / side) for side, rev in sides.items()}
        for n in range(opts.rounds):
            for side in ("base", "head") if n % 2 == 0 else ("head", "base"):
                for line in run(trees[side], opts.module, opts.args):
                    figures[(str(line.get("backend", "")), side)].append(line)
    for backend in dict.fromkeys(backend for backend, _ in figures):
        base, head = summary(figures[(backend, "base")]), summary(figures[(backend, "head")])
        compared: dict[str, Any] = {"backend": backend, **sides, "rounds": opts.rounds}
        for name in (n for n in base if n in head):
            pair: dict[str, Any] = {"base": base[name], "head": head[name]}
            if not isinstance(base[name], bool):
                if base[name]:
                    pair["head_over_base"] = round(head[name] / base[name], 3)
                for side in sides:  # the spread, which the medians hide
                    pair[f"{side}_runs"] = [r[name] for r in figures[(backend, side)]]
            compared[name] = pair
        print(json.dumps(compared), flush=True)


if __name__ == "__main__":
    main()
