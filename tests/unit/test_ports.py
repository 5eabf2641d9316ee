"""Local ports for stacks and emulators: free, and never ones the kernel hands out as the
source port of outgoing connections (such a port can be taken, or probed as 'open' by a
connection to itself, before the server binds it)."""

from __future__ import annotations

import socket
from pathlib import Path

from functions.local.emulators import free_port_block, port_open


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_a_port_block_is_free_and_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_range()
    bases = [free_port_block(5) for _ in range(50)]  # random picks: check many
    assert max(bases) + 4 < low
    base = bases[-1]
    sockets = [socket.socket() for _ in range(5)]
    try:
        for offset, sock in enumerate(sockets):
            sock.bind(("127.0.0.1", base + offset))
    finally:
        for sock in sockets:
            sock.close()


def test_port_open_sees_a_listener_and_only_while_it_listens() -> None:
    port = free_port_block(1)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert port_open(f"127.0.0.1:{port}")
    assert not port_open(f"127.0.0.1:{port}")
