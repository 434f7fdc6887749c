"""The sandbox processor behind HTTP: `billing sandbox serve` and its httpx client, on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

from billing.domain.errors import BillingError
from billing.processors.base import CardInfo
from billing.processors.http_sandbox import HttpSandboxProcessor
from tests.processors.sandbox_service import ROOT

pytestmark = pytest.mark.anyio


def card(number: str) -> CardInfo:
    return CardInfo(number=number, exp_month=12, exp_year=2040, cvv="123", holder_name="Ada Lovelace")


@pytest.fixture
async def processor(sandbox_server: Callable[..., str]) -> AsyncIterator[HttpSandboxProcessor]:
    client = HttpSandboxProcessor(sandbox_server(), timeout_seconds=5)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_charge_is_recorded_once_and_found_again_by_its_key(processor: HttpSandboxProcessor) -> None:
    token = await processor.tokenize(card("4242424242424242"), customer_ref="user-1")
    assert (token.brand, token.last4, token.exp_year) == ("visa", "4242", 2040)
    first = await processor.charge(token.token, 1999, "USD", idempotency_key="renewal/sub_1/0")
    again = await processor.charge(token.token, 1999, "USD", idempotency_key="renewal/sub_1/0")
    assert first.status == "succeeded"
    assert again == first
    assert await processor.lookup("renewal/sub_1/0") == first
    assert await processor.lookup("never-sent") is None
    ledger = await processor.ledger()
    assert ledger["entries"] == [
        {
            "key": "renewal/sub_1/0",
            "operation": "charge",
            "status": "succeeded",
            "amount_minor": 1999,
            "requests": 2,
            "money_moved": 1,
        }
    ]


async def test_declines_and_refusals_keep_their_catalog_names(processor: HttpSandboxProcessor) -> None:
    declining = await processor.tokenize(card("4000000000009995"), customer_ref="user-2")
    outcome = await processor.charge(declining.token, 500, "USD", idempotency_key="k-decline")
    assert (outcome.status, outcome.decline_code) == ("failed", "7303")
    with pytest.raises(BillingError) as invalid:
        await processor.tokenize(card("4242424242424241"), customer_ref="user-2")
    assert invalid.value.spec.name == "INVALID_CARD_DATA"
    approving = await processor.tokenize(card("4242424242424242"), customer_ref="user-2")
    with pytest.raises(BillingError) as reused:
        await processor.charge(approving.token, 501, "USD", idempotency_key="k-decline")
    assert reused.value.spec.name == "IDEMPOTENCY_KEY_REUSED"


async def test_an_authorization_can_be_voided_and_only_an_authorization(
    processor: HttpSandboxProcessor,
) -> None:
    token = await processor.tokenize(card("4242424242424242"), customer_ref="user-3")
    hold = await processor.authorize(token.token, 100, "USD", idempotency_key="k-auth")
    assert hold.status == "succeeded"
    assert hold.reference is not None
    await processor.void(hold.reference)
    charged = await processor.charge(token.token, 100, "USD", idempotency_key="k-charge")
    assert charged.reference is not None
    with pytest.raises(BillingError) as refused:
        await processor.void(charged.reference)
    assert refused.value.spec.name == "STATE_CONFLICT"


async def test_hundreds_of_calls_in_flight_over_a_bounded_pool(
    sandbox_server: Callable[..., str],
) -> None:
    client = HttpSandboxProcessor(sandbox_server(latency_ms=20), max_connections=96)
    outcomes: dict[int, str] = {}

    async def charge(n: int) -> None:
        outcome = await client.charge("tok_sbx_approve_abcdef", 100 + n, "USD", idempotency_key=f"k{n}")
        outcomes[n] = outcome.status

    try:
        async with anyio.create_task_group() as group:
            for n in range(400):
                group.start_soon(charge, n)
        ledger = await client.ledger()
    finally:
        await client.aclose()
    assert set(outcomes.values()) == {"succeeded"}
    assert len(outcomes) == 400
    assert sorted(e["key"] for e in ledger["entries"]) == sorted(f"k{n}" for n in range(400))


async def test_lost_requests_and_lost_answers_are_unknown_until_looked_up(
    sandbox_server: Callable[..., str],
) -> None:
    client = HttpSandboxProcessor(
        sandbox_server(timeout_rate=1.0, hang_seconds=5, seed=3), timeout_seconds=0.3
    )
    try:
        outcomes = [
            await client.charge("tok_sbx_approve_abcdef", 100, "USD", idempotency_key=f"lost-{n}")
            for n in range(8)
        ]
        found = [await client.lookup(f"lost-{n}") for n in range(8)]
        ledger = await client.ledger()
    finally:
        await client.aclose()
    assert {o.status for o in outcomes} == {"unknown"}
    assert ledger["lost_requests"] + ledger["lost_answers"] == 8
    assert ledger["lost_requests"] > 0
    assert ledger["lost_answers"] > 0
    # A lost answer moved the money (lookup finds it); a lost request never reached the ledger.
    assert sum(f is not None for f in found) == ledger["lost_answers"]
    assert all(f.status == "succeeded" for f in found if f is not None)


async def test_a_slow_answer_is_unknown_for_a_charge_and_an_error_for_the_rest(
    sandbox_server: Callable[..., str],
) -> None:
    client = HttpSandboxProcessor(sandbox_server(latency_ms=2000), timeout_seconds=0.2)
    try:
        outcome = await client.charge("tok_sbx_approve_abcdef", 100, "USD", idempotency_key="slow")
        with pytest.raises(BillingError) as failed:
            await client.lookup("slow")
    finally:
        await client.aclose()
    assert outcome.status == "unknown"
    assert failed.value.spec.name == "PROCESSOR_ERROR"


async def test_nobody_listening_is_unknown_for_a_charge_and_an_error_for_the_rest() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the calls: nothing listens there
    client = HttpSandboxProcessor(f"http://127.0.0.1:{port}", timeout_seconds=2)
    try:
        outcome = await client.charge("tok_sbx_approve_abcdef", 100, "USD", idempotency_key="nobody")
        with pytest.raises(BillingError) as failed:
            await client.tokenize(card("4242424242424242"), customer_ref="user-4")
    finally:
        await client.aclose()
    assert outcome.status == "unknown"
    assert failed.value.spec.name == "PROCESSOR_ERROR"


async def test_unreadable_requests_and_unknown_routes_are_refused_in_the_wire_format(
    sandbox_server: Callable[..., str],
) -> None:
    async with httpx.AsyncClient(base_url=sandbox_server()) as raw:
        not_json = await raw.post("/charge", content=b"{not json")
        missing = await raw.post("/charge", json={"token": "tok_sbx_approve_abcdef"})
        nowhere = await raw.get("/refunds")
    assert (not_json.status_code, not_json.json()) == (400, {"error": "bad request"})
    assert (missing.status_code, missing.json()) == (400, {"error": "bad request"})
    assert (nowhere.status_code, nowhere.json()) == (404, {"error": "no such route"})


def test_the_api_process_never_loads_the_sandbox_service(tmp_path: object) -> None:
    """`billing serve` imports the whole CLI and builds the API app: neither loads the sandbox service."""
    probe = (
        "import sys\n"
        "import billing.cli\n"
        "from api.app import create_app\n"
        "from billing.settings import load_settings\n"
        f"create_app(load_settings(database={{'url': 'sqlite+aiosqlite:///{tmp_path}/probe.db'}}))\n"
        "print(sorted(m for m in sys.modules if m.endswith(('sandbox_server', 'http_sandbox'))))\n"
        "print('litestar' in sys.modules and 'billing.processors.sandbox' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split("\n")[:2] == ["[]", "True"]
