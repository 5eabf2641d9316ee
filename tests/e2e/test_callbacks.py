"""Callbacks on the real local stack: signed with the deployment's secret, never
redirected, and redelivered by the sweeper (cleanup_jobs) once the receiver is back."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from functions.cli.client import FanoutClient
from tests.callbacks.readme import readme_receiver
from tests.e2e.conftest import SWEPT, StackFactory, client_for, wait_for, wait_terminal
from tests.support.callbacks import SECRET, Receiver, loopback_alias_available

ENV = {"FANOUT_CALLBACK_SECRET": SECRET}


def _submit(client: FanoutClient, url: str) -> str:
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": ["a", "b"],
            "batch_size": 1,
            "callback_url": url,
        }
    )
    job_id: str = accepted["job_id"]
    return job_id


def _settled(client: FanoutClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: (j := client.job(job_id))["callback_status"] and j, what="the callback status"
    )
    return job


@pytest.mark.skipif(not loopback_alias_available(), reason="no 127.0.0.2 on this machine")
def test_callbacks_are_signed_and_redirects_are_not_followed(make_stack: StackFactory) -> None:
    """One job calls back a receiver that verifies the signature with the README's code;
    another calls back a receiver that redirects to 127.0.0.2, where a second server
    listens: the job records the 302 as rejected and the second server gets nothing."""
    hook, inside = Receiver(), Receiver(host="127.0.0.2")
    redirecting = Receiver(answers=[302], location=inside.url("/steal"))
    try:
        client = client_for(make_stack(env=ENV))
        signed = _submit(client, hook.url())
        redirected = _submit(client, redirecting.url())
        assert wait_terminal(client, signed)["status"] == "completed"
        assert wait_terminal(client, redirected)["status"] == "completed"

        job = _settled(client, signed)
        assert (job["callback_status"], job["callback_attempts"]) == ("delivered: HTTP 200", 1)
        assert job["callback_error"] is None
        (request,) = hook.wait_for(1)
        assert readme_receiver()(request.headers["fanout-signature"], request.body, SECRET)

        job = _settled(client, redirected)
        assert job["callback_status"] == "rejected: HTTP 302 redirect not followed"
        assert job["callback_error"] == job["callback_status"]
        assert job["callback_attempts"] == 1
        assert len(redirecting.received) == 1
        assert inside.received == []
    finally:
        for receiver in (hook, inside, redirecting):
            receiver.close()


@pytest.mark.parametrize("store", ["sqlite", "firestore"])
def test_a_receiver_down_then_back_gets_one_callback_from_the_sweeper(
    make_stack: StackFactory, store: Literal["sqlite", "firestore"]
) -> None:
    """The receiver refuses connections through the finalizer's tries; once it is back, a
    sweep a lease after that attempt delivers it, once. Later sweeps send nothing."""
    hook = Receiver(listen_now=False)
    try:
        stack = make_stack(store=store, env={**ENV, "FANOUT_LEASE_SECONDS": "2"}, functions=SWEPT)
        client = client_for(stack)
        job_id = _submit(client, hook.url())
        job = _settled(client, job_id)
        assert job["callback_status"].startswith("failed: ConnectionRefusedError")
        assert job["callback_attempts"] == 1 and job["callback_error"]
        hook.listen()
        wait_for(lambda: stack.sweep()["callbacks"], what="a sweep to redeliver the callback")
        (request,) = hook.wait_for(1)
        assert readme_receiver()(request.headers["fanout-signature"], request.body, SECRET)
        job = client.job(job_id)
        assert (job["callback_status"], job["callback_attempts"]) == ("delivered: HTTP 200", 2)
        assert job["callback_error"] is None
        assert [stack.sweep()["callbacks"] for _ in range(3)] == [0, 0, 0]
        assert len(hook.received) == 1
    finally:
        hook.close()
