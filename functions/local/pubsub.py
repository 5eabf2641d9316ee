"""The ingest topic on Google's Pub/Sub emulator, wired as infra/ wires it in the cloud: a push
subscription delivering each message to `ingest_pubsub`, with a dead-letter topic (and a pull
subscription on it, so dead letters are kept) after a bounded number of deliveries.

Clients talk to the emulator over an insecure gRPC channel with anonymous credentials, given
explicitly rather than through `PUBSUB_EMULATOR_HOST`, so nothing here depends on this
process's environment. Built on first use, never at import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport
from google.pubsub_v1.types import DeadLetterPolicy, PubsubMessage, PushConfig, Subscription

# The names infra/ gives them (functions.tf).
TOPIC = "fanout-ingest"
PUSH_SUBSCRIPTION = "fanout-ingest-push"
DEAD_LETTER_TOPIC = "fanout-ingest-dead-letter"
DEAD_LETTER_SUBSCRIPTION = "fanout-ingest-dead-letter"
# Deliveries of one message before it goes to the dead-letter topic (Pub/Sub allows 5-100).
MAX_DELIVERY_ATTEMPTS = 5
# How long the emulator waits for ingest_pubsub to answer a push before it redelivers.
ACK_DEADLINE_SECONDS = 60


@dataclass
class IngestTopic:
    """The ingest topic of `project` on the emulator at `host` (host:port)."""

    host: str
    project: str

    def _grpc(self) -> dict[str, Any]:
        """A transport's arguments for the emulator: an insecure channel; anonymous
        credentials say so, and keep the library from looking for real ones."""
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return {
            "host": self.host,
            "channel": grpc.insecure_channel(self.host),
            "credentials": credentials,
        }

    @cached_property
    def _publisher(self) -> Any:
        return PublisherClient(transport=PublisherGrpcTransport(**self._grpc()))

    @cached_property
    def _subscriber(self) -> Any:
        return SubscriberClient(transport=SubscriberGrpcTransport(**self._grpc()))

    def topic_path(self, name: str = TOPIC) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def create(self, push_endpoint: str) -> None:
        """Create the topics and subscriptions, pushing to `push_endpoint` (ingest_pubsub's
        URL). The dead-letter subscription comes first: a message dead-lettered before
        any subscription exists on its topic would be lost."""
        for name in (TOPIC, DEAD_LETTER_TOPIC):
            self._publisher.create_topic(name=self.topic_path(name))
        self._subscriber.create_subscription(
            request=Subscription(
                name=self.subscription_path(DEAD_LETTER_SUBSCRIPTION),
                topic=self.topic_path(DEAD_LETTER_TOPIC),
            )
        )
        self._subscriber.create_subscription(
            request=Subscription(
                name=self.subscription_path(PUSH_SUBSCRIPTION),
                topic=self.topic_path(TOPIC),
                push_config=PushConfig(push_endpoint=push_endpoint),
                ack_deadline_seconds=ACK_DEADLINE_SECONDS,
                dead_letter_policy=DeadLetterPolicy(
                    dead_letter_topic=self.topic_path(DEAD_LETTER_TOPIC),
                    max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
                ),
            )
        )

    def publish(self, request: Mapping[str, Any] | bytes) -> str:
        """Publish an ingest request (a JSON object, or raw bytes as they are); returns
        the message id."""
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        response = self._publisher.publish(
            topic=self.topic_path(), messages=[PubsubMessage(data=data)]
        )
        return str(response.message_ids[0])

    def dead_letters(self, max_messages: int = 100) -> list[bytes]:
        """Pull (and acknowledge) what reached the dead-letter subscription so far."""
        subscription = self.subscription_path(DEAD_LETTER_SUBSCRIPTION)
        try:
            response = self._subscriber.pull(
                subscription=subscription, max_messages=max_messages, timeout=5
            )
        except gexc.DeadlineExceeded:
            return []
        received = list(response.received_messages)
        if received:
            self._subscriber.acknowledge(
                subscription=subscription, ack_ids=[m.ack_id for m in received]
            )
        return [bytes(m.message.data) for m in received]

    def close(self) -> None:
        for client in ("_publisher", "_subscriber"):
            if client in self.__dict__:
                self.__dict__.pop(client).transport.close()
