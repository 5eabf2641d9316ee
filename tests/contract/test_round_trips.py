"""The per-batch budget on Firestore (docs/design.md, "The write budget"): a batch whose
finish leaves its counter shard incomplete costs 3 round trips, the claim's read and commit
and the finish commit. Only the batch that completes a shard also sums the shards.

Round trips are counted where they leave the process, at the client's RPC layer, so the
test holds whatever the store does in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from functions.store.firestore import FirestoreJobStore
from functions.store.protocol import JobStore
from tests.contract.factories import planned_job, run

pytestmark = pytest.mark.firestore_only("SQLite makes no network round trips")

RPCS = (
    "commit",
    "batch_get_documents",
    "run_query",
    "run_aggregation_query",
    "begin_transaction",
    "rollback",
    "get_document",
)


def count_round_trips(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the RPCs `store` sends from now on, appended as they leave."""
    assert isinstance(store, FirestoreJobStore)
    sent: list[str] = []
    api = store.db._firestore_api

    def counted(name: str, rpc: Callable[..., Any]) -> Callable[..., Any]:
        def send(*args: Any, **kwargs: Any) -> Any:
            sent.append(name)
            return rpc(*args, **kwargs)

        return send

    for name in RPCS:
        monkeypatch.setattr(api, name, counted(name, getattr(api, name)))
    return sent


@pytest.mark.firestore_gap("a commit returns no transform results, so every finish sums")
def test_only_a_batch_that_completes_its_shard_sums_the_shards(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """70 batches in 3 shards (index % 3): batches 67 and 68 complete shards 1 and 2, and
    batch 69 completes shard 0 and the job."""
    job = planned_job(store, 70)
    sent = count_round_trips(store, monkeypatch)
    trips, finalized = [], []
    for i in range(70):
        sent.clear()
        finalized.append(run(store, job, i).finalized)
        trips.append(len(sent))
    assert trips[:67] == [3] * 67
    assert trips[67:69] == [4, 4]
    # The last batch: claim, finish, one sum over the shards, then the finalize commit.
    assert sent.count("commit") == 3
    assert finalized == [False] * 69 + [True]
