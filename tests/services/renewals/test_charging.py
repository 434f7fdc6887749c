"""The shared charge machinery (`billing.services.charging`), as the on-demand feature uses it too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.charging import (
    ChargeRequest,
    ChargeResult,
    MethodChoice,
    execute_charges,
)
from billing.services.runtime import Runtime
from billing.store.engine import Session, transaction
from billing.store.ids import new_id
from billing.store.models import Charge
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


async def _client_and_methods(runtime: Runtime, *cards: str) -> tuple[str, list[MethodChoice]]:
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=NOW)
        methods = [await factory.make_method(session, client, "u", now=NOW, card=c) for c in cards]
    return client.id, [MethodChoice(m.id, m.processor, m.token) for m in methods]


def _request(
    client_id: str, methods: list[MethodChoice], key: str | None = None, **extra: Any
) -> ChargeRequest:
    return ChargeRequest(
        key=key or f"bat_test:{new_id('batch')}",
        client_id=client_id,
        kind="on_demand",
        amount_minor=500,
        currency="USD",
        methods=tuple(methods),
        **extra,
    )


async def _rows(runtime: Runtime) -> list[Charge]:
    async with runtime.sessions() as session:
        return list((await session.exec(select(Charge).order_by(Charge.idempotency_key))).all())


class Recorder:
    """An `apply` callback that checks it runs inside the outcome's transaction."""

    def __init__(self) -> None:
        self.results: list[ChargeResult] = []
        self.states_seen: list[list[str]] = []

    async def __call__(self, session: Session, results: Sequence[ChargeResult]) -> None:
        self.results += results
        ids = [r.charge.charge_id for r in results if r.charge is not None]
        rows = (await session.exec(select(Charge).where(Charge.id.in_(ids)))).all()  # type: ignore[attr-defined]
        self.states_seen.append(sorted(r.state for r in rows))


async def test_default_then_fallback_with_outcomes_recorded_before_apply(engine_runtime: Runtime) -> None:
    client_id, methods = await _client_and_methods(engine_runtime, "4000000000000002", "4242424242424242")
    apply = Recorder()
    request = _request(client_id, methods, key="bat_1:0")
    [result] = await execute_charges(
        engine_runtime.sessions, engine_runtime.processors, [request], now=NOW, apply=apply
    )
    assert result.state == "succeeded"
    assert result.charge is not None
    assert result.charge.idempotency_key == "bat_1:0:m1"
    assert [(r.idempotency_key, r.state, r.decline_code) for r in result.records] == [
        ("bat_1:0", "failed", "7201"),
        ("bat_1:0:m1", "succeeded", None),
    ]
    assert apply.states_seen == [["succeeded"]]  # the row was final inside apply's transaction
    rows = await _rows(engine_runtime)
    assert [(r.idempotency_key, r.state, r.method_index) for r in rows] == [
        ("bat_1:0", "failed", 0),
        ("bat_1:0:m1", "succeeded", 1),
    ]
    assert rows[1].expected_settlement_date == date(2026, 1, 16)
    payload = result.records[1].event(request).to_json()
    assert (payload["amount"], payload["amountMinor"], payload["state"]) == ("5.00", 500, "succeeded")


async def test_every_method_failing_is_failed_and_hard_only_if_all_were_hard(engine_runtime: Runtime) -> None:
    client_id, methods = await _client_and_methods(engine_runtime, "4100000000000019", "4000000000009995")
    apply = Recorder()
    both = _request(client_id, methods)
    only_stolen = _request(client_id, methods[:1])
    results = await execute_charges(
        engine_runtime.sessions, engine_runtime.processors, [both, only_stolen], now=NOW, apply=apply
    )
    by_key = {r.request.key: r for r in results}
    assert (by_key[both.key].state, by_key[both.key].hard, by_key[both.key].decline_code) == (
        "failed",
        False,
        "7303",
    )
    assert (by_key[only_stolen.key].state, by_key[only_stolen.key].hard) == ("failed", True)


async def test_no_usable_method_fails_without_a_charge_row(engine_runtime: Runtime) -> None:
    client_id, _ = await _client_and_methods(engine_runtime)
    apply = Recorder()
    [result] = await execute_charges(
        engine_runtime.sessions, engine_runtime.processors, [_request(client_id, [])], now=NOW, apply=apply
    )
    assert (result.state, result.charge, result.decline_code) == ("failed", None, "7200")
    assert apply.results == [result]
    assert await _rows(engine_runtime) == []


async def test_a_taken_key_is_resumed_from_the_stored_rows(
    engine_runtime: Runtime, sandbox: SandboxProcessor
) -> None:
    """A crashed run left m0 failed and m1 pending: resume at m1 by lookup, report m0 too."""
    client_id, methods = await _client_and_methods(engine_runtime, "4000000000000002", "4242424242424242")
    request = _request(client_id, methods, key="bat_2:7")
    async with transaction(engine_runtime.sessions) as session:
        for index, state in ((0, "failed"), (1, "pending")):
            session.add(
                Charge(
                    id=new_id("charge"),
                    client_id=client_id,
                    kind="on_demand",
                    amount_minor=500,
                    currency="USD",
                    payment_method_id=methods[index].payment_method_id,
                    processor="sandbox",
                    method_index=index,
                    state=state,
                    idempotency_key=request.key_for(index),
                    created_at=NOW,
                    updated_at=NOW,
                    decline_code="7201" if state == "failed" else None,
                )
            )
    await sandbox.charge(methods[1].token, 500, "USD", idempotency_key="bat_2:7:m1")
    [result] = await execute_charges(
        engine_runtime.sessions, engine_runtime.processors, [request], now=NOW, apply=Recorder()
    )
    assert result.state == "succeeded"
    assert [(r.idempotency_key, r.state) for r in result.records] == [
        ("bat_2:7", "failed"),
        ("bat_2:7:m1", "succeeded"),
    ]
    assert len(sandbox.ledger) == 1  # type: ignore[arg-type]
    assert len(await _rows(engine_runtime)) == 2


class Silent:
    """A processor that never answers and cannot be reached for look-ups."""

    slug = "sandbox"

    def __init__(self) -> None:
        self.lookups = 0

    async def charge(self, *args: Any, **kwargs: Any) -> Outcome:
        return Outcome.unknown()

    async def lookup(self, key: str) -> Outcome | None:
        self.lookups += 1
        raise BillingError("PROCESSOR_ERROR")


async def test_an_outcome_that_cannot_be_learned_stays_unknown(engine_runtime: Runtime) -> None:
    client_id, methods = await _client_and_methods(engine_runtime, "4242424242424242", "4242424242424242")
    silent = Silent()
    apply = Recorder()
    [result] = await execute_charges(
        engine_runtime.sessions, {"sandbox": silent}, [_request(client_id, methods)], now=NOW, apply=apply,
        reconcile_rounds=2,
    )  # fmt: skip
    assert result.state == "unknown"
    assert silent.lookups == 2
    assert [(r.method_index, r.state) for r in await _rows(engine_runtime)] == [(0, "unknown")]  # no fallback


class Refusing:
    slug = "sandbox"

    def __init__(self, name: str) -> None:
        self.name = name

    async def charge(self, *args: Any, **kwargs: Any) -> Outcome:
        raise BillingError(self.name)

    async def lookup(self, key: str) -> Outcome | None:
        return None


@pytest.mark.parametrize(("name", "state"), [("GREATER_THAN_ZERO", "failed"), ("PROCESSOR_ERROR", "unknown")])
async def test_processor_errors_map_to_outcomes(engine_runtime: Runtime, name: str, state: str) -> None:
    client_id, methods = await _client_and_methods(engine_runtime, "4242424242424242")
    [result] = await execute_charges(
        engine_runtime.sessions, {"sandbox": Refusing(name)}, [_request(client_id, methods)], now=NOW,
        apply=Recorder(), reconcile_rounds=1,
    )  # fmt: skip
    assert result.state == state


class Crashing:
    """A processor whose client fails in an unexpected way."""

    slug = "sandbox"

    async def charge(self, *args: Any, **kwargs: Any) -> Outcome:
        raise RuntimeError("connection reset")

    async def lookup(self, key: str) -> Outcome | None:
        return None


async def test_a_failed_call_is_logged_with_the_charge_and_its_subscription(
    engine_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async with transaction(engine_runtime.sessions) as session:
        client = await factory.make_client(session, now=NOW)
        plan = await factory.make_plan(session, client, now=NOW)
        method = await factory.make_method(session, client, "u", now=NOW)
        subscription = await factory.enrol(session, client, plan, method, enrolled_at=NOW)
    choice = MethodChoice(method.id, method.processor, method.token)
    request = _request(client.id, [choice], subscription_id=subscription.id)
    caplog.set_level("ERROR", logger="billing.charging")
    [result] = await execute_charges(
        engine_runtime.sessions, {"sandbox": Crashing()}, [request], now=NOW, apply=Recorder(),
        reconcile_rounds=1,
    )  # fmt: skip
    assert result.state == "unknown"
    lines = [r for r in caplog.records if r.getMessage() == "processor call failed"]
    [row] = [r for r in await _rows(engine_runtime) if r.idempotency_key == request.key]
    assert lines  # the call, then the look-up's resend under the same key
    for line in lines:
        named = (line.charge_id, line.subscription_id, line.key)  # type: ignore[attr-defined]
        assert named == (row.id, subscription.id, row.idempotency_key)
        assert line.exc_info is not None
