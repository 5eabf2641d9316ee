"""A function's cold start: importing `main` loads no cloud client, gRPC or model runtime.

Every instance of every function pays its import before its first request (a Cloud Run
cold start, and each process of every local stack). The clients load where they are first
used: Cloud Logging's handler at the first request, Cloud Storage for gs:// locations,
Firestore and Cloud Tasks when the store and the queue are opened, LanceDB and the model
where a batch or a search runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOADED_ON_FIRST_USE = (
    "google.cloud.logging",
    "google.cloud.storage",
    "google.cloud.firestore",
    "google.cloud.tasks_v2",
    "google.api_core",
    "grpc",
    "lancedb",
    "pyarrow",
    "onnxruntime",
    "numpy",
)


def test_importing_main_loads_no_cloud_client_nor_model_runtime() -> None:
    """A cold start imports only what every request needs: no client library, no model."""
    script = (
        "import json, sys\n"
        "import main\n"
        f"print(json.dumps([m for m in {LOADED_ON_FIRST_USE!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_the_jobs_apis_first_request_loads_no_ingestion_code(tmp_path: Path) -> None:
    """Listing jobs needs the store, not the document loaders, LanceDB or numpy: those load
    when a job of the `documents` source is first submitted or run."""
    script = (
        "import json, sys\n"
        "import functions_framework\n"
        "app = functions_framework.create_app('jobs_api', 'main.py')\n"
        "answer = app.test_client().get('/jobs')\n"
        "assert answer.status_code == 200, answer.data\n"
        "heavy = ('functions.ingestion.processor', 'lancedb', 'numpy', 'docx')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    env = {
        **os.environ,
        "FANOUT_STORE": "sqlite",
        "FANOUT_SQLITE_PATH": str(tmp_path / "fanout.sqlite3"),
        "FANOUT_LOG_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []
