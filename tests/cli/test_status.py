"""`billing status`: database reachable and migrated, workers seen in the last minute, backlog;
exit 0 when the database is fine, 1 when it is unreachable or not at this version's head."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from billing.cli import cli
from billing.domain.clock import SystemClock
from billing.processors.sandbox import SandboxProcessor
from billing.services.operations import record_heartbeat
from billing.services.runtime import build_runtime
from billing.settings import load_settings
from billing.store.engine import transaction
from billing.store.migrations import head_revision
from billing.worker import run_pass_once
from tests.clock import FixedClock
from tests.services.renewals import factory


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_DATABASE__URL", db_url)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")
    return db_url


def _runtime(url: str, clock: Any = None) -> Any:
    return build_runtime(
        load_settings(database={"url": url}),
        clock or SystemClock(),
        processors={"sandbox": SandboxProcessor()},
    )


def _due_subscription(url: str) -> None:
    async def go() -> None:
        runtime = _runtime(url)
        enrolled = datetime.now(UTC) - timedelta(days=40)
        try:
            async with transaction(runtime.sessions) as session:
                client = await factory.make_client(session, now=enrolled)
                plan = await factory.make_plan(session, client, now=enrolled)
                method = await factory.make_method(session, client, "u1", now=enrolled)
                await factory.enrol(session, client, plan, method, enrolled_at=enrolled)
        finally:
            await runtime.aclose()

    asyncio.run(go())


def _stale_worker(url: str) -> None:
    """A worker whose last heartbeat is five minutes old: stopped, not listed."""

    async def go() -> None:
        runtime = _runtime(url, FixedClock(datetime.now(UTC) - timedelta(minutes=5)))
        try:
            await record_heartbeat(runtime, "gone:1", last_pass={})
        finally:
            await runtime.aclose()

    asyncio.run(go())


def _worker_tick(url: str) -> None:
    async def go() -> None:
        runtime = _runtime(url)
        try:
            await run_pass_once(runtime, "status-host:4242")
        finally:
            await runtime.aclose()

    asyncio.run(go())


def _status(*args: str) -> Any:
    return CliRunner().invoke(cli, ["status", *args])


def test_status_on_a_migrated_database_with_a_worker(cli_env: str) -> None:
    _due_subscription(cli_env)
    _stale_worker(cli_env)

    before = _status()
    assert before.exit_code == 0, before.output
    assert (
        f"database  ok ({'SQLite' if cli_env.startswith('sqlite') else 'PostgreSQL'}, migrated to"
        in before.output
    )
    assert "workers   0 seen in the last 60s" in before.output
    assert "gone:1" not in before.output
    assert "subscriptions due now                 1" in before.output

    _worker_tick(cli_env)

    after = _status()
    assert after.exit_code == 0, after.output
    assert "workers   1 seen in the last 60s" in after.output
    assert "status-host:4242" in after.output
    assert "renewals: batches 1, claimed 1, renewed 1" in after.output  # counts in name order
    assert "subscriptions due now                 0" in after.output

    as_json = _status("--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["ok"] is True
    assert data["database"] == "ok"
    assert data["revision"] == data["head"] == head_revision()
    [worker] = data["workers"]
    assert worker["id"] == "status-host:4242"
    assert worker["version"]
    assert worker["pid"] > 0
    assert worker["host"]
    assert worker["last_pass"]["renewals"]["claimed"] == 1
    backlog = data["backlog"]
    assert backlog["subscriptions_due"] == 0
    assert backlog["charges_open"]["unknown"]["0s"] == 0
    # The renewal queued events (nothing dispatched them) and no e-mail (no notification address).
    assert backlog["outbox"]["events_undispatched"] >= 1


def test_status_on_a_database_behind_this_version(cli_env: str) -> None:
    async def set_revision(revision: str) -> None:
        runtime = _runtime(cli_env)
        try:
            async with transaction(runtime.sessions) as session:
                statement = text("UPDATE alembic_version SET version_num = :r").bindparams(r=revision)
                await session.exec(statement)  # type: ignore[call-overload]
        finally:
            await runtime.aclose()

    try:
        asyncio.run(set_revision("0009"))
        result = _status()
        assert result.exit_code == 1, result.output
        assert f"AT REVISION 0009, this version's head is {head_revision()}" in result.output
        assert json.loads(_status("--json").output)["database"] == "outdated"
    finally:
        asyncio.run(set_revision(head_revision() or ""))


def test_status_when_the_database_is_unreachable(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "sqlite":  # a file that is not there is not created
        url = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/billing.db"
    else:  # nothing listens on port 1; the password must not show anywhere
        url = "postgresql+psycopg://billing:hunter2-not-shown@127.0.0.1:1/billing"
    monkeypatch.setenv("BILLING_DATABASE__URL", url)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    result = _status()
    assert result.exit_code == 1, result.output
    assert "database  UNREACHABLE (" in result.output
    assert "hunter2" not in result.output
    assert not (tmp_path / "no").exists()
    data = json.loads(_status("--json").output)
    assert data["ok"] is False
    assert data["database"] == "unreachable"
    assert data["workers"] == []
    assert data["backlog"] is None


def test_status_on_an_empty_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.db").touch()
    monkeypatch.setenv("BILLING_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    result = _status()
    assert result.exit_code == 1, result.output
    assert "NOT MIGRATED" in result.output
    assert "billing migrate" in result.output


def example_status() -> tuple[Any, datetime]:
    """The status docs/operations.md shows."""
    from billing.services.operations import AGES, Backlog, Status
    from billing.store.operations import Heartbeat

    now = datetime(2026, 12, 2, 10, 39, 3, tzinfo=UTC)
    worker = Heartbeat(
        id="vm:25350",
        host="vm",
        pid=25350,
        version="0.1.0",
        started_at=now - timedelta(hours=2),
        seen_at=now - timedelta(seconds=1),
        last_pass={
            "renewals": {"claimed": 40, "renewed": 38, "payment_failed": 2, "batches": 1},
            "ondemand": {},
        },
        last_pass_at=now - timedelta(seconds=1),
        counters=None,
    )
    open_rows = {"pending": dict.fromkeys(AGES, 0), "unknown": {**dict.fromkeys(AGES, 0), "0s": 1, "1m": 1}}
    backlog = Backlog(
        at=now,
        subscriptions_due=12,
        subscriptions_overdue=0,
        overdue_after_seconds=5.0,
        charges_open=open_rows,
        refunds_open={"pending": dict.fromkeys(AGES, 0), "unknown": dict.fromkeys(AGES, 0)},
        outbox={
            "webhook_pending": 3,
            "webhook_due": 1,
            "email_pending": 0,
            "email_due": 0,
            "events_undispatched": 2,
            "ondemand_queued": 0,
            "inbound_deferred": 0,
        },
    )
    return Status("ok", "0012", "0012", [worker], backlog), now


def test_the_operations_guide_shows_what_billing_status_prints() -> None:
    from billing.cli.status import render

    status, now = example_status()
    screen = render(status, database_kind="PostgreSQL", now=now)
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert f"$ billing status\n{screen}\n```" in guide
