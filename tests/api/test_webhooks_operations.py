"""Operators' side of webhooks: the CLI commands and the purge of old events."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlmodel import select

from billing.cli import cli
from billing.services.webhooks.delivery import Deliverer, purge_pass
from billing.store.models import Event, WebhookDelivery
from tests.api.conftest import create_plan, data_of, enrol
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.anyio


async def test_purge_keeps_recent_events_and_pending_deliveries(
    merchant: Any, runtime: Any, clock: Any
) -> None:
    receiver = Receiver().start()
    receiver.behaviours["/down"] = [500]
    try:
        data_of(await merchant.post("/v1/webhooks/endpoints", json={"url": receiver.url("/up")}), 201)
        down = data_of(
            await merchant.post("/v1/webhooks/endpoints", json={"url": receiver.url("/down")}), 201
        )
        plan = await create_plan(merchant)
        await enrol(merchant, plan["id"], user="old")
        deliverer = Deliverer(runtime, "test-worker")
        await deliverer.run_until_idle()
        old = await _event_ids(runtime)

        clock.advance(timedelta(days=31))
        await merchant.login()
        await enrol(merchant, plan["id"], user="new")
        assert (
            await purge_pass(runtime, "test-worker") == 0
        )  # the failing endpoint still holds every old event

        data_of(await merchant.delete(f"/v1/webhooks/endpoints/{down['id']}"))
        assert await purge_pass(runtime, "test-worker") == len(old)
        await deliverer.aclose()
    finally:
        receiver.stop()
    left = await _event_ids(runtime)
    assert left
    assert not set(old) & set(left)
    async with runtime.sessions() as session:
        deliveries = (await session.exec(select(WebhookDelivery))).all()
    assert {d.event_id for d in deliveries} <= set(left)


async def _event_ids(runtime: Any) -> list[str]:
    async with runtime.sessions() as session:
        return [e.id for e in (await session.exec(select(Event))).all()]


def test_cli_lists_retries_and_replays(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DATABASE__URL", db_url)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")
    client_id, endpoint_id, delivery_id = asyncio.run(_seed(db_url, tmp_path))
    runner = CliRunner()

    listed = runner.invoke(cli, ["webhooks", "list", "--client", client_id])
    assert listed.exit_code == 0, listed.output
    assert endpoint_id in listed.output
    assert "whsec_" not in listed.output  # text output shows no secret at all

    log = runner.invoke(cli, ["webhooks", "deliveries", "--client", client_id, "--endpoint", endpoint_id])
    assert log.exit_code == 0, log.output
    assert delivery_id in log.output
    assert "pending" in log.output

    retried = runner.invoke(cli, ["webhooks", "retry", "--client", client_id, delivery_id])
    assert retried.exit_code == 0, retried.output
    assert f"queued {delivery_id}" in retried.output
    replayed = runner.invoke(
        cli, ["webhooks", "replay", "--client", client_id, "--endpoint", endpoint_id, "--since", "2020-01-01"]
    )
    assert replayed.exit_code == 0, replayed.output
    assert "queued 1 events" in replayed.output

    unknown = runner.invoke(cli, ["webhooks", "retry", "--client", "cli_nobody", delivery_id])
    assert unknown.exit_code == 1
    assert "7048" in unknown.output

    schedule = runner.invoke(cli, ["webhooks", "schedule"])
    assert schedule.exit_code == 0, schedule.output
    assert schedule.output.rstrip().endswith("7d")


async def _seed(db_url: str, tmp_path: Path) -> tuple[str, str, str]:
    from billing.domain.clock import SystemClock
    from billing.domain.events import BatchCompleted
    from billing.services.runtime import build_runtime
    from billing.services.webhooks import endpoints
    from billing.services.webhooks.delivery import dispatch_all
    from billing.settings import load_settings
    from billing.store.events import record_event
    from tests.api.conftest import add_client

    runtime = build_runtime(
        load_settings(database={"url": db_url}, data_dir=tmp_path), SystemClock(), processors={}
    )
    try:
        client_id = await add_client(runtime)
        now = runtime.clock.now()
        async with runtime.sessions() as session, session.begin():
            endpoint = await endpoints.create_endpoint(
                session,
                client_id=client_id,
                production=False,
                url="http://127.0.0.1:9/hooks",
                event_types=None,
                description=None,
                settings=runtime.settings.webhooks,
                now=now,
            )
            payload = BatchCompleted(
                batch_id="bat_1", tracking_id=None, source="json", totals={"succeeded": 1}, completed_at=now
            )
            await record_event(session, client_id=client_id, payload=payload, now=now)
        await dispatch_all(runtime)
        async with runtime.sessions() as session:
            delivery = (await session.exec(select(WebhookDelivery))).one()
        return client_id, endpoint.id, delivery.id
    finally:
        await runtime.aclose()
