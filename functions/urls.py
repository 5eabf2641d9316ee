"""Callback URLs: where Fanout POSTs a job's summary. Refuses targets inside the network
(SSRF): link-local and metadata endpoints, private, shared and loopback ranges, anything not
globally routable. Plain http is allowed only to localhost, and only on the local stack.
Credentials in the URL (`https://user:pass@host/`) are refused: the URL is stored and
shown with its job; a receiver authenticates callbacks by their signature instead.

A name is resolved once per delivery and the callback connects to the address that was
checked (`callback_target`), so a name that resolves elsewhere a moment later (DNS
rebinding) cannot steer the request inside."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from functions.errors import InvalidArgument

_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.google.internal."})
# Names of this machine: plain http to them is allowed on the local stack only.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# (host, port) -> its addresses, in preference order. `resolve_host` asks the system; tests
# pass their own (a name that resolves elsewhere on each call, for one).
Resolver = Callable[[str, int], Sequence[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` stands for, in the system resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """Where one delivery goes: the URL's scheme, host (for the Host header, SNI and the
    certificate) and port, the path and query to ask for, and the checked addresses to
    connect to (tried in order, as a browser would; never resolved again)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_internal(str(embedded))
    return not ip.is_global or ip.is_multicast


def check_callback_url(
    url: str, *, allow_local_http: bool, resolve: Resolver = resolve_host
) -> str:
    """`url` unchanged if Fanout may call it; `InvalidArgument` saying why not otherwise. A
    name that does not resolve here is accepted: it is checked again when the callback is
    sent."""
    with contextlib.suppress(OSError):
        callback_target(url, allow_local_http=allow_local_http, resolve=resolve)
    return url


def callback_target(
    url: str, *, allow_local_http: bool, resolve: Resolver = resolve_host
) -> CallbackTarget:
    """Where a delivery to `url` connects: the URL checked and its host resolved once.
    `InvalidArgument` if Fanout may not call it; `OSError` if the name does not resolve."""
    parts = urlsplit(url)
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except (UnicodeError, ValueError):
        raise InvalidArgument("callback_url has an invalid host or port") from None
    # Messages show the URL without its query, user info or fragment, where tokens travel.
    shown = redacted_url(url)
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument(f"callback_url {shown!r} must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(
            f"callback_url {shown!r} must not carry credentials (user info before the "
            "host): the URL is stored and shown with the job. Have the receiver verify "
            "each callback's Fanout-Signature header instead"
        )
    local = allow_local_http and host in LOCAL_HOSTS
    if parts.scheme == "http" and not local:
        raise InvalidArgument(
            f"callback_url {shown!r} must use https (plain http only to localhost, locally)"
        )
    if host in _METADATA_HOSTS:
        raise InvalidArgument(f"callback_url {shown!r} targets the metadata server")
    addresses = _addresses(host, port, resolve)
    for address in addresses:
        if local and not ipaddress.ip_address(address).is_loopback:
            raise InvalidArgument(f"callback_url {shown!r} resolves to {address}, not loopback")
        if not local and _is_internal(address):
            raise InvalidArgument(
                f"callback_url {shown!r} resolves to an internal address ({address})"
            )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackTarget(parts.scheme, host, port, path, tuple(addresses))


def _addresses(host: str, port: int, resolve: Resolver) -> list[str]:
    """The addresses `host` stands for: a literal is itself, a name is resolved (once)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    # Scope ids (fe80::1%eth0) are dropped: the address itself decides.
    addresses = [str(ipaddress.ip_address(a.split("%")[0])) for a in resolve(host, port)]
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    return addresses


def redacted_url(url: str) -> str:
    """`url` without user info, query or fragment, where secrets and tokens travel: what a
    log line may say about where a callback went."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
