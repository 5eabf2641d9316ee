"""Real callback receivers for tests: HTTP(S) servers on loopback addresses that record
every request and answer what the test says, a test CA for https, and the seams a test
gives the sender (a resolver, a socket opener) to see where it resolves and connects."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The secret tests sign with (FANOUT_CALLBACK_SECRET), and a globally routable address that
# stands for a receiver on the internet: the tests' opener sends its connections to a
# local server, so nothing leaves the machine.
SECRET = "test-callback-secret-0123456789abcdef"
PUBLIC_IP = "93.184.216.34"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP endpoint. `answers` are the statuses of successive requests (the last
    one repeats); with `listen=False` the port is reserved but refuses connections (a
    receiver that is down) until `listen()`."""

    host: str = "127.0.0.1"
    answers: Sequence[int] = (200,)
    location: str | None = None
    tls: ssl.SSLContext | None = None
    listen_now: bool = True
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    count = len(receiver.received)
                    receiver.arrived.notify_all()
                status = receiver.answers[min(count, len(receiver.answers)) - 1]
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler, bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.server_bind()
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self._thread: threading.Thread | None = None
        if self.listen_now:
            self.listen()

    def listen(self) -> None:
        """Start accepting connections (a receiver coming back)."""
        self.server.server_activate()
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout), (
                f"{len(self.received)} of {count} requests arrived"
            )
            return list(self.received)

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class CertificateAuthority:
    """A certificate authority made for one test run, and the server certificates it
    signs."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fanout test CA")])
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, directory)

    def client_context(self) -> ssl.SSLContext:
        """What the sender trusts: this CA only, hostnames checked."""
        return ssl.create_default_context(
            cadata=self.cert.public_bytes(serialization.Encoding.PEM).decode()
        )

    def server_context(self, hostname: str) -> ssl.SSLContext:
        """A server presenting a certificate for `hostname`, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
        cert = (
            _builder(subject, self.cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        certfile = self.directory / f"{hostname}.pem"
        keyfile = self.directory / f"{hostname}.key"
        certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        return context


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


class Resolver:
    """A resolver the test controls: `answers` are the addresses of successive lookups
    (the last one repeats). Records every lookup."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = answers
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return list(self.answers[min(len(self.lookups), len(self.answers)) - 1])


class Opener:
    """Opens the sender's sockets and records where it asked to connect. `routes` send an
    address (a public one) to a local server playing that host; others connect as asked."""

    def __init__(self, routes: dict[str, tuple[str, int]] | None = None) -> None:
        self.routes = routes or {}
        self.asked: list[tuple[str, int]] = []

    def __call__(self, address: tuple[str, int], timeout: float) -> socket.socket:
        self.asked.append(address)
        return socket.create_connection(self.routes.get(address[0], address), timeout)


def loopback_alias_available(address: str = "127.0.0.2") -> bool:
    """Whether this machine answers on a second loopback address (Linux: all of 127/8)."""
    assert ipaddress.ip_address(address).is_loopback
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def receivers() -> Iterator[Callable[..., Receiver]]:
    """A factory of receivers closed at the end (the body of a fixture)."""
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()
