"""The receiver code the README shows, run as written: the tests verify real callbacks
with it, so the README cannot drift from what Fanout sends."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_receiver() -> Callable[[str, bytes, str], bool]:
    """`verified(header, body, secret)` from the README's "Callbacks" section."""
    section = README.read_text(encoding="utf-8").split("### Callbacks", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README's Callbacks section has no python block"
    namespace: dict[str, object] = {}
    exec(compile(match[1], f"{README}:Callbacks", "exec"), namespace)
    verified = namespace["verified"]
    assert callable(verified)
    return verified
