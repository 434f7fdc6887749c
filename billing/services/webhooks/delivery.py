"""Turning events into signed deliveries, and sending them without ever holding up billing.

Two steps, each its own short transaction:

- dispatch: events not yet dispatched get one delivery row per enabled endpoint of their
  client that takes their type (unique per endpoint and event, so a second worker dispatching
  the same event adds nothing), and are marked dispatched;
- delivery: a worker leases due deliveries (at most `in_flight_per_endpoint` per endpoint and
  `in_flight` in all) and sends each as its own task. The round that started them does not wait
  for them: a receiver that hangs holds only its own slots, never another endpoint's deliveries
  nor the billing passes. Outcomes are written in batches: one transaction, a few milliseconds
  after an attempt ends, for every attempt that ended meanwhile (one database connection however
  many sends are in flight); if that write fails, the leases run out and the deliveries are sent again;
  a worker that dies before writing an outcome leaves a lease that runs out, and the delivery is
  sent again (at least once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing.domain.webhooks import (
    RESPONSE_EXCERPT_BYTES,
    RetrySchedule,
    circuit_backoff,
    delivered,
    gone,
    wants,
)
from billing.outbound.webhook_http import SendResult, WebhookSender
from billing.services.runtime import Runtime
from billing.services.webhooks.endpoints import signing_secrets
from billing.settings import WebhookSettings
from billing.store import webhooks as store

log = logging.getLogger("billing.webhooks")

DISPATCH_BATCH = 500
LARGE_DISPATCH = 5_000  # events dispatched in one go after which the delivery statistics are refreshed
GONE = "The receiver answered 410 Gone: endpoint disabled."
FLUSH_DELAY_SECONDS = 0.02


def schedule_of(settings: WebhookSettings) -> RetrySchedule:
    return RetrySchedule(
        base=timedelta(seconds=settings.backoff_base_seconds),
        max_delay=timedelta(seconds=settings.backoff_max_seconds),
        give_up_after=timedelta(hours=settings.give_up_after_hours),
    )


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def delivery_body(*, event_id: str, event_type: str, created_at: datetime, client_id: str, data: Any) -> str:
    """The JSON a receiver gets: `{eventId, type, createdAt, clientId, data}`."""
    return json.dumps(
        {
            "eventId": event_id,
            "type": event_type,
            "createdAt": _iso(created_at),
            "clientId": client_id,
            "data": data,
        },
        separators=(",", ":"),
    )


async def dispatch(runtime: Runtime, *, limit: int = DISPATCH_BATCH) -> int:
    """Create the deliveries of up to `limit` undispatched events; returns how many events were dispatched."""
    now = runtime.clock.now()
    async with runtime.sessions() as session, session.begin():
        events = await store.claim_undispatched_events(session, limit)
        if not events:
            return 0
        endpoints = await store.enabled_endpoints(session, [event.client_id for event in events])
        rows = [
            store.delivery_row(endpoint, event, now=now)
            for event in events
            for endpoint in endpoints
            if endpoint.client_id == event.client_id and wants(endpoint.event_types, event.type)
        ]
        await store.insert_deliveries(session, rows)
        await store.mark_dispatched(session, [event.id for event in events], now=now)
    return len(events)


async def dispatch_all(runtime: Runtime) -> int:
    """Dispatch until no event is left undispatched.

    After queueing a large backlog at once the database's statistics of pending deliveries are
    refreshed, so the claims that follow read the due index in order instead of sorting the backlog.
    """
    total = 0
    while count := await dispatch(runtime):
        total += count
    if total >= LARGE_DISPATCH and time.monotonic() - _statistics_refreshed[0] >= STATISTICS_EVERY_SECONDS:
        _statistics_refreshed[0] = time.monotonic()
        async with runtime.sessions() as session, session.begin():
            await store.refresh_delivery_statistics(session)
    return total


# A steady flow of large dispatches refreshes the statistics at most once a minute per process.
STATISTICS_EVERY_SECONDS = 60.0
_statistics_refreshed = [float("-inf")]


@dataclass
class DeliveryStats:
    """What a deliverer did since it started (operators, the benchmark)."""

    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    abandoned: int = 0
    by_status: Counter[int | None] = field(default_factory=Counter)


class Deliverer:
    """One worker process's webhook sender: leases due deliveries and sends each as a task."""

    def __init__(self, runtime: Runtime, identity: str, sender: WebhookSender | None = None) -> None:
        self.runtime = runtime
        self.identity = identity
        self.settings = runtime.settings.webhooks
        self.schedule = schedule_of(self.settings)
        self.sender = sender or WebhookSender(
            timeout=self.settings.timeout_seconds,
            max_connections=self.settings.in_flight,
            excerpt_bytes=RESPONSE_EXCERPT_BYTES,
        )
        self.stats = DeliveryStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: Counter[str] = Counter()
        self._outcomes: list[tuple[store.DueDelivery, SendResult, datetime]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._round_lock = asyncio.Lock()
        self._backlog = False  # the last claim found something: more may be due (or become due)
        self.refill = True  # start the next round as soon as sends end while a backlog lasts

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def round(self) -> int:
        """Record finished attempts, dispatch new events, start sending what is due and fits.

        Returns how many deliveries were started. Rounds of one deliverer never overlap (the
        worker's periodic job and the refill after finished sends share a lock).
        """
        async with self._round_lock:
            return await self._round()

    async def _round(self) -> int:
        await self.flush()
        await dispatch_all(self.runtime)
        free = self.settings.in_flight - len(self._tasks)
        if free <= 0:
            return 0
        per_endpoint = self.settings.in_flight_per_endpoint
        room = {endpoint: max(per_endpoint - busy, 0) for endpoint, busy in self._busy.items() if busy}
        now = self.runtime.clock.now()
        # Longer than one attempt can take (the send is bounded by the timeout) plus the wait for
        # the next round to record it, so a live worker never loses a lease mid-delivery; a dead
        # one's deliveries come back soon after.
        lease = timedelta(seconds=self.settings.timeout_seconds * 2 + self.settings.interval_seconds + 5)
        async with self.runtime.sessions() as session, session.begin():
            due = await store.claim_due_deliveries(
                session,
                owner=self.identity,
                now=now,
                lease_until=now + lease,
                limit=free,
                room=room,
                per_endpoint=per_endpoint,
            )
        # Found nothing: idle until the worker's next round. Found some: the sends they free may
        # let more through (a subscription's next event waits for its previous one).
        self._backlog = bool(due)
        for delivery in due:
            self._busy[delivery.endpoint_id] += 1
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(due)

    async def drain(self, wait_seconds: float | None = None) -> None:
        """Wait for the deliveries in flight (all of them, or for at most `wait_seconds`), then record them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_seconds)
        if self._flusher is not None:
            await self._flusher
        await self.flush()

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Rounds until nothing is due now (tests, `billing webhooks deliver`); returns deliveries started.

        Each round's sends are awaited before the next round, so no refill runs meanwhile.
        """
        started = 0
        refill, self.refill = self.refill, False
        try:
            for _ in range(max_rounds):
                count = await self.round()
                await self.drain()
                started += count
                if count == 0:
                    break
        finally:
            self.refill = refill
        return started

    async def aclose(self, wait_seconds: float | None = None) -> None:
        self.refill = False  # no new sends once closing: only those in flight finish
        await self.drain(wait_seconds)
        await self.sender.aclose()

    async def flush(self) -> None:
        """Write the outcomes of finished attempts in one transaction (one connection for them all)."""
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return
        now = self.runtime.clock.now()
        attempts: list[tuple[str, store.AttemptRecord]] = []
        streaks: dict[str, list[int]] = {}  # endpoint -> [failures since its last success, success seen]
        gone_endpoints: dict[str, datetime] = {}
        for delivery, result, at in outcomes:
            streak = streaks.setdefault(delivery.endpoint_id, [0, 0])
            self.stats.attempts += 1
            self.stats.by_status[result.status_code] += 1
            if delivered(result.status_code):
                attempts.append((delivery.id, _record_of(result, "delivered", at, None)))
                streak[0], streak[1] = 0, 1
                self.stats.delivered += 1
            elif gone(result.status_code):
                attempts.append((delivery.id, _record_of(result, "abandoned", at, None, GONE)))
                gone_endpoints[delivery.endpoint_id] = at
                self.stats.abandoned += 1
            else:
                retry_at = self.schedule.next_attempt(
                    retry=delivery.attempts + 1, now=at, first_seen=delivery.queued_at
                )
                status = "pending" if retry_at is not None else "abandoned"
                attempts.append((delivery.id, _record_of(result, status, at, retry_at)))
                streak[0] += 1
                if status == "abandoned":
                    self.stats.abandoned += 1
                else:
                    self.stats.failed += 1
        async with self.runtime.sessions() as session, session.begin():
            await store.record_attempts(session, attempts)
            await store.endpoints_recovered(
                session, [endpoint for endpoint, (failures, _) in streaks.items() if failures == 0]
            )
            for endpoint, (failures, succeeded) in streaks.items():
                if failures == 0:
                    continue
                count = await store.endpoint_failed(
                    session, endpoint, failures=failures, reset=bool(succeeded)
                )
                backoff = circuit_backoff(
                    count,
                    threshold=self.settings.circuit_failures,
                    first=timedelta(seconds=self.settings.circuit_seconds),
                    longest=timedelta(seconds=self.settings.backoff_max_seconds),
                )
                if backoff is not None:
                    await store.open_circuit(session, endpoint, now + backoff)
            for endpoint, at in gone_endpoints.items():
                await store.disable_endpoint(session, endpoint, reason=GONE, now=at)

    async def _deliver(self, delivery: store.DueDelivery) -> None:
        try:
            await self._attempt(delivery)
        except Exception:
            # The lease runs out and the delivery is tried again; nothing else is affected.
            log.exception(
                "webhook delivery failed unexpectedly",
                extra={"delivery_id": delivery.id, "event_id": delivery.event_id},
            )
        finally:
            self._busy[delivery.endpoint_id] -= 1
            if self._busy[delivery.endpoint_id] <= 0:
                del self._busy[delivery.endpoint_id]

    async def _attempt(self, delivery: store.DueDelivery) -> None:
        body = delivery_body(
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            created_at=delivery.event_created_at,
            client_id=delivery.client_id,
            data=delivery.payload,
        )
        secrets = signing_secrets(
            delivery.secret,
            delivery.previous_secret,
            delivery.previous_secret_until,
            now=self.runtime.clock.now(),
        )
        result = await self.sender.send(
            delivery.url, message_id=delivery.event_id, secrets=secrets, body=body
        )
        self._record(delivery, result)

    def _record(self, delivery: store.DueDelivery, result: SendResult) -> None:
        self._outcomes.append((delivery, result, self.runtime.clock.now()))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        """Write outcomes shortly after they arrive; those arriving meanwhile join the same batch.

        While a backlog lasts, the slots those sends freed are filled at once by another round
        (once a quarter of them are free, so each claim takes a useful batch), instead of
        waiting for the worker's next periodic round: a worker keeps `in_flight` deliveries
        going however fast receivers answer.
        """
        while self._outcomes:
            await asyncio.sleep(FLUSH_DELAY_SECONDS)
            try:
                await self.flush()
                if self._refill_due():
                    await self.round()
            except Exception:
                # The next round retries the write; until then the leases keep the rows.
                log.exception("writing webhook outcomes failed")
                return

    def _refill_due(self) -> bool:
        free = self.settings.in_flight - len(self._tasks)
        return self.refill and self._backlog and free * 4 >= self.settings.in_flight


def _record_of(
    result: SendResult, status: str, now: datetime, retry_at: datetime | None, error: str | None = None
) -> store.AttemptRecord:
    return store.AttemptRecord(
        status=status,
        attempted_at=now,
        next_attempt_at=retry_at,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=(error or result.error),
        response=result.body_excerpt,
    )


async def purge_pass(runtime: Runtime, identity: str) -> int:
    """Delete events past retention whose deliveries are final (housekeeping, part of the worker tick)."""
    del identity
    before = runtime.clock.now() - timedelta(days=runtime.settings.webhooks.event_retention_days)
    total = 0
    while True:
        async with runtime.sessions() as session, session.begin():
            removed = await store.purge_events(session, before=before, limit=DISPATCH_BATCH)
        total += removed
        if removed < DISPATCH_BATCH:
            return total
