"""Options shared by every suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--firestore",
        choices=("auto", "npm", "google", "both", "none"),
        default="auto",
        help="Firestore emulators the contract suite runs against. auto: the npm one, plus "
        "Google's when gcloud and its Firestore emulator are installed.",
    )
