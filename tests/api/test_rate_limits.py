"""Rate limits: strict per address and per clientId on login and refresh, per client on merchant routes.

Budgets are counted in the API process's memory on a monotonic clock; these tests give the app's
budgets a clock they move by hand, so "later" needs no waiting. Requests come from chosen peer
addresses (the ASGI ``client``), as a server sees them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.rate_limits import Budget, RateLimits
from billing.settings import RateLimitSettings
from tests.api.conftest import data_of, error_of, plan_body
from tests.conftest import Merchant, new_merchant, test_settings

pytestmark = pytest.mark.anyio


class Ticker:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Engine:
    """One API process with hand-clocked budgets, and HTTP clients from chosen addresses."""

    def __init__(self, app: Any, stack: AsyncExitStack, ticker: Ticker) -> None:
        self.app = app
        self.stack = stack
        self.ticker = ticker

    async def http(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return await self.stack.enter_async_context(client)

    async def merchant(self, address: str = "198.51.100.7") -> Merchant:
        return await new_merchant(await self.http(address), self.app.state.runtime)


@pytest.fixture
async def engines(db_url: str, tmp_path: Path, clock: Any) -> AsyncIterator[Callable[..., Any]]:
    """``await engines(**rate_limits)``: a started app with those budgets on a hand-moved clock."""
    async with AsyncExitStack() as stack:

        async def make(**limits: Any) -> Engine:
            settings = test_settings(db_url, tmp_path, rate_limits=limits)
            app = create_app(settings, clock=clock)
            ticker = Ticker()
            app.state.rate_limits = RateLimits(settings.rate_limits, now=ticker)
            await stack.enter_async_context(app.lifespan())
            return Engine(app, stack, ticker)

        yield make


def _limited(response: httpx.Response, code: str) -> int:
    """The 429 answer's Retry-After, after checking the catalog code and the envelope."""
    error_of(response, 429, code)
    assert response.json()["requestId"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def _login(http: httpx.AsyncClient, client_id: str, merchant: Merchant | None = None) -> httpx.Response:
    """A login attempt: signed by ``merchant`` when given, else with a signature that is wrong."""
    if merchant is not None:
        return await merchant.login()
    body = {"clientId": client_id, "timestamp": "1768478400", "signature": "AAAA"}
    return await http.post("/v1/auth/login", json=body)


async def test_login_is_limited_per_address(engines: Callable[..., Any]) -> None:
    engine = await engines(login_per_ip=3, login_per_client=100, period_seconds=60)
    attacker, neighbour = await engine.http("203.0.113.5"), await engine.http("203.0.113.6")
    for n in range(3):  # other client ids each time: only the address budget runs out
        error_of(await _login(attacker, f"cli_guess{n}"), 401, "7604")
    retry_after = _limited(await _login(attacker, "cli_guess9"), "7721")
    assert retry_after == 20  # one attempt back every 60 s / 3
    # Another address is not affected, and a real login from it works.
    merchant = await engine.merchant("203.0.113.6")
    assert merchant.access_token
    error_of(await _login(neighbour, "cli_guess0"), 401, "7604")
    # After Retry-After the address has one attempt again, and only one.
    engine.ticker.now += retry_after
    error_of(await _login(attacker, "cli_guess10"), 401, "7604")
    _limited(await _login(attacker, "cli_guess11"), "7721")


async def test_login_is_limited_per_client_id_whatever_the_address(engines: Callable[..., Any]) -> None:
    engine = await engines(login_per_ip=100, login_per_client=2)
    merchant = await engine.merchant("192.0.2.1")  # its first login spends one of two attempts
    other = await engine.merchant("192.0.2.1")
    elsewhere = await engine.http("192.0.2.99")
    error_of(await _login(elsewhere, merchant.id), 401, "7604")
    _limited(await _login(elsewhere, merchant.id), "7721")
    # The right signature from its usual address is refused too: the clientId's budget is spent.
    _limited(await merchant.login(), "7721")
    # Another client logs in from the same addresses.
    assert (await other.login()).status_code == 200
    engine.ticker.now += 30
    assert (await merchant.login()).status_code == 200


async def test_refresh_is_limited_per_address_and_per_client(engines: Callable[..., Any]) -> None:
    engine = await engines(login_per_ip=100, login_per_client=2)
    merchant = await engine.merchant("192.0.2.10")
    http = merchant.http

    async def refresh() -> httpx.Response:
        response = await http.post("/v1/auth/refresh", json={"refreshToken": merchant.refresh_token})
        if response.status_code == 200:
            merchant.refresh_token = response.json()["data"]["refreshToken"]
        return response

    data_of(await refresh())
    data_of(await refresh())
    kept = merchant.refresh_token
    retry_after = _limited(await refresh(), "7721")
    # The refused refresh did not use the token up: after Retry-After it still works.
    engine.ticker.now += retry_after
    assert merchant.refresh_token == kept
    data_of(await refresh())

    # Per address: a flood of unknown tokens from one address.
    strict = await engines(login_per_ip=2, login_per_client=100)
    flood = await strict.http("203.0.113.50")
    for _ in range(2):
        error_of(await flood.post("/v1/auth/refresh", json={"refreshToken": "nope"}), 401, "7603")
    _limited(await flood.post("/v1/auth/refresh", json={"refreshToken": "nope"}), "7721")


async def test_merchant_routes_are_limited_per_client(engines: Callable[..., Any]) -> None:
    engine = await engines(client_requests=3, period_seconds=30)
    busy, calm = await engine.merchant(), await engine.merchant()
    for _ in range(3):
        data_of(await busy.get("/v1/events"))
    retry_after = _limited(await busy.get("/v1/events"), "7720")
    assert retry_after == 10
    # A signed write refused for the budget leaves its signature unused: sent again as it is,
    # once the budget allows, it is accepted (not a replay).
    raw = json.dumps(plan_body()).encode()
    headers = busy.signed_headers(raw, method="POST", target="/v1/plans")
    headers |= {"Authorization": f"Bearer {busy.access_token}", "Content-Type": "application/json"}
    _limited(await busy.http.post("/v1/plans", content=raw, headers=headers), "7720")
    # The other client is not affected.
    data_of(await calm.get("/v1/events"))
    engine.ticker.now += retry_after
    data_of(await busy.http.post("/v1/plans", content=raw, headers=headers), 201)


async def test_turned_off_nothing_is_limited(engines: Callable[..., Any]) -> None:
    engine = await engines(enabled=False, client_requests=1, login_per_ip=1, login_per_client=1)
    merchant = await engine.merchant()
    for _ in range(3):
        assert (await merchant.login()).status_code == 200
        data_of(await merchant.get("/v1/events"))


def test_budget_bursts_then_spreads_out() -> None:
    ticker = Ticker()
    budget = Budget(4, 60.0, max_keys=100, now=ticker)
    assert [budget.take("a") for _ in range(4)] == [0.0] * 4
    assert budget.take("a") == pytest.approx(15.0)
    assert budget.take("b") == 0.0  # keys are independent
    ticker.now += 14.9
    assert budget.take("a") == pytest.approx(0.1)
    ticker.now += 0.1
    assert budget.take("a") == 0.0
    assert budget.take("a") == pytest.approx(15.0)
    ticker.now += 600  # idle: the whole burst is back, never more
    assert [budget.take("a") for _ in range(5)][-1] == pytest.approx(15.0)


def test_budget_forgets_idle_keys_first_when_full() -> None:
    ticker = Ticker()
    budget = Budget(2, 10.0, max_keys=3, now=ticker)
    budget.take("idle")
    ticker.now += 10  # "idle" is back at its full budget
    budget.take("busy")
    budget.take("busy")
    budget.take("other")
    budget.take("new")  # full: "idle" is forgotten, which changes nothing for it
    assert budget.take("busy") > 0  # the spent budget was kept
    assert len(budget._full_at) <= 3


def test_the_shipped_defaults() -> None:
    defaults = RateLimitSettings()
    assert (defaults.enabled, defaults.period_seconds) == (True, 60.0)
    assert (defaults.client_requests, defaults.login_per_ip, defaults.login_per_client) == (6000, 30, 10)
