"""Liveness and readiness."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request, Response, get
from litestar.di import NamedDependency
from pydantic import BaseModel

from api.envelope import failure, ok
from api.errors import request_id_of
from api.schemas.wire import responses
from billing.domain.errors import BillingError
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
async def health(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> Response[dict[str, Any]]:
    """Answer 200 when the database answers, 503 (code 7019) when it does not."""
    if await check_database(runtime):
        return Response(ok({"database": "ok"}, "healthy"), status_code=200)
    unavailable = BillingError("SERVICE_UNAVAILABLE", message="The database is unavailable.")
    body = failure(
        unavailable.detail,
        [item.as_dict() for item in unavailable.items()],
        request_id_of(request),
        data={"database": "unavailable"},
    )
    return Response(body, status_code=503)
