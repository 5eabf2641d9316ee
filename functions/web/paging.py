"""Prev and next links over a keyset listing.

The stores page with opaque cursors that only go forward (cheap on Firestore at any depth:
no offsets), so a page cannot ask for the one before it. Instead each link carries the
trail of cursors of the pages before it (`back`, "."-joined, "~" for the first page): "prev"
pops the trail, "next" pushes the current cursor. The state lives in the URL only, so a
link can be shared, reloaded or opened in another tab, and the server keeps nothing. The
trail is cut to its last MAX_TRAIL cursors to keep URLs short; past that depth "prev"
stops at the oldest kept page, and the "first" link still leads home.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from functions.web.page_models import MAX_TRAIL

FIRST_PAGE = "~"
SEPARATOR = "."


def decode_trail(back: str | None) -> tuple[str | None, ...]:
    """The cursors of the pages before, oldest first; None is the first page."""
    if not back:
        return ()
    return tuple(None if part == FIRST_PAGE else part for part in back.split(SEPARATOR))


def encode_trail(trail: Sequence[str | None]) -> str | None:
    if not trail:
        return None
    return SEPARATOR.join(FIRST_PAGE if cursor is None else cursor for cursor in trail)


@dataclass(frozen=True, slots=True)
class Pager:
    """Where one page sits in its listing, and the query parameters of its neighbours."""

    cursor: str | None
    trail: tuple[str | None, ...]
    next_cursor: str | None
    shown: int
    total: int
    limit: int

    @property
    def first_params(self) -> dict[str, str] | None:
        """The first page; None when this is it."""
        return None if self.cursor is None else {}

    @property
    def prev_params(self) -> dict[str, str] | None:
        if self.cursor is None or not self.trail:
            return None
        *before, previous = self.trail
        return _params(previous, before)

    @property
    def next_params(self) -> dict[str, str] | None:
        if self.next_cursor is None:
            return None
        return _params(self.next_cursor, [*self.trail, self.cursor][-MAX_TRAIL:])

    @property
    def start(self) -> int | None:
        """The 1-based position of the page's first row; None when the trail was cut."""
        if self.cursor is None:
            return 1
        if not self.trail or self.trail[0] is not None:
            return None
        return len(self.trail) * self.limit + 1


def _params(cursor: str | None, trail: Sequence[str | None]) -> dict[str, str]:
    params: dict[str, str] = {}
    if cursor is not None:
        params["cursor"] = cursor
    back = encode_trail(trail)
    if back is not None:
        params["back"] = back
    return params
