"""The tests start emulators with the same code as the local stack."""

from functions.emulators import (
    ROOT,
    Emulator,
    _port_open,
    _start,
    free_port,
    google_firestore_available,
    start_google_firestore,
    start_npm_firestore,
)

__all__ = [
    "ROOT",
    "Emulator",
    "_port_open",
    "_start",
    "free_port",
    "google_firestore_available",
    "start_google_firestore",
    "start_npm_firestore",
]
