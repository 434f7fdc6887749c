"""What an operator watches: the backlog read from the database, worker heartbeats, `billing status`.

The backlog is counted from the database whenever it is asked for (a /metrics scrape, `billing
status`), so whichever API process answers, the figures are the same and current.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing import __version__
from billing.services.runtime import Runtime
from billing.store import claims
from billing.store import operations as store
from billing.store.engine import transaction
from billing.store.migrations import head_revision
from billing.store.operations import Heartbeat

log = logging.getLogger("billing.operations")

AGES: dict[str, timedelta] = {
    "0s": timedelta(0),
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
"""The `older_than` buckets of open charges and refunds (cumulative: "0s" is every open row)."""

SEEN_WITHIN = timedelta(minutes=1)
"""A worker is "running" when its heartbeat is this recent."""

FORGET_AFTER = timedelta(days=7)
"""Heartbeats of workers not seen for this long are dropped."""


@dataclass(frozen=True)
class Backlog:
    """The engine's backlog at `at` (real time)."""

    at: datetime
    subscriptions_due: int
    subscriptions_overdue: int
    overdue_after_seconds: float
    charges_open: dict[str, dict[str, int]]  # state -> older_than -> count
    refunds_open: dict[str, dict[str, int]]
    outbox: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def overdue_after(runtime: Runtime) -> timedelta:
    """How long past due a subscription counts as overdue: one worker interval unless configured."""
    seconds = runtime.settings.metrics.overdue_after_seconds or runtime.settings.worker.interval_seconds
    return timedelta(seconds=seconds)


async def read_backlog(runtime: Runtime) -> Backlog:
    """Count what is waiting: a handful of COUNT queries in one transaction."""
    now = runtime.clock.now()
    late = overdue_after(runtime)
    async with transaction(runtime.sessions) as session:
        offsets = await claims.clients_with_clock_offset(session)
        return Backlog(
            at=now,
            subscriptions_due=await claims.count_due(session, now=now, offsets=offsets),
            subscriptions_overdue=await store.overdue_subscriptions(session, before=now - late),
            overdue_after_seconds=late.total_seconds(),
            charges_open=await store.open_charges_by_age(session, now=now, ages=AGES),
            refunds_open=await store.open_refunds_by_age(session, now=now, ages=AGES),
            outbox=await store.outbox_backlog(session, now=now),
        )


async def record_heartbeat(
    runtime: Runtime,
    identity: str,
    *,
    started_at: datetime | None = None,
    last_pass: dict[str, Any] | None = None,
    counters: dict[str, Any] | None = None,
) -> None:
    """Upsert this worker's heartbeat row (with its last tick's counts and its counters when given).

    A heartbeat that cannot be written (the database is away) is logged and skipped: the passes
    run regardless.
    """
    now = runtime.clock.now()
    try:
        async with transaction(runtime.sessions) as session:
            await store.beat(
                session,
                identity=identity,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                now=now,
                started_at=started_at or now,
                last_pass=last_pass,
                counters=counters,
            )
            if last_pass is not None:
                await store.forget_workers(session, seen_before=now - FORGET_AFTER)
    except Exception as exc:
        log.warning("heartbeat not written: %s", type(exc).__name__)


@dataclass(frozen=True)
class Status:
    """`billing status`: the database, the workers, the backlog."""

    database: str  # ok | unreachable | unmigrated | outdated (at a revision other than the head)
    revision: str | None
    head: str | None
    workers: list[Heartbeat]
    backlog: Backlog | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.database == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": self.database,
            "revision": self.revision,
            "head": self.head,
            "error": self.error,
            "workers": [
                {
                    **{key: value for key, value in asdict(worker).items() if key != "counters"},
                    "started_at": worker.started_at.isoformat(),
                    "seen_at": worker.seen_at.isoformat(),
                    "last_pass_at": worker.last_pass_at.isoformat() if worker.last_pass_at else None,
                }
                for worker in self.workers
            ],
            "backlog": None if self.backlog is None else self.backlog.as_dict(),
        }


def _schema_state(revision: str | None, head: str | None) -> str:
    if revision is None:
        return "unmigrated"
    if revision == head:
        return "ok"
    return "outdated"


async def read_status(runtime: Runtime) -> Status:
    """Whether the database answers and is migrated to this version's head, who ran lately, the backlog."""
    head = head_revision()
    try:
        async with transaction(runtime.sessions) as session:
            revision = await store.schema_revision(session)
    except Exception as exc:
        return Status("unreachable", None, head, [], None, error=type(exc).__name__)
    state = _schema_state(revision, head)
    if state != "ok":  # the tables read below may not be there yet
        return Status(state, revision, head, [], None)
    async with transaction(runtime.sessions) as session:
        workers = await store.workers_seen_since(session, runtime.clock.now() - SEEN_WITHIN)
    return Status(state, revision, head, workers, await read_backlog(runtime))
