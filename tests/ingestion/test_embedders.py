"""Embedders: the local MiniLM model for real; Vertex AI at the HTTP edge, with a fake
session standing in for `AuthorizedSession`."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import stamina
from google.auth.exceptions import DefaultCredentialsError
from pytest_mock import MockerFixture

from functions.config import IngestionSettings, Settings
from functions.errors import ConfigError, EmbeddingError, InvalidArgument, TransientError
from functions.ingestion.embedders import (
    LOCAL_MODELS,
    LocalEmbedder,
    NoEmbedder,
    Vectors,
    VertexEmbedder,
    check_embedder_available,
    get_embedder,
)
from functions.ingestion.embedders.vertex import estimate_tokens
from functions.ingestion.tokens import MODEL_WINDOW, count_tokens

ATOL = 1e-5
CANCEL = "Cancelling a job stops its remaining batches."
OTHERS = [
    "Firestore deletes expired documents with a TTL policy on the expiry field.",
    "The PDF loader falls back to a default font when the embedded one is missing.",
    "Cloud Scheduler calls the cleanup function once an hour.",
    "LanceDB stores each collection as a table of vectors and text.",
]
LONG_TEXT = " ".join(
    f"Batch {i} of the ingestion job reads its documents, splits them into chunks and "
    "writes their vectors to the collection."
    for i in range(40)
)


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    """One model session for the module: loading it is the slow part."""
    return LocalEmbedder()


def unit_norms(vectors: Vectors) -> Any:
    return np.linalg.norm(vectors, axis=-1)


# -- local ------------------------------------------------------------------------------


def test_local_vectors_are_float32_rows_of_384_in_input_order(local: LocalEmbedder) -> None:
    vectors = local.embed_documents(["first", "a somewhat longer second text", "third"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert local.embed_query("first").shape == (384,)
    assert np.allclose(vectors[0], local.embed_query("first"), atol=ATOL)


def test_local_vectors_have_unit_length(local: LocalEmbedder) -> None:
    vectors = local.embed_documents(["hello world", "", CANCEL, LONG_TEXT])
    assert np.allclose(unit_norms(vectors), 1.0, atol=ATOL)


def test_local_same_text_gives_the_same_vector(local: LocalEmbedder) -> None:
    first = local.embed_query(CANCEL)
    assert np.array_equal(first, local.embed_query(CANCEL))
    assert np.allclose(first, LocalEmbedder().embed_query(CANCEL), atol=ATOL)  # new session


@pytest.mark.parametrize("model", list(LOCAL_MODELS))
def test_length_bucketed_embeddings_equal_one_at_a_time_ones(model: str) -> None:
    """Texts of varied lengths, bucketed by length into padded runs of several (the float
    model) or run alone (int8, whose scale is per run): every row equals the text embedded
    on its own (cosine >= 0.999) and comes back at its input position."""
    embedder = LocalEmbedder(model, batch_size=4, batch_tokens=2048)
    texts = [LONG_TEXT, "short", CANCEL, *OTHERS, "mid length text about jobs", LONG_TEXT[:300]]
    batch = embedder.embed_documents(texts)
    singles = np.stack([embedder.embed_query(text) for text in texts])
    assert np.min(np.sum(batch * singles, axis=1)) >= 0.999


def test_local_int8_is_made_once_and_keeps_the_models_vectors(tmp_path: Path) -> None:
    """The int8 copy is made on first use and reused by the next process's embedder; its
    vectors stay those of the model as shipped (both write `local` collections)."""
    first = LocalEmbedder("minilm-l6", model_cache=tmp_path)
    texts = [CANCEL, *OTHERS, LONG_TEXT]
    int8 = first.embed_documents(texts)
    (copy,) = tmp_path.glob("minilm-l6-int8-*.onnx")
    made = copy.stat().st_mtime_ns
    again = LocalEmbedder("minilm-l6", model_cache=tmp_path).embed_documents(texts)
    assert copy.stat().st_mtime_ns == made and list(tmp_path.iterdir()) == [copy]
    assert np.allclose(again, int8, atol=ATOL)
    shipped = LocalEmbedder("minilm-l6-shipped").embed_documents(texts)
    assert np.min(np.sum(int8 * shipped, axis=1)) >= 0.98


def test_local_empty_list_gives_zero_rows(local: LocalEmbedder) -> None:
    vectors = local.embed_documents([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_local_text_past_the_window_is_truncated_not_refused(local: LocalEmbedder) -> None:
    """The model reads 256 wordpieces: text appended past them changes nothing."""
    assert count_tokens(LONG_TEXT) > 3 * MODEL_WINDOW
    padded = LONG_TEXT + " Fonts in PDF files and Firestore TTL policies, entirely unrelated."
    assert np.allclose(local.embed_query(LONG_TEXT), local.embed_query(padded), atol=ATOL)


def test_local_query_ranks_the_matching_sentence_first(local: LocalEmbedder) -> None:
    candidates = [*OTHERS[:2], CANCEL, *OTHERS[2:]]
    scores = local.embed_documents(candidates) @ local.embed_query(
        "How do I terminate a running job?"
    )
    assert candidates[int(np.argmax(scores))] == CANCEL


def test_local_concurrent_first_use_gives_every_thread_the_same_vector() -> None:
    """Threads racing on a fresh embedder all get the same, correct vectors."""
    embedder = LocalEmbedder()
    results: list[Vectors] = []
    lock = threading.Lock()

    def embed() -> None:
        vector = embedder.embed_query(CANCEL)
        with lock:
            results.append(vector)

    threads = [threading.Thread(target=embed) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for vector in results:
        assert np.allclose(vector, results[0], atol=ATOL)


def test_local_without_its_packages_fails_with_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where onnxruntime is absent (the deployed functions), the first use says so."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match="onnxruntime"):
        LocalEmbedder().embed_query("x")


# -- vertex, at the HTTP edge ----------------------------------------------------------


@dataclass
class FakeResponse:
    status_code: int
    payload: Any

    @property
    def text(self) -> str:
        return json.dumps(self.payload)

    def json(self) -> Any:
        return self.payload


def fake_vector(text: str) -> list[float]:
    """Text "t<i> ..." -> 3 at position i, 4 at the last: length 5, so normalising shows."""
    vector = [0.0] * 768
    vector[int(text.split()[0][1:]) % 767] = 3.0
    vector[767] = 4.0
    return vector


def expected_vector(text: str) -> Vectors:
    return np.asarray(fake_vector(text), dtype=np.float32) / 5.0


@dataclass
class FakeVertex:
    """Answers as the predict endpoint does, after first playing `script` (error responses
    or exceptions, one per request). Keeps every request body it receives."""

    script: list[FakeResponse | Exception] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def post(self, url: str, *, json: Any, timeout: float) -> FakeResponse:
        self.urls.append(url)
        self.bodies.append(json)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        predictions = [
            {"embeddings": {"values": fake_vector(instance["content"])}}
            for instance in json["instances"]
        ]
        return FakeResponse(200, {"predictions": predictions})

    def contents(self) -> list[list[str]]:
        return [[i["content"] for i in body["instances"]] for body in self.bodies]


def vertex(fake: FakeVertex, **kwargs: Any) -> VertexEmbedder:
    return VertexEmbedder(
        project="proj",
        location="europe-west4",
        model="text-embedding-005",
        session_factory=lambda: fake,
        **kwargs,
    )


def texts(n: int) -> list[str]:
    return [f"t{i}" for i in range(n)]


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """stamina's test mode: no backoff sleeps, three attempts per request."""
    with stamina.set_testing(True, attempts=3):
        yield


def assert_vectors_for(vectors: Vectors, sent: Sequence[str]) -> None:
    assert vectors.dtype == np.float32 and vectors.shape == (len(sent), 768)
    assert np.allclose(vectors, np.stack([expected_vector(t) for t in sent]), atol=ATOL)


def test_vertex_600_texts_go_in_requests_of_at_most_250_and_come_back_in_order() -> None:
    fake = FakeVertex()
    sent = texts(600)
    vectors = vertex(fake).embed_documents(sent)
    assert all(len(batch) <= 250 for batch in fake.contents())
    assert [t for batch in fake.contents() for t in batch] == sent
    assert_vectors_for(vectors, sent)


def test_vertex_request_body_is_documents_with_auto_truncate_to_the_model_url() -> None:
    fake = FakeVertex()
    vertex(fake).embed_documents(["t1", "t2"])
    assert fake.urls == [
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/"
        "europe-west4/publishers/google/models/text-embedding-005:predict"
    ]
    assert fake.bodies == [
        {
            "instances": [
                {"content": "t1", "task_type": "RETRIEVAL_DOCUMENT"},
                {"content": "t2", "task_type": "RETRIEVAL_DOCUMENT"},
            ],
            "parameters": {"autoTruncate": True},
        }
    ]


def test_vertex_query_is_sent_as_retrieval_query() -> None:
    fake = FakeVertex()
    vector = vertex(fake).embed_query("t7")
    assert [i["task_type"] for i in fake.bodies[0]["instances"]] == ["RETRIEVAL_QUERY"]
    assert vector.shape == (768,) and np.allclose(vector, expected_vector("t7"), atol=ATOL)


def test_vertex_requests_stay_within_the_token_budget() -> None:
    """Long chunks: every request stays under the API's 20,000 tokens, even counted as
    one token per 3 characters, and the vectors still come back in order."""
    fake = FakeVertex()
    sent = [f"t{i} " + "lorem ipsum dolor sit amet " * 40 for i in range(120)]
    vectors = vertex(fake).embed_documents(sent)
    assert len(fake.bodies) > 1
    for batch in fake.contents():
        assert sum(estimate_tokens(t) for t in batch) <= 20_000
        assert sum(len(t) for t in batch) / 3 <= 20_000
    assert [t for batch in fake.contents() for t in batch] == sent
    assert_vectors_for(vectors, sent)


def test_vertex_text_over_the_budget_goes_alone_between_its_neighbours() -> None:
    fake = FakeVertex()
    huge = "t1 " + "word " * 20_000
    vectors = vertex(fake).embed_documents(["t0", huge, "t2"])
    assert fake.contents() == [["t0"], [huge], ["t2"]]
    assert np.allclose(vectors[1], expected_vector("t1"), atol=ATOL)


@pytest.mark.parametrize(
    "failure",
    [
        FakeResponse(429, {"error": {"code": 429, "message": "Quota exceeded"}}),
        FakeResponse(500, {"error": {"code": 500, "message": "Internal"}}),
        FakeResponse(502, "Bad Gateway"),
        FakeResponse(503, {"error": {"code": 503, "message": "Unavailable"}}),
        FakeResponse(504, {"error": {"code": 504, "message": "Deadline"}}),
        requests.ConnectionError("connection reset"),
        requests.Timeout("read timed out"),
    ],
    ids=["429", "500", "502", "503", "504", "connection-error", "timeout"],
)
def test_vertex_transient_failure_then_success_returns_the_vectors(
    failure: FakeResponse | Exception,
) -> None:
    """The same request is sent again, and its answer is used."""
    fake = FakeVertex(script=[failure])
    vectors = vertex(fake).embed_documents(["t3", "t4"])
    assert fake.contents() == [["t3", "t4"], ["t3", "t4"]]
    assert_vectors_for(vectors, ["t3", "t4"])


def test_vertex_persistent_503_raises_transient_error() -> None:
    """Still unavailable after the retries: the queue retries the whole batch later."""
    unavailable = FakeResponse(503, {"error": {"code": 503, "message": "Service unavailable"}})
    fake = FakeVertex(script=[unavailable] * 10)
    with pytest.raises(TransientError, match="Service unavailable"):
        vertex(fake).embed_documents(["t1"])


def test_vertex_persistent_connection_errors_raise_transient_error() -> None:
    fake = FakeVertex(script=[requests.ConnectionError("refused")] * 10)
    with pytest.raises(TransientError, match="refused"):
        vertex(fake).embed_documents(["t1"])


@pytest.mark.parametrize("status", [400, 403, 404])
def test_vertex_client_error_raises_embedding_error_with_the_message_unretried(
    status: int,
) -> None:
    message = f"The API says no ({status})"
    fake = FakeVertex(
        script=[FakeResponse(status, {"error": {"code": status, "message": message}})]
    )
    with pytest.raises(EmbeddingError, match=re.escape(message)) as err:
        vertex(fake).embed_documents(["t1", "t2"])
    assert err.value.status == status
    assert len(fake.bodies) == 1  # not retried: the same request would fail the same way


def test_vertex_reply_with_missing_vectors_raises_embedding_error() -> None:
    short = FakeResponse(200, {"predictions": [{"embeddings": {"values": fake_vector("t1")}}]})
    fake = FakeVertex(script=[short])
    with pytest.raises(EmbeddingError, match="shape"):
        vertex(fake).embed_documents(["t1", "t2"])


def test_vertex_empty_list_sends_nothing() -> None:
    fake = FakeVertex()
    assert vertex(fake).embed_documents([]).shape == (0, 768)
    assert fake.bodies == []


def test_vertex_without_a_project_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="project"):
        VertexEmbedder(project=None, location="us-central1", model="text-embedding-005")
    with pytest.raises(ConfigError, match="project"):
        get_embedder("vertex", Settings(gcp_project=None))


def test_vertex_without_credentials_is_a_config_error(mocker: MockerFixture) -> None:
    """The default session is built on first use, from the application credentials."""
    mocker.patch("google.auth.default", side_effect=DefaultCredentialsError)
    embedder = VertexEmbedder(project="p", location="us-central1", model="text-embedding-005")
    with pytest.raises(ConfigError, match="no Google credentials"):
        embedder.embed_query("t1")


def test_vertex_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gemini-embedding-001"):
        VertexEmbedder(project="p", location="us-central1", model="gemini-embedding-001")


# -- none, lookup and availability ------------------------------------------------------


def test_none_embedder_makes_empty_vectors() -> None:
    embedder = NoEmbedder()
    assert embedder.dimension is None
    assert embedder.embed_documents(["a", "b"]).shape == (2, 0)
    assert embedder.embed_query("a").shape == (0,)


def test_get_embedder_is_one_instance_per_name_and_settings() -> None:
    settings = Settings(gcp_project="p")
    vertex_embedder = get_embedder("vertex", settings)
    assert (vertex_embedder.name, vertex_embedder.dimension) == ("vertex", 768)
    assert get_embedder("vertex", Settings(gcp_project="p")) is vertex_embedder
    elsewhere = Settings(gcp_project="p", ingestion=IngestionSettings(vertex_location="eu"))
    assert get_embedder("vertex", elsewhere) is not vertex_embedder
    assert get_embedder("local", settings) is get_embedder("local", Settings())
    assert (get_embedder("local", settings).name, get_embedder("none", settings).name) == (
        "local",
        "none",
    )


def test_get_embedder_unknown_name_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="bogus"):
        get_embedder("bogus", Settings())


def test_check_embedder_available_accepts_the_known_ones_here() -> None:
    for name in ("vertex", "none", "local", *(f"local/{model}" for model in LOCAL_MODELS)):
        check_embedder_available(name, Settings())


def test_check_embedder_available_refuses_unknown_names() -> None:
    with pytest.raises(InvalidArgument, match="bogus"):
        check_embedder_available("bogus", Settings())
    with pytest.raises(InvalidArgument, match="local/bogus"):
        check_embedder_available("local/bogus", Settings())


def test_an_unknown_local_model_is_the_requests_or_the_deployments_error() -> None:
    with pytest.raises(InvalidArgument, match="minilm-l3"):
        get_embedder("local/minilm-l9", Settings())
    wrong = Settings(ingestion=IngestionSettings(local_model="minilm-l9"))
    with pytest.raises(ConfigError, match="FANOUT_LOCAL_MODEL"):
        get_embedder("local", wrong)


def test_check_embedder_available_refuses_local_without_onnxruntime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(InvalidArgument, match="onnxruntime"):
        check_embedder_available("local", Settings())
    check_embedder_available("vertex", Settings())
