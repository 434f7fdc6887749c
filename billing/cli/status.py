"""`billing status`: one screen for the operator (docs/operations.md).

The database (reachable, migrated to this version's head), the workers seen in the last minute
(their heartbeat rows: host, pid, version, last tick) and the backlog figures /metrics exports.
Exit 0 when the database is reachable and migrated, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from billing import __version__
from billing.cli.common import settings_or_exit
from billing.domain.clock import SystemClock
from billing.services.operations import SEEN_WITHIN, Status, read_status
from billing.services.runtime import build_runtime
from billing.settings import Settings
from billing.store.migrations import head_revision


def _missing_sqlite_file(settings: Settings) -> bool:
    """A SQLite URL naming a file that does not exist (opening it would create an empty database)."""
    if not settings.database.is_sqlite:
        return False
    path = settings.database.url.split("://", 1)[1].removeprefix("/").split("?", 1)[0]
    return bool(path) and path != ":memory:" and not Path(path).exists()


async def _status(settings: Settings) -> Status:
    if _missing_sqlite_file(settings):
        return Status("unreachable", None, head_revision(), [], None, error="no such SQLite file")
    runtime = build_runtime(settings, SystemClock(), processors={})
    try:
        return await read_status(runtime)
    finally:
        await runtime.aclose()


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size, up_to in (("s", 1, 120), ("m", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{seconds // size}{unit} ago"
    return f"{seconds // 86400}d ago"


def _last_tick(last_pass: dict[str, Any] | None) -> str:
    """The non-zero counts of a worker's last tick, pass by pass."""
    if not last_pass:
        return "-"
    parts = []
    for name, counts in last_pass.items():  # pass order on SQLite; PostgreSQL's JSONB sorts keys
        if counts is None:
            parts.append(f"{name} FAILED")
            continue
        done = ", ".join(f"{key} {value}" for key, value in sorted(counts.items()) if value)
        if done:
            parts.append(f"{name}: {done}")
    return "; ".join(parts) or "nothing to do"


def _ages(ages: dict[str, int]) -> str:
    return ", ".join(f">{age} {count}" for age, count in ages.items() if age != "0s")


def render(status: Status, *, database_kind: str, now: datetime) -> str:
    """The screen `billing status` prints."""
    lines = [f"billing-engine {__version__} status at {now:%Y-%m-%d %H:%M:%S} UTC", ""]
    if status.database == "unreachable":
        lines.append(f"database  UNREACHABLE ({database_kind}: {status.error})")
    elif status.database == "unmigrated":
        lines.append(
            f"database  NOT MIGRATED ({database_kind}; run `billing migrate`, head is {status.head})"
        )
    elif status.database == "outdated":
        lines.append(
            f"database  AT REVISION {status.revision}, this version's head is {status.head} ({database_kind};"
            " run `billing migrate` with the newest version)"
        )
    else:
        lines.append(f"database  ok ({database_kind}, migrated to {status.revision})")
    if not status.ok:
        return "\n".join(lines)
    seconds = SEEN_WITHIN.total_seconds()
    lines.append(f"workers   {len(status.workers)} seen in the last {seconds:.0f}s")
    for worker in status.workers:
        lines.append(
            f"  {worker.id}  host {worker.host}  pid {worker.pid}  v{worker.version}"
            f"  started {_ago(worker.started_at, now)}  seen {_ago(worker.seen_at, now)}"
            f"  last tick {_ago(worker.last_pass_at, now)}"
        )
        lines.append(f"    {_last_tick(worker.last_pass)}")
    backlog = status.backlog
    assert backlog is not None
    outbox = backlog.outbox
    rows = [
        ("subscriptions due now", backlog.subscriptions_due, ""),
        (f"overdue (> {backlog.overdue_after_seconds:g}s)", backlog.subscriptions_overdue, ""),
    ]
    for kind, table in (("charges", backlog.charges_open), ("refunds", backlog.refunds_open)):
        for state, ages in table.items():
            rows.append((f"{kind} {state}", ages["0s"], _ages(ages)))
    rows += [
        ("webhook deliveries pending", outbox["webhook_pending"], f"due now {outbox['webhook_due']}"),
        ("e-mails pending", outbox["email_pending"], f"due now {outbox['email_due']}"),
        ("events not dispatched", outbox["events_undispatched"], ""),
        ("on-demand items queued", outbox["ondemand_queued"], ""),
        ("processor notices deferred", outbox["inbound_deferred"], ""),
    ]
    lines.append("backlog")
    for label, count, detail in rows:
        lines.append(f"  {label:<30} {count:>8}" + (f"   ({detail})" if detail else ""))
    return "\n".join(lines)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(as_json: bool) -> None:
    """Database, workers seen in the last minute, backlog; exit 1 if the database is unreachable or
    not migrated to this version."""
    settings = settings_or_exit()
    report = asyncio.run(_status(settings))
    kind = "SQLite" if settings.database.is_sqlite else "PostgreSQL"
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "database_kind": kind, "version": __version__}, indent=2))
    else:
        now = report.backlog.at if report.backlog is not None else SystemClock().now()
        click.echo(render(report, database_kind=kind, now=now))
    raise SystemExit(0 if report.ok else 1)
