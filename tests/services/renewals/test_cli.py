"""`billing renewals run --once` and `billing policy show`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from billing.cli import cli
from billing.domain.clock import SystemClock
from billing.services.runtime import build_runtime
from billing.settings import load_settings
from billing.store.engine import transaction
from tests.services.renewals import factory


@pytest.fixture
def cli_env(db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_DATABASE__URL", db_url)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")
    return db_url


def _seed(url: str, cards: list[str], **plan: Any) -> tuple[str, list[str]]:
    async def go() -> tuple[str, list[str]]:
        runtime = build_runtime(load_settings(database={"url": url}), SystemClock(), processors={})
        enrolled = datetime.now(UTC) - timedelta(days=40)  # the first renewal fell due days ago
        try:
            async with transaction(runtime.sessions) as session:
                client = await factory.make_client(session, now=enrolled, timezone="America/New_York")
                the_plan = await factory.make_plan(session, client, now=enrolled, **plan)
                subs = []
                for n, number in enumerate(cards):
                    method = await factory.make_method(session, client, f"u{n}", now=enrolled, card=number)
                    subs.append(
                        (await factory.enrol(session, client, the_plan, method, enrolled_at=enrolled)).id
                    )
            return the_plan.id, subs
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def test_renewals_run_once_handles_everything_due_and_reports(cli_env: str) -> None:
    _seed(cli_env, ["4242424242424242", "4242424242424242", "4000000000000341"])
    result = CliRunner().invoke(cli, ["renewals", "run", "--once", "--progress"])
    assert result.exit_code == 0, result.output
    assert "3 due handled" in result.output
    assert "2 renewed" in result.output
    assert "1 entered grace" in result.output
    again = CliRunner().invoke(cli, ["renewals", "run", "--once", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "0 due handled" in again.output


def test_renewals_run_is_one_pass_by_default(cli_env: str) -> None:
    result = CliRunner().invoke(cli, ["renewals", "run", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["claimed"] == 0
    assert set(summary) >= {"renewed", "payment_failed", "inactive", "expired", "seconds"}


def test_policy_show_prints_the_plans_dated_timeline(cli_env: str) -> None:
    plan_id, _ = _seed(cli_env, [], daily_attempts=3, interval_attempt_hours=12, grace_days=2)
    result = CliRunner().invoke(
        cli, ["policy", "show", "--plan", plan_id, "--from", "2026-03-08T05:00:00+00:00"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "overridden by the plan's dailyAttempts, intervalAttempt, graceDays" in lines[1]
    assert "attempts: 3" in lines[1]
    assert "every 12 h" in lines[1]
    assert "2 days" in lines[1]
    # New York: 05:00 UTC on 8 March is midnight EST; DST starts at 07:00 UTC that day.
    assert lines[3].startswith("  2026-03-08 00:00 -0500  (2026-03-08 05:00 UTC)  attempt 1 of 3")
    assert lines[4].startswith("  2026-03-08 13:00 -0400  (2026-03-08 17:00 UTC)  attempt 2 of 3")
    assert lines[5].startswith("  2026-03-09 01:00 -0400  (2026-03-09 05:00 UTC)  attempt 3 of 3")
    assert lines[-1].startswith("  2026-03-10 01:00 -0400  (2026-03-10 05:00 UTC)  inactive")


def test_policy_show_a_configured_policy_and_bad_names() -> None:
    result = CliRunner().invoke(cli, ["policy", "show", "--name", "default", "--from", "2026-01-01"])
    assert result.exit_code == 0, result.output
    assert "attempts: 4" in result.output
    assert "every 24 h" in result.output
    assert "2026-01-04 00:00 +0000" in result.output.splitlines()[-2]
    missing = CliRunner().invoke(cli, ["policy", "show", "--name", "nope"])
    assert missing.exit_code == 2
    assert "known: default, patient" in missing.output
    both = CliRunner().invoke(cli, ["policy", "show"])
    assert both.exit_code == 2


def test_policy_show_unknown_plan(cli_env: str) -> None:
    result = CliRunner().invoke(cli, ["policy", "show", "--plan", "pln_nope"])
    assert result.exit_code == 1
    assert "7040" in result.output
