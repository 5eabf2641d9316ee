"""One POST to a callback target, over a connection to the address that was checked.

`http.client` rather than `urllib`: urllib follows redirects (to wherever the receiver
says, internal addresses included) and resolves the host again when it connects, which
lets a name resolve to a public address for the check and to an internal one for the
request (DNS rebinding). Here the socket goes to one of the target's checked addresses;
the request still names the URL's host in its Host header, and for https the TLS
handshake sends that host as SNI and verifies the certificate against it. No redirect is
ever followed: the status of the one answer is returned, 3xx included.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable, Mapping

from functions.urls import CallbackTarget

# ((address, port), timeout) -> a connected socket. Tests pass their own to see (and
# steer) where connections go; the default is the system's.
OpenSocket = Callable[[tuple[str, int], float], socket.socket]


def open_socket(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout)


def _connect(target: CallbackTarget, timeout: float, opener: OpenSocket) -> socket.socket:
    """A socket to the first of the target's checked addresses that accepts one."""
    failure: OSError = OSError(f"{target.host} has no address to connect to")
    for address in target.addresses:
        try:
            return opener((address, target.port), timeout)
        except OSError as error:
            failure = error
    raise failure


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: CallbackTarget, timeout: float, opener: OpenSocket) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._target = target
        self._opener = opener
        self._timeout = timeout

    def connect(self) -> None:
        self.sock = _connect(self._target, self._timeout, self._opener)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self,
        target: CallbackTarget,
        timeout: float,
        opener: OpenSocket,
        tls: ssl.SSLContext,
    ) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=tls)
        self._target = target
        self._opener = opener
        self._tls = tls
        self._timeout = timeout

    def connect(self) -> None:
        sock = _connect(self._target, self._timeout, self._opener)
        try:
            # SNI and certificate check for the URL's host, not for the address.
            self.sock = self._tls.wrap_socket(sock, server_hostname=self._target.host)
        except BaseException:
            sock.close()
            raise


def post(
    target: CallbackTarget,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    opener: OpenSocket = open_socket,
    tls: ssl.SSLContext | None = None,
) -> int:
    """POST `body` to `target`; the answer's HTTP status. Raises `OSError` (network, TLS,
    timeout) or `http.client.HTTPException` (a malformed answer)."""
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        context = tls or ssl.create_default_context()
        connection = _PinnedHTTPSConnection(target, timeout, opener, context)
    else:
        connection = _PinnedHTTPConnection(target, timeout, opener)
    try:
        connection.request("POST", target.path, body=body, headers=dict(headers))
        return connection.getresponse().status
    finally:
        connection.close()
