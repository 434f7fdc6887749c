"""Every answer is in the envelope, with a catalog code on failure and nothing internal leaked."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from litestar import post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient
from pydantic import BaseModel

pytestmark = pytest.mark.anyio


class Probe(BaseModel):
    name: str
    count: int


class Amount(BaseModel):
    amount: Decimal


async def test_health_answers_success_and_checks_database(client: Any) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["data"] == {"database": "ok"}
    assert response.headers["x-request-id"].startswith("req_")


async def test_health_reports_unavailable_database(settings: Any, clock: Any) -> None:
    from api.app import create_app

    broken = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": "sqlite+aiosqlite:////nonexistent/dir/x.db"}
            )
        }
    )
    async with AsyncTestClient(app=create_app(broken, clock=clock)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "7019"


async def test_unknown_route_is_7010(client: Any) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["errors"][0]["code"] == "7010"
    assert body["requestId"] == response.headers["x-request-id"]


async def test_wrong_method_is_catalogued(client: Any) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "7015"


async def test_openapi_schema_is_served(client: Any) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "billing-engine API"
    ui = await client.get("/schema")
    assert ui.status_code == 200
    assert "<html" in ui.text.lower()


def _probe_app(settings: Any, clock: Any) -> Any:
    """The real app plus two probe routes: one that validates a body, one that crashes."""
    from api.app import create_app

    @post("/probe/validate", sync_to_thread=False)
    def validate(data: JSONBody[Probe]) -> dict[str, Any]:
        return {"ok": data.count}

    @post("/probe/crash", sync_to_thread=False)
    def crash() -> None:
        raise RuntimeError("secret internal detail: password=hunter2")

    app = create_app(settings, clock=clock)
    app.register(validate)
    app.register(crash)
    return app


async def test_malformed_json_is_7000(settings: Any, clock: Any) -> None:
    async with AsyncTestClient(app=_probe_app(settings, clock), raise_server_exceptions=False) as client:
        response = await client.post(
            "/probe/validate",
            content=b'{"name": "x", "count": ',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["errors"][0]["code"] == "7000"


async def test_validation_failure_names_the_field(settings: Any, clock: Any) -> None:
    async with AsyncTestClient(app=_probe_app(settings, clock), raise_server_exceptions=False) as client:
        response = await client.post("/probe/validate", json={"name": "x", "count": "many"})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "7000"
    assert "count" in error["message"]


async def test_unexpected_error_is_7003_without_internals(
    settings: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncTestClient(app=_probe_app(settings, clock), raise_server_exceptions=False) as client:
        response = await client.post("/probe/crash")
    assert response.status_code == 500
    body = response.json()
    assert body["errors"][0]["code"] == "7003"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    request_id = response.headers["x-request-id"]
    assert body["requestId"] == request_id
    assert any(getattr(r, "exc_info", None) and request_id in r.getMessage() for r in caplog.records)


async def test_json_amounts_arrive_as_exact_decimals(settings: Any, clock: Any) -> None:
    """Money must never pass through float: a 17-significant-digit amount survives intact."""
    from api.app import create_app

    @post("/probe/amount", sync_to_thread=False)
    def echo(data: JSONBody[Amount]) -> dict[str, str]:
        return {"amount": str(data.amount)}

    app = create_app(settings, clock=clock)
    app.register(echo)
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            "/probe/amount",
            content=b'{"amount": 90071992547409.93}',
            headers={"content-type": "application/json"},
        )
    assert response.json()["amount"] == "90071992547409.93"


async def test_each_request_is_logged_once_with_its_id(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="billing.access")
    response = await client.get("/nope", headers={"x-request-id": "req_mine"})
    lines = [r for r in caplog.records if r.name == "billing.access"]
    assert response.headers["x-request-id"] == "req_mine"
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.path, line.status, line.request_id) == ("GET", "/nope", 404, "req_mine")
    assert line.duration_ms >= 0
