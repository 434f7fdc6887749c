"""Idempotency-Key on POST, through HTTP, against a probe route that writes one event row per run."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlmodel import func, select

pytestmark = pytest.mark.anyio

EFFECTS = "/v1/probe/effects"


async def effects(runtime: Any, client_id: str | None = None) -> int:
    from billing.store.models import Event

    query = select(func.count()).select_from(Event).where(Event.type == "probe.effect")
    if client_id is not None:
        query = query.where(Event.client_id == client_id)
    async with runtime.sessions() as session:
        return int((await session.exec(query)).one())


async def records(runtime: Any) -> list[Any]:
    from billing.store.models import IdempotencyRecord

    async with runtime.sessions() as session:
        return list((await session.exec(select(IdempotencyRecord))).all())


def code(response: Any) -> str:
    return str(response.json()["errors"][0]["code"])


async def test_replay_returns_the_first_response_without_a_second_effect(merchant: Any, runtime: Any) -> None:
    first = await merchant.post(EFFECTS, json={"amount": 10}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    second = await merchant.post(EFFECTS, json={"amount": 10}, headers={"Idempotency-Key": "k-1"})
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await effects(runtime) == 1


async def test_without_a_key_every_post_runs(merchant: Any, runtime: Any) -> None:
    a = await merchant.post(EFFECTS, json={"amount": 10})
    b = await merchant.post(EFFECTS, json={"amount": 10})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["event"] != b.json()["event"]
    assert await effects(runtime) == 2
    assert await records(runtime) == []


async def test_same_key_with_a_different_body_is_7700(merchant: Any, runtime: Any) -> None:
    await merchant.post(EFFECTS, json={"amount": 10}, headers={"Idempotency-Key": "k-2"})
    other = await merchant.post(EFFECTS, json={"amount": 11}, headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 409
    assert code(other) == "7700"
    assert await effects(runtime) == 1


async def test_same_json_with_different_bytes_is_7700(merchant: Any) -> None:
    """The hash covers the exact bytes, as the signature does: re-serialising is a different request."""
    headers = {"Idempotency-Key": "k-bytes", "Content-Type": "application/json"}
    await merchant.post(EFFECTS, content=b'{"a": 1, "b": 2}', headers=headers)
    other = await merchant.post(EFFECTS, content=b'{"a":1,"b":2}', headers=headers)
    assert code(other) == "7700"


async def test_same_key_on_another_path_is_7700(merchant: Any) -> None:
    await merchant.post(EFFECTS, json={}, headers={"Idempotency-Key": "k-path"})
    other = await merchant.post("/v1/probe/echo", json={}, headers={"Idempotency-Key": "k-path"})
    assert code(other) == "7700"


async def test_keys_are_scoped_per_client(merchant: Any, merchant_factory: Any, runtime: Any) -> None:
    other = await merchant_factory(name="Other")
    a = await merchant.post(EFFECTS, json={"amount": 10}, headers={"Idempotency-Key": "shared"})
    b = await other.post(EFFECTS, json={"amount": 10}, headers={"Idempotency-Key": "shared"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert b.json()["client"] == other.id
    assert "idempotent-replayed" not in b.headers
    assert await effects(runtime, merchant.id) == 1
    assert await effects(runtime, other.id) == 1


async def test_concurrent_duplicates_produce_one_effect(concurrent_merchant_factory: Any, app: Any) -> None:
    merchant = await concurrent_merchant_factory(name="Burst")
    responses = await asyncio.gather(
        *(merchant.post(EFFECTS, json={"amount": 5}, headers={"Idempotency-Key": "burst"}) for _ in range(8))
    )
    assert await effects(app.state.runtime) == 1
    winners = [r for r in responses if r.status_code == 201]
    assert winners, [r.text for r in responses]
    assert {r.content for r in winners} == {winners[0].content}
    assert all(code(r) == "7701" for r in responses if r.status_code != 201)


async def test_duplicate_while_the_first_runs_is_7701_then_replayed(
    concurrent_merchant_factory: Any, app: Any
) -> None:
    merchant = await concurrent_merchant_factory(name="Slow")
    app.state.probe_gate = anyio.Event()
    app.state.probe_entered = anyio.Event()
    headers = {"Idempotency-Key": "slow"}
    results: dict[str, Any] = {}

    async def first() -> None:
        results["first"] = await merchant.post(EFFECTS, json={"amount": 1}, headers=headers)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await app.state.probe_entered.wait()  # the first request holds the key and is mid-handler
            duplicates = await asyncio.gather(
                *(merchant.post(EFFECTS, json={"amount": 1}, headers=headers) for _ in range(3))
            )
            app.state.probe_gate.set()
    assert [(r.status_code, code(r)) for r in duplicates] == [(409, "7701")] * 3
    assert results["first"].status_code == 201
    app.state.probe_gate = None
    replay = await merchant.post(EFFECTS, json={"amount": 1}, headers=headers)
    assert replay.content == results["first"].content
    assert replay.headers["idempotent-replayed"] == "true"
    assert await effects(app.state.runtime) == 1


async def test_client_errors_are_stored_and_replayed(merchant: Any, runtime: Any) -> None:
    body = {"fail": "conflict"}
    first = await merchant.post(EFFECTS, json=body, headers={"Idempotency-Key": "k-409"})
    assert (first.status_code, code(first)) == (409, "7050")
    again = await merchant.post(EFFECTS, json=body, headers={"Idempotency-Key": "k-409"})
    assert again.status_code == 409
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    [record] = await records(runtime)
    assert record.status_code == 409


async def test_a_crash_releases_the_key_so_the_retry_runs(app: Any, merchant: Any, runtime: Any) -> None:
    app.state.probe_crashes = 1
    crashed = await merchant.post(EFFECTS, json={"amount": 3}, headers={"Idempotency-Key": "k-500"})
    assert crashed.status_code == 500
    assert await records(runtime) == []
    retry = await merchant.post(EFFECTS, json={"amount": 3}, headers={"Idempotency-Key": "k-500"})
    assert retry.status_code == 201
    assert "idempotent-replayed" not in retry.headers
    assert await effects(runtime) == 1


async def test_an_expired_key_can_be_used_again(merchant: Any, runtime: Any, clock: Any) -> None:
    await merchant.post(EFFECTS, json={"amount": 1}, headers={"Idempotency-Key": "k-old"})
    clock.advance(timedelta(hours=24, seconds=1))
    await merchant.login()  # the access token lives 30 minutes
    fresh = await merchant.post(EFFECTS, json={"amount": 2}, headers={"Idempotency-Key": "k-old"})
    assert fresh.status_code == 201, fresh.text
    assert "idempotent-replayed" not in fresh.headers
    assert await effects(runtime) == 2


async def test_an_abandoned_in_progress_key_is_reclaimed(merchant: Any, runtime: Any, clock: Any) -> None:
    """A process that died mid-request leaves an in-progress record; it is not a 24-hour lock."""
    from billing.services import idempotency

    async with runtime.sessions() as session:
        await idempotency.claim(
            session,
            clock,
            ttl=timedelta(hours=24),
            client_id=merchant.id,
            key="k-dead",
            method="POST",
            path=EFFECTS,
            fingerprint="whatever",
        )
    blocked = await merchant.post(EFFECTS, json={}, headers={"Idempotency-Key": "k-dead"})
    assert code(blocked) == "7700"  # a different request: refused even while in progress
    clock.advance(idempotency.ABANDONED_AFTER + timedelta(seconds=1))
    await merchant.login()
    reclaimed = await merchant.post(EFFECTS, json={}, headers={"Idempotency-Key": "k-dead"})
    assert reclaimed.status_code == 201, reclaimed.text


async def test_purge_pass_deletes_only_expired_records(merchant: Any, runtime: Any, clock: Any) -> None:
    from billing.worker import run_pass_once

    await merchant.post(EFFECTS, json={"n": 1}, headers={"Idempotency-Key": "k-a"})
    clock.advance(timedelta(hours=23))
    await merchant.login()
    await merchant.post(EFFECTS, json={"n": 2}, headers={"Idempotency-Key": "k-b"})
    clock.advance(timedelta(hours=1, seconds=1))
    results = await run_pass_once(runtime, "test")
    # Two logins and two signed writes, all older than the 5-minute window.
    assert results["idempotency-purge"] == {"purged": 1, "signatures_purged": 4}
    assert [r.key for r in await records(runtime)] == ["k-b"]


@pytest.mark.parametrize("key", [b"", b"x" * 256, "café".encode(), b"tab\there"])
async def test_a_malformed_key_is_7000(merchant: Any, runtime: Any, key: bytes) -> None:
    response = await merchant.post(EFFECTS, json={}, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert code(response) == "7000"
    assert await effects(runtime) == 0


async def test_the_key_is_ignored_on_reads_and_logins(merchant: Any, runtime: Any) -> None:
    assert (await merchant.get("/v1/probe/whoami", headers={"Idempotency-Key": "r"})).status_code == 200
    ts = str(int(merchant.timestamp()) - 60)  # not the fixture's own login timestamp: that one is used
    login = await merchant.http.post(
        "/v1/auth/login",
        json={
            "clientId": merchant.id,
            "timestamp": ts,
            "signature": merchant.sign(f"{merchant.id}.{ts}".encode()),
        },
        headers={"Idempotency-Key": "login"},
    )
    assert login.status_code == 200
    assert await records(runtime) == []


async def test_the_signature_is_checked_before_any_replay(merchant: Any) -> None:
    await merchant.post(EFFECTS, json={"amount": 1}, headers={"Idempotency-Key": "k-sig"})
    unsigned = await merchant.post(
        EFFECTS, json={"amount": 1}, headers={"Idempotency-Key": "k-sig"}, sign=False
    )
    assert (unsigned.status_code, code(unsigned)) == (401, "7604")


async def test_a_real_route_outside_v1_is_idempotent(merchant: Any) -> None:
    """POST /transactions: without the key a retry would hit 7006 (externalId is unique per client)."""
    body = {"amount": 10, "currency": "USD", "userId": "u-1", "externalId": "order-77"}
    first = await merchant.post("/transactions", json=body, headers={"Idempotency-Key": "order-77"})
    assert first.status_code == 201, first.text
    retry = await merchant.post("/transactions", json=body, headers={"Idempotency-Key": "order-77"})
    assert (retry.status_code, retry.content) == (201, first.content)
    assert retry.headers["idempotent-replayed"] == "true"
    without_key = await merchant.post("/transactions", json=body)
    assert (without_key.status_code, code(without_key)) == (409, "7006")
