"""Liveness and readiness."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Response, get
from litestar.di import NamedDependency
from pydantic import BaseModel

from api.envelope import ok
from api.schemas.wire import responses
from billing.services.health import check_database
from billing.services.runtime import Runtime


class HealthOut(BaseModel):
    database: Literal["ok", "unavailable"]


@get(
    "/health",
    operation_id="GetHealth",
    tags=["operations"],
    summary="Liveness and database readiness",
    responses=responses(200, HealthOut, "Healthy", 503, authenticated=False),
)
async def health(runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    """Answer 200 when the database answers, 503 (code 7019) when it does not."""
    database_ok = await check_database(runtime)
    body = ok({"database": "ok" if database_ok else "unavailable"}, "healthy" if database_ok else "unhealthy")
    if not database_ok:
        body = {
            "success": False,
            "message": "The database is unavailable.",
            "errors": [{"code": "7019", "message": "The database is unavailable."}],
            "data": body["data"],
        }
    return Response(body, status_code=200 if database_ok else 503)
