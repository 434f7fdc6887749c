"""Wire conventions shared by the plan, transaction, subscription and payment-method schemas.

Input: JSON types are checked as sent. Litestar validates bodies in pydantic's lax mode, which
would turn `"3"` into 3 and `"yes"` into True; a money API should say "wrong type" instead, so
the annotated types below refuse anything but the JSON type they name (7000, field named).
Amounts are JSON numbers, decoded as exact decimals (see api/app.py) and never as floats.

Output: amounts are JSON numbers with exactly the currency's precision (`29.90`, `500`,
`1.250`). Neither pydantic's JSON mode nor msgspec can write a Decimal as a number, so
`render` dumps a response model in Python mode and embeds each Decimal as raw JSON text.
"""

from __future__ import annotations

import re
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from api.envelope import Envelope, ErrorEnvelope

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}")


def _wrong_type(expected: str) -> PydanticCustomError:
    return PydanticCustomError("wrong_type", "must be {expected}", {"expected": expected})


def _json_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise _wrong_type("a string")
    return value


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type("an integer")
    return value


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _wrong_type("a number")
    return value


def _json_boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _wrong_type("true or false")
    return value


def _email(value: Any) -> Any:
    if not isinstance(value, str):
        raise _wrong_type("a string")
    text = value.strip()
    if len(text) > 320 or not _EMAIL.fullmatch(text):
        raise PydanticCustomError("email", "must be an e-mail address (name@example.com)")
    return text


Text = Annotated[str, BeforeValidator(_json_string), StringConstraints(strip_whitespace=True, min_length=1)]
"""A non-empty JSON string."""
Integer = Annotated[int, BeforeValidator(_json_integer)]
"""A JSON integer (not a string of digits, not 3.0, not a boolean)."""
Number = Annotated[Decimal, BeforeValidator(_json_number), Field(json_schema_extra={"type": "number"})]
"""A JSON number, kept exact."""
Amount = Annotated[Decimal, Field(json_schema_extra={"type": "number", "examples": [29.9]})]
"""An amount in a response: a JSON number with the currency's precision (see `render`)."""
Flag = Annotated[bool, BeforeValidator(_json_boolean)]
"""A JSON boolean."""
Email = Annotated[str, BeforeValidator(_email)]
"""An e-mail address."""


class WireModel(BaseModel):
    """Request bodies: camelCase on the wire, unknown fields ignored (Migo clients send extras)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class OutModel(BaseModel):
    """Response bodies: camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def _raw_numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return msgspec.Raw(str(value).encode())
    if isinstance(value, dict):
        return {key: _raw_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_raw_numbers(item) for item in value]
    return value


def render(data: BaseModel | list[BaseModel], message: str) -> dict[str, Any]:
    """The success envelope for a response model (or a list of them), amounts as JSON numbers."""
    if isinstance(data, list):
        dumped: Any = [item.model_dump(mode="python", by_alias=True) for item in data]
    else:
        dumped = data.model_dump(mode="python", by_alias=True)
    return {"success": True, "message": message, "data": _raw_numbers(dumped)}


_ERROR_TEXT = {
    400: "Bad parameters: 7000 (field named in `errors[].field`), 7001, 7002, 7016, 7204, ...",
    401: "Missing or bad access token (7600, 7601, 7602) or request signature (7604, 7616).",
    402: "The card was declined: 7201, 7202, 7203, 7303.",
    403: "The body or query names another client (7605).",
    404: "Unknown id, or another client's (7040, 7041, 7042, 7005, 7200).",
    409: "State conflict: 7006, 7050, 7051, 7052, 7700.",
    502: "The processor did not answer (7205); safe to check back, never charged twice.",
}


def responses(ok_status: int, model: Any, description: str, *errors: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses of a handler: the enveloped success model and the error envelopes."""
    specs = {ok_status: ResponseSpec(data_container=Envelope[model], description=description)}
    for status in (400, 401, *errors):
        specs[status] = ResponseSpec(
            data_container=ErrorEnvelope,
            description=_ERROR_TEXT.get(status, HTTPStatus(status).phrase),
            examples=[
                Example(
                    value={"success": False, "message": "…", "errors": [{"code": "7000", "message": "…"}]}
                )
            ],
        )
    return specs
