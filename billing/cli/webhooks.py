"""`billing webhooks`: endpoints, deliveries, retries and replays for operators; the retry schedule."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from billing.cli.common import echo_json, json_option, settings_or_exit
from billing.domain.clock import SystemClock
from billing.domain.errors import BillingError
from billing.services.runtime import Runtime, build_runtime
from billing.services.webhooks import endpoints, history
from billing.services.webhooks.delivery import schedule_of
from billing.settings import Settings
from billing.store.engine import Session

T = TypeVar("T")


@click.group("webhooks")
def webhooks_group() -> None:
    """Webhook endpoints and deliveries (config/billing.toml [webhooks])."""


def _run(settings: Settings, work: Callable[[Session, Runtime], Awaitable[T]], *, write: bool = False) -> T:
    async def go() -> T:
        runtime = build_runtime(settings, SystemClock(), processors={})
        try:
            async with runtime.sessions() as session:
                if write:
                    async with session.begin():
                        return await work(session, runtime)
                return await work(session, runtime)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(go())
    except BillingError as exc:
        click.echo(f"error: {exc.code} {exc.detail}", err=True)
        raise SystemExit(1) from exc


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _emit(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=1))
        return
    for row in rows:
        click.echo("  ".join(str(row[c]) for c in columns))


@webhooks_group.command("schedule")
@json_option("Print the schedule as JSON (seconds).")
def schedule(as_json: bool) -> None:
    """Print when a failing delivery is retried, and when it is abandoned."""
    settings = settings_or_exit()
    plan = schedule_of(settings.webhooks)
    if as_json:
        echo_json(
            {
                "giveUpAfterHours": settings.webhooks.give_up_after_hours,
                "retries": [
                    {
                        "retry": retry,
                        "ceilingSeconds": ceiling.total_seconds(),
                        "latestSinceQueuedSeconds": total.total_seconds(),
                    }
                    for retry, ceiling, total in plan.timeline()
                ],
            }
        )
        return
    click.echo(
        "Retry n waits a random time between 0 and the ceiling below (full jitter); retries stop "
        f"{settings.webhooks.give_up_after_hours:g} h after the delivery was queued, then it is abandoned."
    )
    click.echo("retry  ceiling     latest since queued")
    for retry, ceiling, total in plan.timeline():
        click.echo(f"{retry:>5}  {_span(ceiling):<10}  {_span(total)}")


def _span(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    text = "".join(parts) + (f"{secs}s" if secs or not any(parts) else "")
    return text


@webhooks_group.command("list")
@click.option("--client", "client_id", required=True, help="The client whose endpoints to list.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def list_command(client_id: str, as_json: bool) -> None:
    """A client's endpoints (secrets masked)."""
    settings = settings_or_exit()

    async def work(session: Session, runtime: Runtime) -> list[dict[str, Any]]:
        found = await endpoints.list_endpoints(session, client_id=client_id)
        return [
            {
                "id": e.id,
                "status": e.status,
                "url": e.url,
                "eventTypes": e.event_types or ["*"],
                "consecutiveFailures": e.consecutive_failures,
                "circuitOpenUntil": _when(e.circuit_open_until),
                "secret": endpoints.masked(e.secret),
            }
            for e in found
        ]

    _emit(_run(settings, work), as_json, ["id", "status", "url", "consecutiveFailures", "circuitOpenUntil"])


@webhooks_group.command("deliveries")
@click.option("--client", "client_id", required=True)
@click.option("--endpoint", "endpoint_id", required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, history.MAX_PAGE))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def deliveries(client_id: str, endpoint_id: str, limit: int, as_json: bool) -> None:
    """An endpoint's latest deliveries: status, attempts, last answer."""
    settings = settings_or_exit()

    async def work(session: Session, runtime: Runtime) -> list[dict[str, Any]]:
        page = await history.list_deliveries(
            session, client_id=client_id, endpoint_id=endpoint_id, limit=limit
        )
        return [
            {
                "id": d.id,
                "eventId": d.event_id,
                "eventType": d.event_type,
                "status": d.status,
                "attempts": d.attempts,
                "lastStatusCode": d.last_status_code if d.last_status_code is not None else "-",
                "lastError": d.last_error or "-",
                "nextAttemptAt": _when(d.next_attempt_at),
            }
            for d in page.items
        ]

    _emit(
        _run(settings, work),
        as_json,
        ["id", "eventType", "status", "attempts", "lastStatusCode", "nextAttemptAt", "lastError"],
    )


@webhooks_group.command("retry")
@click.option("--client", "client_id", required=True)
@click.argument("delivery_id")
@json_option()
def retry(client_id: str, delivery_id: str, as_json: bool) -> None:
    """Send one delivery again as soon as a worker gets to it."""
    settings = settings_or_exit()

    async def work(session: Session, runtime: Runtime) -> str:
        delivery = await history.retry_delivery(
            session, client_id=client_id, delivery_id=delivery_id, now=runtime.clock.now()
        )
        return delivery.id

    queued = _run(settings, work, write=True)
    if as_json:
        echo_json({"queued": queued})
        return
    click.echo(f"queued {queued}")


@webhooks_group.command("replay")
@click.option("--client", "client_id", required=True)
@click.option("--endpoint", "endpoint_id", required=True)
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"]),
    help="Every event created at or after this instant (a date alone: its start in UTC).",
)
@json_option()
def replay(client_id: str, endpoint_id: str, since: datetime, as_json: bool) -> None:
    """Send every event since a time to an endpoint again."""
    settings = settings_or_exit()
    start = since if since.tzinfo is not None else since.replace(tzinfo=UTC)

    async def work(session: Session, runtime: Runtime) -> int:
        return await history.replay(
            session, client_id=client_id, endpoint_id=endpoint_id, since=start, now=runtime.clock.now()
        )

    queued = _run(settings, work, write=True)
    if as_json:
        echo_json({"queuedEvents": queued})
        return
    click.echo(f"queued {queued} events")
