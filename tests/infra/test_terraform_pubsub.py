"""Static checks of the Pub/Sub entry (infra/pubsub.tf): a Terraform-owned push subscription
delivers fanout-ingest to ingest_pubsub with an OIDC token, retries with backoff, and after 5
deliveries moves a message to a dead-letter topic whose pull subscription keeps it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.infra.terraform_config import (
    REPO_DIR,
    Body,
    Config,
    labelled,
    load_config,
    locals_,
    resources,
)

FUNCTION = "google_cloudfunctions2_function.ingest_pubsub"
URI = f"${{{FUNCTION}.service_config[0].uri}}"
AGENT = "${local.pubsub_service_agent}"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config()


@pytest.fixture(scope="module")
def subscriptions(config: Config) -> dict[str, Body]:
    return resources(config, "google_pubsub_subscription")


def test_names_match_the_local_stack(config: Config, subscriptions: dict[str, Body]) -> None:
    """The topic and subscriptions carry the plain names the local emulated stack uses too."""
    topics = resources(config, "google_pubsub_topic")
    assert {name: body["name"] for name, body in topics.items()} == {
        "ingest": "fanout-ingest",
        "ingest_dead_letter": "fanout-ingest-dead-letter",
    }
    assert {name: body["name"] for name, body in subscriptions.items()} == {
        "ingest_push": "fanout-ingest-push",
        "ingest_dead_letter": "fanout-ingest-dead-letter",
    }


def test_push_reaches_ingest_pubsub_with_an_oidc_token(subscriptions: dict[str, Body]) -> None:
    """Every message on fanout-ingest is pushed to ingest_pubsub's URL, signed as the
    fanout-pubsub-invoker account for that URL (Cloud Run checks token and audience)."""
    push = subscriptions["ingest_push"]
    assert push["topic"] == "${google_pubsub_topic.ingest.id}"
    (config_,) = push["push_config"]
    assert config_["push_endpoint"] == URI
    (token,) = config_["oidc_token"]
    assert token == {
        "service_account_email": "${google_service_account.pubsub_invoker.email}",
        "audience": URI,
    }


def test_failed_messages_are_retried_then_dead_lettered(subscriptions: dict[str, Body]) -> None:
    """A push the function fails is retried with 10 s to 600 s backoff; after 5 deliveries the
    message goes to fanout-ingest-dead-letter instead of being retried for days."""
    push = subscriptions["ingest_push"]
    (retry,) = push["retry_policy"]
    assert retry == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
    (dead_letter,) = push["dead_letter_policy"]
    assert dead_letter == {
        "dead_letter_topic": "${google_pubsub_topic.ingest_dead_letter.id}",
        "max_delivery_attempts": 5,
    }


def test_push_waits_as_long_as_the_function_runs(
    config: Config, subscriptions: dict[str, Body]
) -> None:
    """The ack deadline is the function's own timeout (Pub/Sub's push request timeout), within
    Pub/Sub's 10..600 s."""
    push = subscriptions["ingest_push"]
    assert push["ack_deadline_seconds"] == f"${{{FUNCTION}.service_config[0].timeout_seconds}}"
    function = resources(config, "google_cloudfunctions2_function")["ingest_pubsub"]
    assert 10 <= function["service_config"][0]["timeout_seconds"] <= 600


def test_dead_letters_are_kept_for_operators(
    config: Config, subscriptions: dict[str, Body]
) -> None:
    """A pull subscription on the dead-letter topic keeps dead letters 7 days (without one
    Pub/Sub drops them), and neither subscription expires when idle."""
    keeper = subscriptions["ingest_dead_letter"]
    assert keeper["topic"] == "${google_pubsub_topic.ingest_dead_letter.id}"
    assert "push_config" not in keeper
    assert keeper["message_retention_duration"] == "${local.dead_letter_retention}"
    assert locals_(config)["dead_letter_retention"] == "604800s"
    for body in subscriptions.values():
        assert body["expiration_policy"] == [{"ttl": ""}]
    outputs = labelled(config, "output")
    assert outputs["dead_letter_subscription"]["value"] == (
        "${google_pubsub_subscription.ingest_dead_letter.name}"
    )


def test_pubsub_service_agent_can_dead_letter_and_sign(config: Config) -> None:
    """Pub/Sub's service agent (named from the project number) may publish to the dead-letter
    topic, subscribe on the push subscription, and mint tokens as the invoker account."""
    agent = locals_(config)["pubsub_service_agent"]
    assert agent == (
        "serviceAccount:service-${data.google_project.this.number}"
        "@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    publishers = resources(config, "google_pubsub_topic_iam_member").values()
    assert [(b["topic"], b["role"], b["member"]) for b in publishers] == [
        ("${google_pubsub_topic.ingest_dead_letter.id}", "roles/pubsub.publisher", AGENT)
    ]
    subscribers = resources(config, "google_pubsub_subscription_iam_member").values()
    assert [(b["subscription"], b["role"], b["member"]) for b in subscribers] == [
        ("${google_pubsub_subscription.ingest_push.id}", "roles/pubsub.subscriber", AGENT)
    ]
    token_creators = [
        body["service_account_id"]
        for body in resources(config, "google_service_account_iam_member").values()
        if body["member"] == AGENT and body["role"] == "roles/iam.serviceAccountTokenCreator"
    ]
    assert token_creators == ["${google_service_account.pubsub_invoker.name}"]


def test_ingest_pubsub_takes_a_raw_push_body() -> None:
    """Deployed without an event trigger (an HTTP service), ingest_pubsub still receives what
    the push subscription sends: functions-framework turns the raw push body into the
    messagePublished CloudEvent its @cloud_event code reads. Data that is no request is
    acknowledged (200), not redelivered into the dead-letter topic, and logged."""
    script = (
        "import base64, json\n"
        "from functions_framework import create_app\n"
        "app = create_app('ingest_pubsub', 'main.py', 'http')\n"
        "body = {'subscription': 'projects/p/subscriptions/fanout-ingest-push',\n"
        "        'message': {'data': base64.b64encode(b'not json').decode(),\n"
        "                    'attributes': {}, 'messageId': '1234',\n"
        "                    'publishTime': '2024-01-01T00:00:00Z'}}\n"
        "answer = app.test_client().post('/', json=body)\n"
        "print(json.dumps([answer.status_code, answer.get_data(as_text=True)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_DIR, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    *lines, last = result.stdout.strip().splitlines()
    status, _ = json.loads(last)
    assert status == 200, result.stderr
    # The refusal is one structured line on stdout, as Cloud Run reads it, with the id.
    refusals = [json.loads(line) for line in lines if "refused" in line]
    assert [(r["severity"], r["message_id"]) for r in refusals] == [("ERROR", "1234")]
