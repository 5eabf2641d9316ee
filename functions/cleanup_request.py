"""The cleanup request: what a `cleanup_jobs` call asks for, from its query string and body.

Cloud Scheduler POSTs with no body; a person asks for a dry run with `?dry_run=true` or
`{"dry_run": true}`. Anything else is refused before the cleanup starts: a misspelt
`dry_run` must never run a real cleanup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from functions.errors import InvalidArgument

MAX_BODY_BYTES = 4 * 1024


class CleanupRequest(BaseModel):
    """`dry_run`: report what the cleanup would delete and re-enqueue, and change nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool = False

    @classmethod
    def parse(
        cls, query: Mapping[str, Sequence[str]], body: Mapping[str, Any] | None
    ) -> CleanupRequest:
        """From the query string (each name with its values; `true`/`false`, `1`/`0`
        and the like) and the JSON body (a JSON boolean), which must agree when both
        are given. Invalid input raises pydantic's `ValidationError` or `InvalidArgument`
        (a 400 at the edge)."""
        for name, values in query.items():
            if len(values) > 1:
                raise InvalidArgument(f"query parameter {name!r} is given {len(values)} times")
        from_query = cls.model_validate({name: values[0] for name, values in query.items()})
        if body is None:
            return from_query
        from_body = cls.model_validate(body, strict=True)
        if query and body and from_query != from_body:
            raise InvalidArgument(
                f"dry_run is {from_query.dry_run} in the query and {from_body.dry_run}"
                " in the body: give it once"
            )
        return from_query if query else from_body
