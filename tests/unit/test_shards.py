"""Counter shards: the batches that count into each shard, which the Firestore store's
finish uses to tell a completed shard without reading the others."""

from __future__ import annotations

from collections import Counter

import pytest

from functions.store.shards import counter_shards, shard_of, shard_size


@pytest.mark.parametrize("total", [1, 31, 32, 33, 70, 2_048, 2_049, 100_003])
def test_each_shard_expects_exactly_the_batches_that_count_into_it(total: int) -> None:
    shards = counter_shards(total)
    landed = Counter(shard_of(i, total) for i in range(total))
    assert [shard_size(k, total) for k in range(shards)] == [landed[k] for k in range(shards)]
    assert sum(shard_size(k, total) for k in range(shards)) == total
