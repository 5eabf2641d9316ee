"""JSON from callers, within bounds: a size and a nesting depth checked before parsing.

`json.loads` recurses once per level of nesting, so a small body nested a thousand levels
deep raises `RecursionError`. The depth is measured first, without recursion and without
parsing: strings are cut out (a bracket inside one does not nest), and the remaining
brackets are counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from functions.errors import InvalidArgument

# The deepest nesting a caller's JSON may have: requests nest two or three levels.
MAX_DEPTH = 32

# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deep the arrays and objects of the JSON `text` nest (0 for a scalar). For
    malformed text it is an estimate, and parsing fails anyway."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def value_depth(value: Any) -> int:
    """How deep the lists and dicts of an already parsed `value` nest, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:  # deep enough to refuse: no need to walk the rest
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def loads_bounded(raw: bytes, *, what: str = "body") -> Any:
    """`raw` parsed as JSON; `InvalidArgument` naming the problem when it is malformed or
    nests deeper than MAX_DEPTH. The caller bounds its size."""
    try:
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as error:
        raise InvalidArgument(f"malformed JSON: {error}") from None
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{what} nests {depth} levels deep; the limit is {MAX_DEPTH}")
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidArgument(f"malformed JSON: {error}") from None
    except RecursionError:  # not reachable within MAX_DEPTH; never a 500 if it were
        raise InvalidArgument(f"{what} nests too deep; the limit is {MAX_DEPTH}") from None
