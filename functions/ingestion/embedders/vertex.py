"""`VertexEmbedder`: Vertex AI text embeddings over the REST `predict` endpoint.

Limits (Vertex AI "Get text embeddings", API limits): at most 250 texts per request and
20,000 input tokens per request (over that the API answers 400); each text is cut at 2,048
tokens when `autoTruncate` is on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import google.auth
import google.auth.exceptions
import numpy as np
import requests
import stamina
from google.auth.transport.requests import AuthorizedSession

from functions.errors import ConfigError, EmbeddingError, TransientError
from functions.ingestion.embedders.base import Vectors, l2_normalise
from functions.ingestion.tokens import count_tokens

# Output lengths of the models this embedder knows (all take up to 250 texts a request;
# gemini-embedding-001 takes one, so it is not offered).
MODEL_DIMENSIONS = {
    "text-embedding-005": 768,
    "text-embedding-004": 768,
    "text-multilingual-embedding-002": 768,
}
MAX_INSTANCES = 250
# Below the API's 20,000: our count is an estimate of a tokenizer we cannot run.
MAX_REQUEST_TOKENS = 18_000
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MAX_MESSAGE_CHARS = 500


class Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class HttpSession(Protocol):
    """What the embedder needs of `AuthorizedSession`: tests pass a fake."""

    def post(self, url: str, *, json: Any, timeout: float) -> Response: ...


class _RetryableStatus(Exception):
    """A 429 or 5xx answer: the service may accept the same request a little later."""


_RETRY_ON = (
    _RetryableStatus,
    requests.ConnectionError,
    requests.Timeout,
    google.auth.exceptions.TransportError,
)


def default_session() -> HttpSession:
    """An `AuthorizedSession` with the application default credentials."""
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise ConfigError(f"no Google credentials for Vertex AI: {error}") from error
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]


def estimate_tokens(text: str) -> int:
    """Tokens Vertex AI may count for `text`, erring high: the larger of MiniLM's wordpiece
    count and one token per 3 characters (English averages about 4)."""
    return max(count_tokens(text), -(-len(text) // 3), 1)


def plan_requests(costs: Sequence[int], max_instances: int, max_tokens: int) -> list[range]:
    """Consecutive index ranges, each within both limits; a text over `max_tokens` on its
    own goes alone (Vertex AI truncates it)."""
    requests_: list[range] = []
    start, used = 0, 0
    for index, cost in enumerate(costs):
        if index > start and (index - start >= max_instances or used + cost > max_tokens):
            requests_.append(range(start, index))
            start, used = index, 0
        used += cost
    if start < len(costs):
        requests_.append(range(start, len(costs)))
    return requests_


class VertexEmbedder:
    name = "vertex"

    def __init__(
        self,
        *,
        project: str | None,
        location: str,
        model: str,
        session_factory: Callable[[], HttpSession] = default_session,
        max_instances: int = MAX_INSTANCES,
        max_request_tokens: int = MAX_REQUEST_TOKENS,
        attempts: int = 6,
        retry_timeout: float = 120.0,
        request_timeout: float = 60.0,
    ) -> None:
        if not project:
            raise ConfigError("embedder 'vertex' needs a Google Cloud project (FANOUT_GCP_PROJECT)")
        if model not in MODEL_DIMENSIONS:
            known = ", ".join(sorted(MODEL_DIMENSIONS))
            raise ConfigError(f"unknown Vertex AI embedding model {model!r}; known: {known}")
        self.model = model
        self.dimension: int = MODEL_DIMENSIONS[model]
        self.url = (
            f"https://{location}-aiplatform.googleapis.com/v1/projects/{project}"
            f"/locations/{location}/publishers/google/models/{model}:predict"
        )
        self.max_instances = max_instances
        self.max_request_tokens = max_request_tokens
        # Retries of one request stop at `attempts` or after `retry_timeout` seconds, well
        # within a batch's 10-minute dispatch deadline; then the whole batch is retried.
        self.attempts = attempts
        self.retry_timeout = retry_timeout
        self.request_timeout = request_timeout
        self._session_factory = session_factory
        self._session: HttpSession | None = None
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._embed(texts, "RETRIEVAL_DOCUMENT")

    def embed_query(self, text: str) -> Vectors:
        return self._embed([text], "RETRIEVAL_QUERY").reshape(self.dimension)

    def _embed(self, texts: Sequence[str], task_type: str) -> Vectors:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        costs = [estimate_tokens(text) for text in texts]
        for span in plan_requests(costs, self.max_instances, self.max_request_tokens):
            instances = [{"content": texts[i], "task_type": task_type} for i in span]
            vectors[span.start : span.stop] = self._predict(instances)
        return l2_normalise(vectors)

    def _predict(self, instances: list[dict[str, str]]) -> Vectors:
        body = {"instances": instances, "parameters": {"autoTruncate": True}}
        try:
            for attempt in stamina.retry_context(
                on=_RETRY_ON,
                attempts=self.attempts,
                timeout=self.retry_timeout,
                wait_initial=1.0,
                wait_max=20.0,
            ):
                with attempt:
                    response = self._http().post(self.url, json=body, timeout=self.request_timeout)
                    if response.status_code in RETRY_STATUSES:
                        raise _RetryableStatus(_describe(response))
                    return self._vectors(response, len(instances))
        except _RETRY_ON as error:
            raise TransientError(f"Vertex AI embeddings unavailable: {error}") from error
        except google.auth.exceptions.RefreshError as error:
            # The token service failing now may work when the queue retries the batch.
            raise TransientError(f"Vertex AI credentials not refreshed: {error}") from error
        raise AssertionError("unreachable: stamina re-raises after the last attempt")

    def _vectors(self, response: Response, expected: int) -> Vectors:
        if response.status_code != 200:
            raise EmbeddingError(_describe(response), response.status_code)
        try:
            values = [p["embeddings"]["values"] for p in response.json()["predictions"]]
            array: Vectors = np.asarray(values, dtype=np.float32)
        except (KeyError, TypeError, ValueError) as error:
            raise EmbeddingError(f"Vertex AI reply without embeddings: {error!r}") from error
        if array.shape != (expected, self.dimension):
            raise EmbeddingError(
                f"Vertex AI returned vectors of shape {array.shape}, "
                f"expected ({expected}, {self.dimension})"
            )
        return array

    def _http(self) -> HttpSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._session_factory()
        return self._session


def _describe(response: Response) -> str:
    """The API's own error message (`{"error": {"message": ...}}`), else the raw body."""
    try:
        message = str(response.json()["error"]["message"])
    except (KeyError, TypeError, ValueError):
        message = response.text
    return f"Vertex AI HTTP {response.status_code}: {message[:MAX_MESSAGE_CHARS]}"
