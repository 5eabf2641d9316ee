"""The tests start emulators with the same code as the local stack."""

from functions.local.emulators import (
    ROOT,
    Emulator,
    free_port,
    google_firestore_available,
    port_open,
    start_emulator,
    start_google_firestore,
    start_npm_firestore,
)

__all__ = [
    "ROOT",
    "Emulator",
    "free_port",
    "google_firestore_available",
    "port_open",
    "start_emulator",
    "start_google_firestore",
    "start_npm_firestore",
]
