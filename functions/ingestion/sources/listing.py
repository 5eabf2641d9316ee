"""A location's listing read a page at a time, for planning by pages (functions/planner.py).

A page resumes the listing just after the last item of the page before (its cursor is that
item's URI: names come in a stable sorted order, see `Source.list_after`), and ends before
the item that would start one batch more than the page holds, so every page but the last
holds exactly that many batches, cut by the same rule as a plan made whole (`BatchCut`).
"""

from __future__ import annotations

from dataclasses import dataclass

from functions.config import Settings
from functions.errors import InvalidArgument
from functions.ingestion.documents import SourceItem
from functions.ingestion.sources import open_source
from functions.jobs import BatchCut


class ListingError(InvalidArgument):
    """The location cannot be listed (gone, unreadable): a 400 at submit, and during
    planning the job fails with this message."""


@dataclass(frozen=True, slots=True)
class ListingPage:
    """The items of one page, the cursor of the next (None: the listing was empty), whether
    the listing ended within it, and how many names it read (its items and the one after)."""

    items: list[SourceItem]
    cursor: str | None
    last: bool
    listed: int

    @property
    def uris(self) -> list[str]:
        return [item.uri for item in self.items]

    @property
    def sizes(self) -> list[int]:
        return [item.size for item in self.items]


def read_listing_page(
    location: str,
    cursor: str | None,
    settings: Settings,
    *,
    batch_size: int,
    max_bytes: int | None,
    batches: int,
) -> ListingPage:
    """The page of `location`'s listing after `cursor` (None: the first), holding at most
    `batches` batches. `ListingError` when it cannot be listed; `TransientError` (a retry)
    as its source raises it."""
    try:
        source = open_source(location, settings)
        cut = BatchCut(batch_size, max_bytes)
        items: list[SourceItem] = []
        for item in source.list_after(cursor):
            if cut.starts_batch(item.size) and cut.batches > batches:
                return ListingPage(items, items[-1].uri, last=False, listed=len(items) + 1)
            items.append(item)
    except ListingError:
        raise
    except InvalidArgument as error:
        raise ListingError(error.message) from None
    return ListingPage(items, items[-1].uri if items else cursor, last=True, listed=len(items))
