"""The response envelope: ``{success, message, data}`` or ``{success: false, message, errors}``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """A successful answer."""

    success: bool = True
    message: str = "OK"
    data: T


class ErrorEntry(BaseModel):
    code: str = Field(description="Catalog code, e.g. 7000")
    message: str
    field: str | None = None


class ErrorEnvelope(BaseModel):
    """A failed answer; ``requestId`` matches the server log line."""

    success: bool = False
    message: str
    errors: list[ErrorEntry]
    requestId: str | None = None


def ok(data: Any, message: str = "OK") -> dict[str, Any]:
    """A success envelope as a plain dict (for handlers that build their own responses)."""
    return {"success": True, "message": message, "data": data}
