"""An in-progress key taken over as abandoned: the slow first request and the retry never mix up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.services import idempotency
from billing.store import idempotency as store
from billing.store.models import IdempotencyRecord

pytestmark = pytest.mark.anyio

PATH = "/v1/subscriptions/charges"


async def claim(runtime: Any, client_id: str, key: str = "k") -> Any:
    async with runtime.sessions() as session:
        return await idempotency.claim(
            session,
            runtime.clock,
            ttl=timedelta(hours=24),
            client_id=client_id,
            key=key,
            method="POST",
            path=PATH,
            fingerprint="same-request",
        )


async def the_record(runtime: Any) -> IdempotencyRecord:
    async with runtime.sessions() as session:
        [record] = (await session.exec(select(IdempotencyRecord))).all()
    return record


async def test_an_answer_stored_after_the_retry_looked_is_replayed_not_deleted(
    merchant: Any, runtime: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry reads the record while it is still in progress and judges it abandoned; the first
    request commits its answer before the retry deletes it (on PostgreSQL the read and the delete
    are separate statements). The retry must replay that answer, not run again.

    The retry is handed the in-progress snapshot it would have read; the answer is already there.
    """
    first = await claim(runtime, merchant.id)
    in_progress = await the_record(runtime)
    clock.advance(idempotency.ABANDONED_AFTER + timedelta(seconds=1))
    async with runtime.sessions() as session, session.begin():
        await idempotency.record_response(
            session, first, status_code=202, body=b'{"batch":1}', content_type="application/json"
        )
    real_get = store.get_record
    reads = {"n": 0}

    async def stale_first_read(session: Any, client_id: str, key: str) -> Any:
        reads["n"] += 1
        return in_progress if reads["n"] == 1 else await real_get(session, client_id, key)

    monkeypatch.setattr(store, "get_record", stale_first_read)
    outcome = await claim(runtime, merchant.id)
    assert reads["n"] >= 1
    assert isinstance(outcome, idempotency.StoredResponse)
    assert (outcome.status_code, outcome.body) == (202, b'{"batch":1}')


async def test_the_slow_request_cannot_settle_the_retrys_claim(
    merchant: Any, runtime: Any, clock: Any
) -> None:
    """SQLite gives the retry's record the deleted record's id; the slow request's late release,
    answer or in-transaction record must not touch it."""
    slow = await claim(runtime, merchant.id)
    clock.advance(idempotency.ABANDONED_AFTER + timedelta(seconds=1))
    retry = await claim(runtime, merchant.id)
    assert isinstance(retry, idempotency.Claim)

    async with runtime.sessions() as session:
        await idempotency.release(session, slow)
    async with runtime.sessions() as session:
        await idempotency.finish(session, slow, status_code=201, body=b"slow", content_type=None)
    record = await the_record(runtime)
    assert (record.id, record.status_code) == (retry.record_id, None)

    async with runtime.sessions() as session:
        await idempotency.finish(session, retry, status_code=201, body=b"retry", content_type=None)
    record = await the_record(runtime)
    assert (record.status_code, record.response_body) == (201, b"retry")


async def test_a_stored_answer_survives_a_later_5xx_and_release(merchant: Any, runtime: Any) -> None:
    """What makes the money routes safe: once the answer is stored with the effect, neither the
    edge's 5xx path nor a crash release can free the key."""
    first = await claim(runtime, merchant.id)
    async with runtime.sessions() as session, session.begin():
        await idempotency.record_response(
            session, first, status_code=202, body=b"queued", content_type="application/json"
        )
    async with runtime.sessions() as session:
        await idempotency.finish(session, first, status_code=500, body=b"oops", content_type=None)
    async with runtime.sessions() as session:
        await idempotency.release(session, first)
    replay = await claim(runtime, merchant.id)
    assert isinstance(replay, idempotency.StoredResponse)
    assert (replay.status_code, replay.body) == (202, b"queued")
