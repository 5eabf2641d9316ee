"""One callback delivery against real local HTTP(S) servers: signed, never redirected,
connected to the address that was checked, and classified for the sweeper."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from functions.callbacks import CallbackSender, Delivery, classify
from functions.jobs import Job
from functions.signing import InvalidSignature, verify
from tests.callbacks.readme import readme_receiver
from tests.support.callbacks import (
    PUBLIC_IP,
    SECRET,
    CertificateAuthority,
    Opener,
    Receiver,
    Resolver,
    loopback_alias_available,
    receivers,
)

MakeReceiver = Callable[..., Receiver]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def receiver() -> Iterator[MakeReceiver]:
    yield from receivers()


def sender(**overrides: object) -> CallbackSender:
    """A sender for loopback receivers, without waits between its retries."""
    options: dict[str, object] = {
        "allow_local_http": True,
        "secret": SECRET,
        "timeout": 5.0,
        "wait_initial": 0.0,
        "wait_max": 0.0,
        "wait_jitter": 0.0,
    }
    return CallbackSender(**{**options, **overrides})  # type: ignore[arg-type]


def job_for(url: str) -> Job:
    return Job.new(source="noop", collection="docs", callback_url=url, trace_id=TRACE)


# -- signed ---------------------------------------------------------------------------------


def test_a_callback_is_signed_and_the_readme_receiver_verifies_it(
    receiver: MakeReceiver,
) -> None:
    """The POST carries the job and a Fanout-Signature that the README's few lines of
    receiver code (and functions.signing.verify) accept over the raw body; a tampered
    body, another secret or an old timestamp are refused."""
    hook = receiver()
    job = job_for(hook.url())
    assert sender().send(job) == Delivery("delivered: HTTP 200")
    (request,) = hook.wait_for(1)
    assert request.path == "/hook"
    assert json.loads(request.body)["job"]["job_id"] == job.job_id
    assert request.headers["content-type"] == "application/json"
    assert request.headers["traceparent"].startswith(f"00-{TRACE}-")
    header = request.headers["fanout-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header), header

    verified = readme_receiver()
    assert verified(header, request.body, SECRET)
    assert verify(header, request.body, SECRET) == int(header[2:].split(",")[0])
    tampered = request.body.replace(b'"noop"', b'"evil"')
    assert tampered != request.body
    assert not verified(header, tampered, SECRET)
    assert not verified(header, request.body, "another-secret-0123456789")
    with pytest.raises(InvalidSignature, match="no v1 signature matches"):
        verify(header, tampered, SECRET)
    timestamp = int(header[2:].split(",")[0])
    with pytest.raises(InvalidSignature, match="outside"):
        verify(header, request.body, SECRET, now=timestamp + 301)


def test_without_a_secret_nothing_is_sent(receiver: MakeReceiver) -> None:
    """No secret: the callback is not sent (never unsigned), and it stays retryable, for
    the sweeper once the deployment has one."""
    hook = receiver()
    delivery = sender(secret=None).send(job_for(hook.url()))
    assert delivery.retryable and "FANOUT_CALLBACK_SECRET" in delivery.status
    assert hook.received == []


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Delivery("delivered: HTTP 200")),
        (204, Delivery("delivered: HTTP 204")),
        (301, Delivery("rejected: HTTP 301 redirect not followed")),
        (302, Delivery("rejected: HTTP 302 redirect not followed")),
        (307, Delivery("rejected: HTTP 307 redirect not followed")),
        (400, Delivery("rejected: HTTP 400")),
        (404, Delivery("rejected: HTTP 404")),
        (408, Delivery("failed: HTTP 408", retryable=True)),
        (429, Delivery("failed: HTTP 429", retryable=True)),
        (500, Delivery("failed: HTTP 500", retryable=True)),
        (503, Delivery("failed: HTTP 503", retryable=True)),
    ],
)
def test_answers_are_classified(status: int, expected: Delivery) -> None:
    """2xx delivered; 3xx and other 4xx final; 408, 429 and 5xx retryable."""
    assert classify(status) == expected


@pytest.mark.parametrize(("status", "tries"), [(404, 1), (302, 1), (503, 3), (429, 3), (408, 3)])
def test_the_sender_retries_only_what_may_succeed_later(
    receiver: MakeReceiver, status: int, tries: int
) -> None:
    """A final answer is asked once; a retryable one as many times as the sender tries,
    each request signed anew."""
    hook = receiver(answers=[status])
    delivery = sender(attempts=3).send(job_for(hook.url()))
    assert delivery == classify(status)
    assert len(hook.received) == tries
    assert all("fanout-signature" in r.headers for r in hook.received)


def test_a_transient_failure_then_success_is_delivered(receiver: MakeReceiver) -> None:
    hook = receiver(answers=[503, 200])
    assert sender(attempts=3).send(job_for(hook.url())) == Delivery("delivered: HTTP 200")
    assert len(hook.received) == 2


def test_a_receiver_that_is_down_is_a_retryable_failure(receiver: MakeReceiver) -> None:
    hook = receiver(listen_now=False)
    delivery = sender(attempts=2).send(job_for(hook.url()))
    assert delivery.retryable and delivery.status.startswith("failed: ConnectionRefusedError")


# -- no redirects ------------------------------------------------------------------------------


@pytest.mark.skipif(not loopback_alias_available(), reason="no 127.0.0.2 on this machine")
def test_a_redirect_to_another_loopback_address_is_not_followed(receiver: MakeReceiver) -> None:
    """The receiver answers 302 to a server on 127.0.0.2: that is the answer, recorded as
    rejected, final; nothing ever reaches the second server."""
    inside = receiver(host="127.0.0.2")
    hook = receiver(answers=[302], location=inside.url("/steal"))
    opener = Opener()
    delivery = sender(opener=opener).send(job_for(hook.url()))
    assert delivery == Delivery("rejected: HTTP 302 redirect not followed")
    assert not delivery.retryable
    assert len(hook.received) == 1
    assert inside.received == []
    assert opener.asked == [("127.0.0.1", hook.port)]


# -- where it connects -------------------------------------------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path)


def test_a_rebinding_name_is_connected_at_the_address_that_was_checked(
    receiver: MakeReceiver, ca: CertificateAuthority
) -> None:
    """hooks.example.com resolves to a public address when checked and to loopback on any
    later lookup. The sender looks it up once and connects to the public address (played
    by a local server), with the name as Host, SNI and certificate name; the loopback
    server, which holds a valid certificate for the name too, gets nothing."""
    name = "hooks.example.com"
    inside = receiver(tls=ca.server_context(name))
    public = receiver(tls=ca.server_context(name))
    resolver = Resolver([PUBLIC_IP], ["127.0.0.1"])
    opener = Opener({PUBLIC_IP: ("127.0.0.1", public.port)})
    url = f"https://{name}:{inside.port}/hook"
    delivery = sender(
        allow_local_http=False, resolve=resolver, opener=opener, tls=ca.client_context()
    ).send(job_for(url))
    assert delivery == Delivery("delivered: HTTP 200")
    assert resolver.lookups == [(name, inside.port)]
    assert opener.asked == [(PUBLIC_IP, inside.port)]
    (request,) = public.wait_for(1)
    assert request.headers["host"] == f"{name}:{inside.port}"
    assert inside.received == []


def test_the_certificate_is_checked_for_the_urls_host(
    receiver: MakeReceiver, ca: CertificateAuthority
) -> None:
    """Connected by address, the TLS handshake still checks the certificate against the
    URL's host: a server with another name's certificate gets no request."""
    other = receiver(tls=ca.server_context("other.example.com"))
    opener = Opener({PUBLIC_IP: ("127.0.0.1", other.port)})
    delivery = sender(
        allow_local_http=False,
        attempts=1,
        resolve=Resolver([PUBLIC_IP]),
        opener=opener,
        tls=ca.client_context(),
    ).send(job_for(f"https://hooks.example.com:{other.port}/hook"))
    assert delivery.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.status
    assert "not valid for 'hooks.example.com'" in delivery.status
    assert other.received == []


@pytest.mark.parametrize(
    ("addresses", "says"),
    [
        (["10.0.0.7"], "internal address (10.0.0.7)"),
        (["100.64.1.1"], "internal address (100.64.1.1)"),  # shared (carrier-grade NAT)
        ([PUBLIC_IP, "127.0.0.1"], "internal address (127.0.0.1)"),
        (["::ffff:169.254.169.254"], "internal address"),
        (["64:ff9b::a9fe:a9fe"], "internal address"),  # NAT64 of 169.254.169.254
        (["fd00::1"], "internal address (fd00::1)"),
    ],
)
def test_a_name_resolving_inside_is_refused_without_connecting(
    addresses: list[str], says: str
) -> None:
    """A name with any internal address is refused, final, and no connection is made."""
    opener = Opener()
    delivery = sender(allow_local_http=False, resolve=Resolver(addresses), opener=opener).send(
        job_for("https://hooks.example.com/hook?token=s3cret")
    )
    assert delivery.status.startswith("refused:") and says in delivery.status
    assert "s3cret" not in delivery.status
    assert not delivery.retryable
    assert opener.asked == []


def test_a_name_that_does_not_resolve_is_a_retryable_failure() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError(f"{host}: Name or service not known")

    delivery = sender(allow_local_http=False, resolve=nowhere).send(
        job_for("https://hooks.example.com/hook")
    )
    assert delivery.retryable and "Name or service not known" in delivery.status


def test_plain_http_is_refused_outside_the_local_stack(receiver: MakeReceiver) -> None:
    """Off the local stack even http://127.0.0.1 is refused, before any connection."""
    hook = receiver()
    delivery = sender(allow_local_http=False).send(job_for(hook.url()))
    assert delivery.status.startswith("refused:") and "must use https" in delivery.status
    assert hook.received == []
