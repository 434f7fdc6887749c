"""Wire conventions shared by the plan, transaction, subscription and payment-method schemas.

Input: JSON types are checked as sent. Litestar validates bodies in pydantic's lax mode, which
would turn `"3"` into 3 and `"yes"` into True; a money API should say "wrong type" instead, so
the annotated types below refuse anything but the JSON type they name (7000, field named).
Amounts are money: a JSON number (decoded as an exact decimal, never a float; see
api/requests.py) or a decimal string such as `"29.90"`, which is what a generated client
sends to keep an amount exact.

Output: amounts are JSON numbers with exactly the currency's precision (`29.90`, `500`,
`1.250`). Neither pydantic's JSON mode nor msgspec can write a Decimal as a number, so
`render` dumps a response model in Python mode and embeds each Decimal as raw JSON text.

Each annotated type carries the JSON Schema it is published with (api/openapi), so the
document says exactly what the validator accepts.
"""

from __future__ import annotations

import re
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from api.envelope import Envelope, ErrorEnvelope, ok
from billing.domain.money import CURRENCY_EXPONENTS

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}")

# A positive amount in plain decimal notation: digits, optionally a point and more digits, not
# all zero. No sign, exponent, spaces or thousands separators.
DECIMAL_TEXT_PATTERN = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$"
_DECIMAL_TEXT = re.compile(DECIMAL_TEXT_PATTERN)

MONEY_PRECISION = (
    "Amounts have at most the currency's decimals (ISO 4217 minor unit): 2 for most currencies "
    "(USD 29.90), 0 for JPY, KRW, CLP and others (JPY 500), 3 for BHD, IQD, JOD, KWD, LYD, OMR, TND "
    "(KWD 1.250), 4 for CLF and UYW; more decimals answer 7002, zero or less 7001."
)
MONEY_IN_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": DECIMAL_TEXT_PATTERN, "examples": ["29.90"]},
        {"type": "number", "exclusiveMinimum": 0, "examples": [29.9]},
    ],
    "description": (
        'Money, exact: a decimal string ("29.90", recommended for generated clients: no float is '
        "involved) or a JSON number (read as an exact decimal, never a float). " + MONEY_PRECISION
    ),
}
MONEY_OUT_SCHEMA: dict[str, Any] = {
    "type": "number",
    "examples": [29.9],
    "description": (
        "Money: a JSON number written with exactly the currency's decimals (29.90, 500, 1.250). "
        "Read it as a decimal (Python: Decimal(str(value)), exact up to 15 significant digits). "
        + MONEY_PRECISION
    ),
}


def _wrong_type(expected: str) -> PydanticCustomError:
    return PydanticCustomError("wrong_type", "must be {expected}", {"expected": expected})


def _json_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise _wrong_type("a string")
    return value


def _json_integer(value: Any) -> Any:
    # JSON has one number type: 30.0 is the integer 30 (as JSON Schema says), "30" is not.
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type("an integer")
    return value


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _wrong_type("a number")
    return value


def _money(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise PydanticCustomError(
                "money", 'must be a positive decimal number, as a JSON number or a string like "29.90"'
            )
        return Decimal(text)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _wrong_type('a number or a decimal string like "29.90"')
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


# Printable text: no C0 control character or DEL, except tab, line feed and carriage return
# (api/input_hygiene.py refuses them at the edge; the pattern publishes the rule).
_PRINTABLE = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# A visible character, spelled out rather than `\S`: regex engines (and schema-driven generators)
# disagree on whether `\s` covers Unicode spaces such as U+00A0, which Python's strip() removes.
_VISIBLE = r"[^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
Text = Annotated[
    str,
    BeforeValidator(_json_string),
    StringConstraints(
        strip_whitespace=True, min_length=1, pattern=rf"^{_PRINTABLE}*{_VISIBLE}{_PRINTABLE}*$"
    ),
]
"""A JSON string with at least one non-space character and no control characters (leading and
trailing spaces are dropped)."""
Line = Annotated[
    str,
    BeforeValidator(_json_string),
    StringConstraints(
        strip_whitespace=True, min_length=1, pattern=rf"^[^\x00-\x1f\x7f]*{_VISIBLE}[^\x00-\x1f\x7f]*$"
    ),
]
"""Text on one line: no line break or tab either (identifiers that may end up near a mail header)."""
Integer = Annotated[int, BeforeValidator(_json_integer)]
"""A JSON integer (3 or 3.0; not a string of digits, not 3.5, not a boolean)."""


class _JsonNumberSchema:
    """Publish a Decimal as a JSON number (pydantic's default also offers a string), bounds kept."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        for branch in schema.get("anyOf", ()):
            if branch.get("type") == "number":
                return dict(branch)
        return schema


Number = Annotated[Decimal, BeforeValidator(_json_number), _JsonNumberSchema()]
"""A JSON number, kept exact."""
Money = Annotated[Decimal, BeforeValidator(_money), WithJsonSchema(MONEY_IN_SCHEMA)]
"""An amount in a request: a JSON number or a decimal string, kept exact."""
Amount = Annotated[Decimal, WithJsonSchema(MONEY_OUT_SCHEMA)]
"""An amount in a response: a JSON number with the currency's precision (see `render`)."""
Currency = Annotated[
    str,
    BeforeValidator(_json_string),
    WithJsonSchema(
        {
            "x-component": "Currency",
            "type": "string",
            "enum": sorted(CURRENCY_EXPONENTS),
            "description": "ISO 4217 code; other codes answer 7016.",
        }
    ),
]
"""An ISO 4217 currency code (checked by the service: 7016 for an unknown one)."""
CurrencyOut = Annotated[
    str,
    WithJsonSchema(
        {
            "x-component": "Currency",
            "type": "string",
            "enum": sorted(CURRENCY_EXPONENTS),
            "description": "ISO 4217 code; other codes answer 7016.",
        }
    ),
]
"""A currency code in a response."""
Flag = Annotated[bool, BeforeValidator(_json_boolean)]
"""A JSON boolean."""
Email = Annotated[
    str,
    BeforeValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 320, "examples": ["ada@example.com"]}),
]
"""An e-mail address."""


class WireModel(BaseModel):
    """Request bodies: camelCase on the wire, unknown fields ignored (Migo clients send extras)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class OutModel(BaseModel):
    """Response bodies: camelCase on the wire; every field is always present (null when empty)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, json_schema_serialization_defaults_required=True
    )


def _raw_numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return msgspec.Raw(str(value).encode())
    if isinstance(value, dict):
        return {key: _raw_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_raw_numbers(item) for item in value]
    return value


def render(data: BaseModel | list[BaseModel], message: str, **top_level: Any) -> dict[str, Any]:
    """The success envelope for a response model (or a list of them), amounts as JSON numbers."""
    if isinstance(data, list):
        dumped: Any = [item.model_dump(mode="python", by_alias=True) for item in data]
    else:
        dumped = data.model_dump(mode="python", by_alias=True)
    return ok(_raw_numbers(dumped), message, **top_level)


ERROR_TEXT = {
    400: "Bad parameters: 7000 (field named in `errors[].field`), 7001, 7002, 7016, 7204, ...",
    401: "Missing or bad access token (7600, 7601, 7602) or request signature (7604, 7616).",
    402: "The card was declined: 7201, 7202, 7203, 7303.",
    403: "The body or query names another client (7605), or a sandbox-only operation (7020).",
    404: "Unknown id, or another client's (7040, 7041, 7042, 7043, 7044, 7005, 7200).",
    409: "State conflict (7006, 7050, 7051, 7052, 7060, 7061) or Idempotency-Key conflict (7700, 7701).",
    502: "The processor did not answer (7205); safe to check back, never charged twice.",
    503: "A required service is unavailable (7019); retry later.",
}


def responses(
    ok_status: int, model: Any, description: str, *errors: int, authenticated: bool = True
) -> dict[int, ResponseSpec]:
    """OpenAPI responses of a handler: the enveloped success model and its own error statuses.

    ``model`` None: the success answer is not JSON (the contract adds its media type).
    The statuses every operation can answer (400, 401, 405, 413, 415, 500, ...) are added by
    the contract (api/openapi) from the route's kind; `errors` are the ones this route adds.
    """
    container = Envelope[model] if model is not None else None
    specs = {
        ok_status: ResponseSpec(data_container=container, description=description, generate_examples=False)
    }
    for status in ((400, 401) if authenticated else ()) + errors:
        specs[status] = ResponseSpec(
            data_container=ErrorEnvelope,
            description=ERROR_TEXT.get(status, HTTPStatus(status).phrase),
            generate_examples=False,
        )
    return specs
