"""The Jinja2 environment for the pages and the API reference: templates ship inside the
package, and everything is escaped unless a template says otherwise."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


@functools.cache
def environment() -> Environment:
    """Built at the first render, once per instance."""
    return Environment(
        loader=PackageLoader("functions.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
