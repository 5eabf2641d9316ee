"""One fingerprint per document of a collection, in a LanceDB table beside its chunks.

The table is `<collection>.documents` (collection names have no dots, so it can never be
a collection). A document's row is written after its chunks, in the flush that stores
them: a crash in between leaves the old fingerprint (or none), so the next run reads the
document again and finds its chunks already there. `recipe` is how the chunks were made
(chunking options, loader version): a document ingested another way is not unchanged.
`chunks` and `job_id` tell a retried batch what an earlier attempt of its job stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import stamina

if TYPE_CHECKING:
    from lancedb.table import Table

from functions.errors import TransientError
from functions.ingestion.fingerprint import Fingerprint
from functions.ingestion.sink import (
    COMPACT_EVERY_VERSIONS,
    PRIMARY_KEY,
    WRITE_ATTEMPTS,
    CommitConflict,
    _any_uri,
    _btree,
    _connect,
    _is_conflict,
    _sql_string,
    ensure_index,
)

SCHEMA = pa.schema(
    [
        pa.field("uri", pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("stamp", pa.string(), nullable=False),
        pa.field("md5", pa.string(), nullable=False),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("chunks", pa.int32(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
    ]
)
log = logging.getLogger("fanout.ingestion.documents")
# Documents looked up in one filter: a batch's items at most, in a few queries.
LOOKUP_URIS = 200


@dataclass(frozen=True, slots=True)
class KnownDocument:
    """A document as it was ingested: its fingerprint, how it was chunked, into how many
    chunks, by which job."""

    fingerprint: Fingerprint
    recipe: str
    chunks: int
    job_id: str


class DocumentIndex:
    """The fingerprints of collection `collection`'s documents."""

    def __init__(self, db_uri: str, collection: str) -> None:
        self.db_uri = db_uri
        self.name = f"{collection}.documents"

    def _table(self) -> Table | None:
        db = _connect(self.db_uri)
        if self.name not in db.list_tables().tables:
            return None
        return db.open_table(self.name)

    def ensure(self) -> Table:
        """The table, created if missing, with its BTREE on the URI, which an upsert looks
        its documents up in (without it, a write joins every row: 44.8 MB at 300,000
        documents, 2.0 MB with it). Called at submit, so tables from before get it."""
        table = self._table()
        if table is None:
            try:
                table = _connect(self.db_uri).create_table(self.name, schema=SCHEMA)
            except (OSError, ValueError, RuntimeError) as error:
                table = self._table()  # a concurrent create of the same table is fine
                if table is None:
                    raise TransientError(f"cannot create {self.name!r}: {error}") from error
        ensure_index(table, "uri", _btree(), latest=self._reopened, name=repr(self.name))
        return table

    def _reopened(self) -> Table:
        return _connect(self.db_uri).open_table(self.name)

    def reset(self) -> None:
        """Forget every fingerprint (a new collection under an old name)."""
        if self._table() is not None:
            _connect(self.db_uri).drop_table(self.name)

    def known(self, uris: Iterable[str]) -> dict[str, KnownDocument]:
        """The stored fingerprints of those of `uris` that have one."""
        table = self._table()
        wanted = sorted(set(uris))
        if table is None or not wanted:
            return {}
        found: dict[str, KnownDocument] = {}
        for start in range(0, len(wanted), LOOKUP_URIS):
            rows = (
                table.search()
                .where(_any_uri(wanted[start : start + LOOKUP_URIS]))
                .select(["uri", "size", "stamp", "md5", "recipe", "chunks", "job_id"])
                .limit(None)
                .to_arrow()
                .to_pylist()
            )
            for row in rows:
                found[row["uri"]] = KnownDocument(
                    Fingerprint(size=row["size"], stamp=row["stamp"], md5=row["md5"]),
                    row["recipe"],
                    row["chunks"],
                    row["job_id"],
                )
        return found

    def record(self, documents: Mapping[str, KnownDocument]) -> None:
        """Keep `documents` (by URI), replacing what was kept for them, in one commit."""
        if not documents:
            return
        known = list(documents.values())
        data = pa.table(
            {
                "uri": list(documents),
                "size": [d.fingerprint.size for d in known],
                "stamp": [d.fingerprint.stamp for d in known],
                "md5": [d.fingerprint.md5 for d in known],
                "recipe": [d.recipe for d in known],
                "chunks": [d.chunks for d in known],
                "job_id": [d.job_id for d in known],
            },
            schema=SCHEMA,
        )
        table = self._table()
        if table is None:  # made at submit, but not by older versions
            table = self.ensure()

        @stamina.retry(on=CommitConflict, attempts=WRITE_ATTEMPTS, wait_initial=0.05)
        def write() -> int:
            try:
                table.checkout_latest()  # type: ignore[no-untyped-call]  # untyped in lancedb
                result = (
                    table.merge_insert("uri")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                )
            except (OSError, RuntimeError, ValueError) as error:
                if _is_conflict(error):
                    raise CommitConflict(str(error)) from error
                raise
            return int(result.version)

        try:
            version = write()
        except CommitConflict as error:
            raise TransientError(f"{self.name!r}: write kept conflicting: {error}") from error
        if version % COMPACT_EVERY_VERSIONS == 0:  # as the chunks' table, and for the same reason
            try:
                table.optimize()
            except Exception:
                log.warning("%s: compaction during the job failed", self.name, exc_info=True)

    def prune(self, keep: Iterable[str], *, under: str) -> int:
        """Forget documents whose URI starts with `under` but is not in `keep`."""
        table = self._table()
        if table is None:
            return 0
        rows = (
            table.search()
            .where(f"starts_with(uri, {_sql_string(under)})")
            .select(["uri"])
            .limit(None)
            .to_arrow()
        )
        gone = sorted(set(rows.column("uri").to_pylist()) - set(keep))
        for start in range(0, len(gone), LOOKUP_URIS):
            table.delete(_any_uri(gone[start : start + LOOKUP_URIS]))
        return len(gone)

    def compact(self) -> None:
        """Fold the small versions each flush left (once per job, at the end). A failure
        (a concurrent job's write) is logged: the next job compacts."""
        table = self._table()
        if table is None:
            return
        try:
            table.optimize(cleanup_older_than=timedelta(minutes=10))
        except Exception:
            log.warning("%s: compaction failed", self.name, exc_info=True)
