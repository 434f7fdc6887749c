"""How a request body becomes JSON: exact decimals, a nesting limit and the media type checked.

Litestar parses ``JSONBody`` parameters through ``Request.json()``; the app uses this request
class (``AppConfig.request_class``) so that every JSON body, login included, is read the same way:

- JSON numbers with a fraction or exponent become ``Decimal`` (money never passes through float);
- a body nested deeper than ``MAX_JSON_DEPTH`` is refused (7000) before anything walks it;
- a body declared as another media type is refused (415, 7021); no Content-Type is read as JSON;
- an empty or malformed body is refused (7000) with a message that says so.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request

from billing.domain.errors import BillingError
from billing.domain.json_depth import MAX_JSON_DEPTH, nests_deeper_than

_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_STATE_KEY = "billing_json_body"
_TOO_DEEP = object()


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` and ``application/*+json``; an absent type counts as JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


def decode_json_body(body: bytes) -> Any:
    """Decode a request body as JSON with exact decimals, or raise the catalog error that says why."""
    if not body.strip():
        raise BillingError("CHECK_PARAMETERS", message="The request body is empty: send a JSON object.")
    try:
        value = _DECODER.decode(body)
    except RecursionError:
        value = _TOO_DEEP
    except msgspec.DecodeError as exc:
        raise BillingError("CHECK_PARAMETERS", message="The request body is not valid JSON.") from exc
    if value is _TOO_DEEP or nests_deeper_than(value, MAX_JSON_DEPTH):
        raise BillingError(
            "CHECK_PARAMETERS", message=f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels."
        )
    return value


class BillingRequest(Request[Any, Any, Any]):
    """The app's request class: ``json()`` as described in this module."""

    async def json(self) -> Any:
        state = self.scope.setdefault("state", {})
        if _STATE_KEY in state:
            return state[_STATE_KEY]
        if not is_json_media_type(self.headers.get("content-type", "")):
            raise BillingError("UNSUPPORTED_MEDIA_TYPE", field="Content-Type")
        value = decode_json_body(await self.body())
        state[_STATE_KEY] = value
        return value
