"""Callback URLs: where Fanout POSTs a job's summary. Refuses targets inside the network
(SSRF): link-local and metadata endpoints, private and loopback ranges. Plain http is
allowed only to localhost, and only on the local stack."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from functions.errors import InvalidArgument

_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.google.internal."})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def check_callback_url(url: str, *, allow_local_http: bool) -> str:
    """`url` unchanged if Fanout may call it; `InvalidArgument` saying why not otherwise."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument(f"callback_url {url!r} must be an https URL")
    local = host in _LOCAL_HOSTS
    if parts.scheme == "http" and not (local and allow_local_http):
        raise InvalidArgument(
            f"callback_url {url!r} must use https (plain http only to localhost, locally)"
        )
    if local and allow_local_http:
        return url
    if host in _METADATA_HOSTS:
        raise InvalidArgument(f"callback_url {url!r} targets the metadata server")
    for address in _addresses(host):
        if _is_internal(address):
            raise InvalidArgument(
                f"callback_url {url!r} resolves to an internal address ({address})"
            )
    return url


def _addresses(host: str) -> list[str]:
    """The addresses `host` stands for. A literal is itself; a name that does not resolve
    here is checked again when the callback is sent."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except OSError:
        return []


def redacted_url(url: str) -> str:
    """`url` without user info, query or fragment, where secrets and tokens travel: what a
    log line may say about where a callback went."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
