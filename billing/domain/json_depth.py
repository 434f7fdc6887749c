"""How deep decoded JSON may nest: request bodies and metadata are walked, so their depth is bounded."""

from __future__ import annotations

from typing import Any, Final

MAX_JSON_DEPTH: Final = 32
"""Deepest nesting of objects and arrays accepted in a request body or a metadata value."""


def nests_deeper_than(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests dicts/lists more than ``limit`` levels deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return False
