"""An int8-arithmetic copy of a shipped ONNX model, made once and cached on disk.

The MiniLM packages ship either float weights or int8 weights that are cast back to float
at every run, so their matrix products run in float. onnxruntime's dynamic quantization
turns each weight product into an int8 one (`MatMulInteger`, per-channel weight scales),
which runs about twice as fast per token on a CPU with VNNI and keeps each vector within
cosine 0.98 of the float one (measured on Python's documentation; docs/ingestion.md).

The copy's file name carries a digest of the source file and the onnxruntime version, so
an upgrade of either makes a new copy. Several processes may make it at once: each writes
its own temporary file and renames it into place, so none ever loads a partial file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from functions.errors import ConfigError


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def int8_model(source: Path, cache_dir: Path, name: str) -> Path:
    """The path of `source`'s int8 copy under `cache_dir`, made if missing."""
    import onnxruntime

    target = cache_dir / f"{name}-int8-{_digest(source)}-ort{onnxruntime.__version__}.onnx"
    if target.exists():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the model cache {cache_dir}: {error}") from error
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".making-") as work:
        folded = Path(work) / "folded.onnx"
        made = Path(work) / "int8.onnx"
        _fold_constants(source, folded)
        _quantize(folded, made)
        os.replace(made, target)
    return target


def _fold_constants(source: Path, target: Path) -> None:
    """The graph with weights that are stored as int8 and cast at run time folded into
    plain float weights, so the quantizer sees ordinary weight products."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)
