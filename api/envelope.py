"""The response envelope: ``{success, message, data}`` or ``{success: false, message, errors}``."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from billing.domain.errors import CATALOG

T = TypeVar("T")

ErrorCode = Annotated[
    str,
    WithJsonSchema(
        {
            "x-component": "ErrorCode",
            "type": "string",
            "enum": sorted(CATALOG),
            "description": "Catalog code (docs/errors.md), e.g. 7000 CHECK_PARAMETERS.",
            "examples": ["7000"],
        }
    ),
]


class Envelope(BaseModel, Generic[T]):
    """A successful answer."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    success: Literal[True] = True
    message: str = Field("OK", examples=["Plan created"])
    data: T


class ErrorEntry(BaseModel):
    """One reason the request failed."""

    code: ErrorCode
    message: str = Field(examples=["plan.amount has more than 2 decimal places for this currency."])
    field: str | None = Field(
        None,
        description="The request field at fault, as you sent it (e.g. plan.amount); absent when none is.",
        examples=["plan.amount"],
    )


class ErrorEnvelope(BaseModel):
    """A failed answer; ``requestId`` matches the server log line."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    success: Literal[False] = False
    message: str = Field(examples=["Check the parameters provided."])
    errors: list[ErrorEntry] = Field(min_length=1)
    requestId: str | None = Field(None, examples=["req_3f9c2a7b1d4e5f60"])


def ok(data: Any, message: str = "OK", **top_level: Any) -> dict[str, Any]:
    """The success envelope as a plain dict; every success answer is built here.

    `top_level` adds fields beside `data` where the Migo API has them (`trackingId`).
    """
    return {"success": True, "message": message, **top_level, "data": data}


def failure(
    message: str, errors: list[dict[str, Any]], request_id: str | None, **top_level: Any
) -> dict[str, Any]:
    """The error envelope as a plain dict; every failed answer is built here."""
    return {"success": False, "message": message, "errors": errors, "requestId": request_id, **top_level}
