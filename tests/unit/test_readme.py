"""The README's first screen: what Fanout is and the two commands, before any detail."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_first_screen_gives_the_two_commands() -> None:
    first_screen = README.read_text().splitlines()[:25]
    commands = [line.split("#")[0].strip() for line in first_screen if line.startswith("make ")]
    assert commands == ["make run", "make test"]
    assert first_screen[0] == "# Fanout"
    assert any("Google Cloud" in line for line in first_screen[:8])


def test_its_links_lead_somewhere() -> None:
    text = README.read_text()
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    }
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert (README.parent / target.split("#")[0]).exists(), target
