"""Input hygiene at the edge: control characters and card numbers are refused before any handler runs.

- Path and query: no C0 control character or DEL (7000, naming ``path`` or the parameter), no card
  number in a query value (7204).
- JSON bodies: no C0 control character or DEL in any string or object key (tab, LF and CR are
  allowed inside strings), and no card number in any string outside ``cardInfo``, the one place a
  card number belongs (7204). The field is named as a path, e.g. ``data[2].metadata.note``.

The body is only decoded here when a cheap scan of the raw bytes finds an escaped control
character or a long digit run, so the common request pays one regular-expression pass.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from billing.domain.card_numbers import holds_card_number
from billing.domain.errors import BillingError
from billing.domain.text import has_control_character

# Subtrees where a card number is the expected content (sent to the processor, never stored).
CARD_FIELDS = frozenset({"cardInfo"})

# JSON escapes of control characters (\u0000-\u001f, \u007f, \b, \f) and digit runs long enough
# to be a card number; either one means the decoded body must be looked at.
_SUSPECT = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u007[fF]|\\[bf]|\d(?:[ -]?\d){12}")
_MAX_DEPTH = 64


def _control(field: str) -> BillingError:
    return BillingError(
        "CHECK_PARAMETERS",
        message=f"{field} contains a control character; send printable text.",
        field=field,
    )


def _card(field: str) -> BillingError:
    return BillingError(
        "INVALID_CARD_DATA",
        message=f"{field} looks like a card number. Card numbers go only in cardInfo, "
        "which is sent to the processor and never stored.",
        field=field,
    )


def check_text(field: str, value: str, *, allow_whitespace: bool = True, cards: bool = True) -> None:
    """Raise 7000 for a control character, 7204 for a card number (when ``cards``)."""
    if has_control_character(value, allow_whitespace=allow_whitespace):
        raise _control(field)
    if cards and holds_card_number(value):
        raise _card(field)


def _check_key(parent: str, key: str, *, cards: bool) -> None:
    """An object key is never echoed back when it is the problem: the error names its parent."""
    where = parent or "body"
    if has_control_character(key, allow_whitespace=False):
        raise BillingError(
            "CHECK_PARAMETERS", message=f"A key of {where} contains a control character.", field=where
        )
    if cards and holds_card_number(key):
        raise BillingError(
            "INVALID_CARD_DATA",
            message=f"A key of {where} looks like a card number. Card numbers go only in cardInfo.",
            field=where,
        )


def _join(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def check_document(document: Any) -> None:
    """Walk a decoded JSON document (iteratively, never deeper than a bound) and refuse bad strings."""
    stack: list[tuple[str, Any, bool, int]] = [("", document, True, 0)]
    while stack:
        field, value, cards, depth = stack.pop()
        if isinstance(value, str):
            check_text(field or "body", value, cards=cards)
        elif depth >= _MAX_DEPTH:
            continue  # nesting itself is limited where the body is parsed
        elif isinstance(value, dict):
            for key, item in value.items():
                key_text = str(key)
                _check_key(field, key_text, cards=cards)
                name = _join(field, key_text)
                stack.append((name, item, cards and key_text not in CARD_FIELDS, depth + 1))
        elif isinstance(value, list):
            stack.extend((_join(field, index), item, cards, depth + 1) for index, item in enumerate(value))


def check_target(path: str, query: bytes) -> None:
    """The decoded path and every query name and value."""
    if has_control_character(path, allow_whitespace=False):
        raise _control("path")
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        _check_key("query", name, cards=False)
        check_text(name, value, allow_whitespace=False)


async def refuse_unsafe_input(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: 7000 for control characters, 7204 for card numbers where they do not belong."""
    scope = connection.scope
    check_target(scope["path"], scope.get("query_string") or b"")
    if scope.get("method") not in {"POST", "PUT", "PATCH", "DELETE"} or not isinstance(connection, Request):
        return
    content_type = connection.headers.get("content-type", "")
    if "json" not in content_type.lower():
        return  # multipart uploads are checked row by row by the CSV intake
    body = await connection.body()  # cached: the handler reads the same bytes
    if not _SUSPECT.search(body):
        return
    try:
        document = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return  # not JSON (or too deep): the handler's parser answers 400
    check_document(document)
