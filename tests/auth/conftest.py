"""An app with probe routes under /v1, so auth and idempotency are tested before any resource route."""

import json
from typing import Any

import pytest
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import RawBody

from billing.domain.errors import BillingError
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime


@post("/v1/probe/echo", status_code=200)
async def probe_write(merchant: NamedDependency[AuthenticatedClient], body: RawBody) -> dict[str, Any]:
    return {"client": merchant.id, "bytes": len(body)}


@get("/v1/probe/whoami")
async def probe_read(merchant: NamedDependency[AuthenticatedClient]) -> dict[str, Any]:
    return {"client": merchant.id}


@post("/v1/probe/effects", status_code=201)
async def probe_effect(
    request: Request[Any, Any, Any],
    merchant: NamedDependency[AuthenticatedClient],
    runtime: NamedDependency[Runtime],
    body: RawBody,
) -> dict[str, Any]:
    """A write with a visible side effect: one ``probe.effect`` event row per run.

    ``app.state`` steers it: ``probe_crashes`` (crash that many runs before any effect),
    ``probe_gate`` (an anyio.Event the run waits on, after setting ``probe_entered``).
    A body ``{"fail": "conflict"}`` answers 409 without an effect.
    """
    from billing.store.ids import new_id
    from billing.store.models import Event

    state = request.app.state
    if state.get("probe_crashes", 0) > 0:
        state.probe_crashes -= 1
        raise RuntimeError("probe crash")
    if json.loads(body or b"{}").get("fail") == "conflict":
        raise BillingError("STATE_CONFLICT", message="probe refuses")
    if state.get("probe_gate") is not None:
        state.probe_entered.set()
        await state.probe_gate.wait()
    async with runtime.sessions() as session, session.begin():
        event_id = new_id("event")
        session.add(
            Event(
                id=event_id,
                client_id=merchant.id,
                type="probe.effect",
                payload={"bytes": len(body)},
                created_at=runtime.clock.now(),
            )
        )
    return {"event": event_id, "client": merchant.id}


@pytest.fixture
async def app(settings: Any, clock: Any) -> Any:
    from api.app import create_app

    application = create_app(settings, clock=clock)
    application.register(probe_write)
    application.register(probe_read)
    application.register(probe_effect)
    return application
