"""An app with two probe routes under /v1, so auth is tested before any resource route."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import RawBody

from billing.services.auth import AuthenticatedClient


@post("/v1/probe/echo", status_code=200)
async def probe_write(merchant: NamedDependency[AuthenticatedClient], body: RawBody) -> dict[str, Any]:
    return {"client": merchant.id, "bytes": len(body)}


@get("/v1/probe/whoami")
async def probe_read(merchant: NamedDependency[AuthenticatedClient]) -> dict[str, Any]:
    return {"client": merchant.id}


@pytest.fixture
async def app(settings: Any, clock: Any) -> Any:
    from api.app import create_app

    application = create_app(settings, clock=clock)
    application.register(probe_write)
    application.register(probe_read)
    return application
