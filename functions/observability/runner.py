"""Where a batch attempt ran: the function's revision and instance in the cloud, the host
and pid locally. Recorded on the batch and in its claim event."""

from __future__ import annotations

import functools
import os
import socket
import urllib.request

from functions.config import RuntimeSettings

_INSTANCE_ID_URL = "http://metadata.google.internal/computeMetadata/v1/instance/id"


@functools.cache
def _instance_id() -> str | None:
    """This Cloud Run instance's id, from the metadata server (once per instance)."""
    request = urllib.request.Request(_INSTANCE_ID_URL, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return str(response.read().decode()[:128])
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _local_location(pid: int) -> str:
    """Per pid: a forked worker is a place of its own."""
    return f"{socket.gethostname()} pid {pid}"


def worker_location(runtime: RuntimeSettings) -> str:
    if runtime.in_cloud:
        return f"{runtime.revision}/instance {_instance_id() or 'unknown'}"
    return _local_location(os.getpid())
