"""Idempotency-Key on the money-moving POSTs: once a batch is committed, a retry replays it.

The answer is stored in the transaction that inserts the batch, so nothing that fails after that
commit (a lost commit acknowledgement, an error while answering, a process killed before the
key is settled) can let a retry with the same key queue the batch a second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
from sqlmodel import func, select

import api.controllers.charges as charges_controller
import api.idempotency as idempotency_edge
from api.request_session import RequestDatabase
from billing.domain.errors import BillingError
from billing.services import idempotency, ondemand
from billing.services.ondemand import intake as ondemand_intake
from billing.store.models import Batch, BatchItem, IdempotencyRecord

pytestmark = pytest.mark.anyio

CHARGES = "/v1/subscriptions/charges"
UPLOAD = "/v1/subscriptions/charges/upload-csv"
_EXACT_JSON = msgspec.json.Encoder(decimal_format="number")


async def batch_count(runtime: Any) -> int:
    async with runtime.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(Batch))).one())


async def item_count(runtime: Any) -> int:
    async with runtime.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(BatchItem))).one())


def fail_after_the_batch_commits(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The first session that commits a batch raises once the commit is done: a lost commit ack.

    API requests run their sessions on the request's own connection (api/request_session.py), so
    the request-bound sessions are wrapped as well as the runtime's.
    """
    failures = {"raised": 0}

    def failing(real: Any) -> Any:
        @asynccontextmanager
        async def sessions() -> AsyncIterator[Any]:
            async with real() as session:
                yield session
                holds_a_batch = any(isinstance(obj, Batch) for obj in session.identity_map.values())
            if holds_a_batch and failures["raised"] == 0:
                failures["raised"] += 1
                raise ConnectionResetError("connection lost after COMMIT")

        return sessions

    monkeypatch.setattr(runtime, "sessions", failing(runtime.sessions))
    bound_runtime = RequestDatabase.bound_runtime

    async def failing_bound_runtime(self: RequestDatabase) -> Any:
        bound = await bound_runtime(self)
        return dataclasses.replace(bound, sessions=failing(bound.sessions))

    started = RequestDatabase.started.fget
    assert started is not None

    def failing_started(self: RequestDatabase) -> Any:
        bound = started(self)
        return None if bound is None else dataclasses.replace(bound, sessions=failing(bound.sessions))

    monkeypatch.setattr(RequestDatabase, "bound_runtime", failing_bound_runtime)
    monkeypatch.setattr(RequestDatabase, "started", property(failing_started))
    return failures


async def post_json(merchant: Any, body: Any, key: str) -> Any:
    return await merchant.post(
        CHARGES,
        content=_EXACT_JSON.encode(body),
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )


async def test_a_retry_of_an_answered_batch_replays_the_same_bytes(
    merchant: Any, subscriptions: Any, runtime: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    body = {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": Decimal("5.00")}]}
    first = await post_json(merchant, body, "batch-ok")
    retry = await post_json(merchant, body, "batch-ok")
    assert (first.status_code, retry.status_code) == (202, 202)
    assert retry.content == first.content
    assert retry.headers["idempotent-replayed"] == "true"
    assert first.headers["content-type"].startswith("application/json")
    assert await batch_count(runtime) == 1


async def test_retry_after_a_failure_while_answering_queues_one_batch(
    merchant: Any, subscriptions: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's case: building the answer fails once; the retry must not queue a second batch."""
    sub = await subscriptions.one(merchant.id)
    body = {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": Decimal("5.00")}]}
    real = charges_controller.batch_received
    calls = {"n": 0}

    def flaky(receipt: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("lost while answering")
        return real(receipt)

    monkeypatch.setattr(charges_controller, "batch_received", flaky)
    first = await post_json(merchant, body, "batch-0001")
    second = await post_json(merchant, body, "batch-0001")
    assert first.status_code == 500
    assert second.status_code == 202, second.text
    assert await batch_count(runtime) == 1


async def test_a_lost_commit_ack_on_a_json_batch_is_replayed_not_queued_again(
    merchant: Any, subscriptions: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = await subscriptions.one(merchant.id)
    body = {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": Decimal("5.00")}]}
    failures = fail_after_the_batch_commits(runtime, monkeypatch)

    first = await post_json(merchant, body, "batch-ack")
    assert first.status_code == 500
    assert failures["raised"] == 1
    retry = await post_json(merchant, body, "batch-ack")
    assert retry.status_code == 202, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    async with runtime.sessions() as session:
        [batch] = (await session.exec(select(Batch))).all()
    assert retry.json()["data"]["batchId"] == batch.id
    assert await item_count(runtime) == 1
    again = await post_json(merchant, body, "batch-ack")
    assert again.content == retry.content


async def test_a_lost_commit_ack_on_a_csv_upload_is_replayed_not_queued_again(
    merchant: Any, subscriptions: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = await subscriptions.one(merchant.id)
    content = f"subscriptionId,amount\n{sub.id},5.00\n{sub.id},1.25\n".encode()
    failures = fail_after_the_batch_commits(runtime, monkeypatch)

    # A retry sends the same bytes: build the multipart body (and its boundary) once.
    form = httpx.Request(
        "POST",
        "http://x",
        files={"file": ("charges.csv", content, "text/csv")},
        data={"clientId": merchant.id},
    )
    form_body = form.read()

    async def upload() -> Any:
        return await merchant.post(
            UPLOAD,
            content=form_body,
            headers={"Content-Type": form.headers["Content-Type"], "Idempotency-Key": "upload-ack"},
        )

    first = await upload()
    assert first.status_code == 500
    assert failures["raised"] == 1
    retry = await upload()
    assert retry.status_code == 202, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    async with runtime.sessions() as session:
        [batch] = (await session.exec(select(Batch))).all()
    assert retry.json()["trackingId"] == batch.tracking_id
    assert await item_count(runtime) == 2


async def test_a_process_killed_after_the_commit_leaves_a_key_that_replays(
    merchant: Any, subscriptions: Any, runtime: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge never settles the key (the process died); even after the abandoned-claim window
    a retry replays the committed batch instead of running again."""

    async def never(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(idempotency_edge, "_settle", never)
    monkeypatch.setattr(idempotency_edge, "_release", never)
    sub = await subscriptions.one(merchant.id)
    body = {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": Decimal("5.00")}]}
    fail_after_the_batch_commits(runtime, monkeypatch)

    assert (await post_json(merchant, body, "batch-killed")).status_code == 500
    clock.advance(idempotency.ABANDONED_AFTER + timedelta(minutes=1))
    await merchant.login()
    retry = await post_json(merchant, body, "batch-killed")
    assert retry.status_code == 202, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert await batch_count(runtime) == 1


async def test_a_failed_intake_keeps_the_key_free_for_the_retry(
    merchant: Any, subscriptions: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing committed (the insert itself failed): the retry runs and queues the batch once."""
    sub = await subscriptions.one(merchant.id)
    body = {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": Decimal("5.00")}]}
    real = ondemand_intake.store.insert_items
    calls = {"n": 0}

    async def flaky(session: Any, rows: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("lost before COMMIT")
        await real(session, rows)

    monkeypatch.setattr(ondemand_intake.store, "insert_items", flaky)
    assert (await post_json(merchant, body, "batch-rolled-back")).status_code == 500
    assert await batch_count(runtime) == 0
    retry = await post_json(merchant, body, "batch-rolled-back")
    assert retry.status_code == 202, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert await batch_count(runtime) == 1


async def test_a_request_whose_claim_was_taken_over_queues_nothing(
    merchant: Any, subscriptions: Any, runtime: Any, clock: Any
) -> None:
    """A request slower than the abandoned-claim window loses its key to the retry; its own
    batch is rolled back with the answer it could not store, so only the retry's batch exists."""
    sub = await subscriptions.one(merchant.id)
    items = [{"subscriptionId": sub.id, "amount": Decimal("5.00")}]

    async def claim() -> Any:
        async with runtime.sessions() as session:
            return await idempotency.claim(
                session,
                clock,
                ttl=timedelta(hours=24),
                client_id=merchant.id,
                key="slow-batch",
                method="POST",
                path=CHARGES,
                fingerprint="same-request",
            )

    slow = await claim()
    clock.advance(idempotency.ABANDONED_AFTER + timedelta(seconds=1))
    retry = await claim()
    assert isinstance(slow, idempotency.Claim)
    assert isinstance(retry, idempotency.Claim)

    async def queue(claimed: idempotency.Claim, answer: bytes) -> None:
        async with runtime.sessions() as session, session.begin():
            await ondemand.receive_json_batch(session, clock, client_id=merchant.id, data=items)
            await idempotency.record_response(
                session, claimed, status_code=202, body=answer, content_type="application/json"
            )

    with pytest.raises(BillingError) as refused:
        await queue(slow, b"{}")
    assert refused.value.code == "7701"
    assert await batch_count(runtime) == 0
    await queue(retry, b'{"retry":1}')
    assert await batch_count(runtime) == 1
    async with runtime.sessions() as session:
        [record] = (await session.exec(select(IdempotencyRecord))).all()
    assert (record.id, record.status_code, record.response_body) == (retry.record_id, 202, b'{"retry":1}')
