"""`LocalEmbedder`: a MiniLM model (`local_models.py`) in ONNX on the CPU, for the local
stack.

onnxruntime and the model packages come from requirements-local.txt, which the deployed
functions do not install: they are imported only inside the lazy loader, so this module
imports fine where they are absent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

from functions.config import DEFAULT_MODEL_CACHE
from functions.errors import ConfigError
from functions.ingestion.embedders.base import Vectors, l2_normalise
from functions.ingestion.embedders.int8 import int8_model
from functions.ingestion.embedders.local_models import (
    DEFAULT_LOCAL_MODEL,
    LocalModel,
    local_model,
)
from functions.ingestion.tokens import MODEL_WINDOW, minilm_tokenizer

if TYPE_CHECKING:
    import onnxruntime

DIMENSION = 384
DEFAULT_BATCH_SIZE = 32
# Measured on 2 cores: 256-wordpiece chunks, 26/s one per run, 20/s 32 per run (their
# activations no longer fit the CPU caches); 10-40 word texts, 210/s alone, 300/s batched.
DEFAULT_BATCH_TOKENS = 256
_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


class LocalEmbedder:
    """One ONNX session per instance (`get_embedder` keeps one per process), loaded on
    first use and shared by all threads
    (onnxruntime sessions may be run from several threads at once)."""

    name = "local"
    dimension = DIMENSION

    def __init__(
        self,
        model: str = DEFAULT_LOCAL_MODEL,
        *,
        model_cache: Path = DEFAULT_MODEL_CACHE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        intra_op_threads: int | None = None,
    ) -> None:
        self.model: LocalModel = local_model(model)
        self.model_cache = model_cache
        # A run holds at most `batch_size` texts and `batch_tokens` wordpieces, padding
        # included: batching pays for short texts only; full-window chunks run alone.
        # In int8 arithmetic every text runs alone: the activations' scale is computed per
        # run, so a batch would make a text's vector depend on its neighbours (cosine down
        # to 0.97 measured), and batches of chunk-length texts ran 15 % slower anyway.
        self.batch_size = 1 if self.model.int8 else batch_size
        self.batch_tokens = batch_tokens
        # None lets onnxruntime use one thread per core.
        self.intra_op_threads = intra_op_threads
        self._lock = threading.Lock()
        self._loaded: tuple[onnxruntime.InferenceSession, Tokenizer] | None = None

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(list(texts))
        # Batches of texts of similar length: little padding to compute. Each row is
        # written back at its input position.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(encodings), DIMENSION), dtype=np.float32)
        rows: list[int] = []
        for index in order:
            # Sorted ascending, so the text being added is the batch's widest.
            width = len(encodings[index].ids)
            if rows and (
                len(rows) == self.batch_size or (len(rows) + 1) * width > self.batch_tokens
            ):
                vectors[rows] = self._run(session, [encodings[i] for i in rows])
                rows = []
            rows.append(index)
        vectors[rows] = self._run(session, [encodings[i] for i in rows])
        return vectors

    def embed_query(self, text: str) -> Vectors:
        return self.embed_documents([text]).reshape(DIMENSION)

    def _run(self, session: onnxruntime.InferenceSession, batch: list[Encoding]) -> Vectors:
        width = max(len(encoding.ids) for encoding in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, encoding in enumerate(batch):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        wanted = {i.name for i in session.get_inputs()}
        hidden: npt.NDArray[np.float32] = session.run(
            [self.model.output], {k: v for k, v in feeds.items() if k in wanted}
        )[0]
        # Mean pooling over the real (unpadded) tokens, as sentence-transformers does for
        # this model; the export stops at the transformer's last hidden state.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return l2_normalise(pooled)

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer]:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = (self._session(), _tokenizer())
                loaded = self._loaded
        return loaded

    def _session(self) -> onnxruntime.InferenceSession:
        model = self.model
        try:
            import onnxruntime
        except ImportError as error:
            raise ConfigError(model.missing() or str(error)) from error
        path = model.source_path()
        if model.int8:
            path = int8_model(path, self.model_cache, model.name)
        options = onnxruntime.SessionOptions()
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        # Idle intra-op threads sleep rather than spin: on 2 cores shared with the rest of
        # the pipeline, spinning burnt CPU the other threads needed (tokens per CPU second
        # 1,700 spinning, 3,100 not, same wall time or better).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if model.output not in outputs or not inputs <= _INPUTS:
            raise ConfigError(
                f"model {model.name!r} has inputs {sorted(inputs)} and outputs "
                f"{sorted(outputs)}; expected a subset of {sorted(_INPUTS)} and {model.output!r}"
            )
        return session


def _tokenizer() -> Tokenizer:
    """A copy of the shared tokenizer that truncates to the model's window: the shared one
    counts tokens and must not truncate."""
    tokenizer = Tokenizer.from_str(minilm_tokenizer().to_str())
    tokenizer.enable_truncation(MODEL_WINDOW)
    return tokenizer
