"""The worker: APScheduler 3 interval jobs that only *trigger* passes; the database decides what is due.

Several workers (processes) may run against one PostgreSQL. Nothing here coordinates them:
the passes claim rows with leases, and unique keys make a second charge impossible.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from billing.services.enrolment import run_recovery
from billing.services.idempotency import purge_pass as purge_idempotency_records
from billing.services.inbound import run_deferred_notifications
from billing.services.metrics import record_pass, tally_of
from billing.services.notifications import Mailer, run_expiring_cards
from billing.services.notifications.sending import purge_pass as purge_notifications
from billing.services.ondemand import run_ondemand
from billing.services.operations import record_heartbeat
from billing.services.pass_control import stop_when
from billing.services.refunds import run_refund_reconciliation
from billing.services.renewals import run_reconciliation, run_renewals
from billing.services.runtime import Runtime
from billing.services.webhooks.delivery import Deliverer
from billing.services.webhooks.delivery import purge_pass as purge_events

log = logging.getLogger("billing.worker")

Pass = Callable[[Runtime, str], Awaitable[Any]]


def worker_identity() -> str:
    """A name for leases: host and pid, so an operator can tell who holds a row."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_pass_id() -> str:
    """An id for one run of one pass: every line the run logs carries it (docs/logging.md)."""
    return "pass_" + secrets.token_hex(6)


def pass_context(name: str) -> Any:
    """Bind ``pass`` and ``pass_id`` for every line logged inside (tasks started inside inherit them)."""
    return structlog.contextvars.bound_contextvars(**{"pass": name, "pass_id": new_pass_id()})


def registered_passes() -> list[tuple[str, Pass]]:
    """The passes one tick runs, in order (renewals, on-demand batches, outboxes)."""
    passes: list[tuple[str, Pass]] = []
    passes.append(("renewals", run_renewals))
    passes.append(("ondemand", run_ondemand))
    passes.append(("enrolment-recovery", run_recovery))
    passes.append(("charge-reconciliation", run_reconciliation))
    passes.append(("refund-reconciliation", run_refund_reconciliation))
    passes.append(("deferred-notifications", run_deferred_notifications))
    passes.append(("idempotency-purge", purge_idempotency_records))  # housekeeping, last
    passes.append(("event-purge", purge_events))
    passes.append(("notification-purge", purge_notifications))
    return passes


async def run_pass_once(runtime: Runtime, identity: str | None = None) -> dict[str, Any]:
    """Run every pass once; each pass's failure is logged and does not stop the others.

    Each pass is counted in this worker's tally (`billing.services.metrics.record_pass`: duration,
    outcome, what it did), and the worker's heartbeat row is written before the passes and again
    after, with the tick's counts and the tally (which /metrics exports).
    """
    identity = identity or worker_identity()
    tally = tally_of(identity)
    if tally.started_at is None:
        tally.started_at = runtime.clock.now()
    await record_heartbeat(runtime, identity, started_at=tally.started_at, counters=tally.as_json())
    results: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for name, run in registered_passes():
        started = time.perf_counter()
        with pass_context(name):
            try:
                results[name] = await run(runtime, identity)
            except Exception:
                log.exception("pass failed")
                results[name] = None
                record_pass(identity, name, None, time.perf_counter() - started, failed=True)
                counts[name] = None
            else:
                counts[name] = record_pass(identity, name, results[name], time.perf_counter() - started)
    await record_heartbeat(
        runtime, identity, started_at=tally.started_at, last_pass=counts, counters=tally.as_json()
    )
    return results


async def timed_round(identity: str, name: str, round_: Callable[[], Awaitable[int]]) -> int:
    """Run one delivery or e-mail round and count it like a pass (written with the next heartbeat)."""
    started = time.perf_counter()
    try:
        result = await round_()
    except Exception:
        record_pass(identity, name, None, time.perf_counter() - started, failed=True)
        raise
    record_pass(identity, name, result, time.perf_counter() - started)
    return result


def _every(
    scheduler: AsyncIOScheduler, job: Callable[[], Awaitable[None]], seconds: float, name: str
) -> None:
    """Run `job` now and every `seconds` (one instance at a time)."""
    scheduler.add_job(
        job, IntervalTrigger(seconds=seconds), id=name, replace_existing=True, next_run_time=datetime.now(UTC)
    )


@asynccontextmanager
async def scheduler_running(runtime: Runtime, identity: str | None = None) -> AsyncIterator[AsyncIOScheduler]:
    """Start the interval job on the running loop; stop it on exit."""
    identity = identity or worker_identity()
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )

    stopping = asyncio.Event()
    in_flight: set[asyncio.Task[Any]] = set()

    async def tick() -> None:
        task = asyncio.current_task()
        if task is not None:
            in_flight.add(task)
        try:
            # Passes check `stop_requested()` between batches and return early on shutdown.
            with stop_when(stopping.is_set):
                await run_pass_once(runtime, identity)
        finally:
            if task is not None:
                in_flight.discard(task)

    _every(scheduler, tick, runtime.settings.worker.interval_seconds, "billing-tick")
    # Webhook deliveries have their own job: a round starts sends as tasks and returns, so a slow
    # receiver never delays the billing tick, and the tick never delays deliveries.
    deliverer = Deliverer(runtime, identity)

    async def deliver() -> None:
        if stopping.is_set():
            return
        with pass_context("webhooks"):
            try:
                await timed_round(identity, "webhook-deliveries", deliverer.round)
            except Exception:
                log.exception("webhook round failed")

    _every(scheduler, deliver, runtime.settings.webhooks.interval_seconds, "billing-webhooks")
    # E-mails have their own job too (an SMTP server that hangs only delays e-mails), and the
    # card-expiry notices a daily one; the database decides what is due for both.
    mailer = Mailer(runtime, identity)

    async def send_mail() -> None:
        if stopping.is_set():
            return
        try:
            with pass_context("notifications"):
                await timed_round(identity, "emails", mailer.round)
            if (today := runtime.clock.now().date()) != last_card_pass[0]:
                last_card_pass[0] = today
                with pass_context("expiring-cards"):
                    await run_expiring_cards(runtime, identity)
        except Exception:
            log.exception("notification round failed")

    last_card_pass: list[date | None] = [None]
    _every(scheduler, send_mail, runtime.settings.notifications.interval_seconds, "billing-notifications")
    scheduler.start()
    log.info(
        "worker started", extra={"identity": identity, "interval": runtime.settings.worker.interval_seconds}
    )
    try:
        yield scheduler
    finally:
        # Let an in-flight tick finish its current batch (charges in flight, outcomes written)
        # before the engine closes: passes stop claiming new batches once `stopping` is set, and
        # the scheduler is only shut down afterwards because its executor cancels running jobs.
        stopping.set()
        deliverer.refill = False
        scheduler.pause()
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=runtime.settings.worker.lease_seconds)
        scheduler.shutdown(wait=False)
        # Deliveries in flight finish or run into their timeout; any cut short is sent again later.
        await deliverer.aclose(runtime.settings.webhooks.timeout_seconds)
        log.info("worker stopped", extra={"identity": identity})
