"""What the notification pass does when the SMTP server refuses, hangs or is down: retried with backoff,
delivered exactly once when it comes back; a permanent 5xx abandons at once; 3 days of failures abandon."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from billing.services.notifications import Mailer
from billing.store.models import Notification
from tests.api.conftest import CHARGES_DECLINE, create_plan, data_of, enrol
from tests.services.notifications.conftest import SmtpServer

pytestmark = pytest.mark.anyio


async def _queued_email(merchant: Any) -> str:
    """A subscription whose first renewal fails now: one subPayProblem is queued. Returns its id."""
    plan = await create_plan(merchant, trialDays=1, dailyAttempts=3, intervalAttempt=24)
    sub = (await enrol(merchant, plan["id"], number=CHARGES_DECLINE, notificationEmail="ada@example.com"))[
        "subscription"
    ]
    data_of(await merchant.post("/v1/sandbox/clock", json={"to": sub["nextRenewalDate"]}))
    sub_id: str = sub["id"]
    return sub_id


async def _row(runtime: Any) -> Notification:
    from sqlmodel import select

    async with runtime.sessions() as session:
        rows = list((await session.exec(select(Notification))).all())
    assert len(rows) == 1
    return rows[0]


async def _rounds_for(mailer: Mailer, clock: Any, duration: timedelta, step: timedelta) -> None:
    """Run the pass every `step` of (test) time for `duration`, as the worker job would."""
    end = clock.now() + duration
    while clock.now() < end:
        await mailer.run_until_idle()
        clock.advance(step)


async def test_server_down_for_a_day_is_retried_then_delivered_once(
    merchant: Any, runtime: Any, clock: Any, smtp_server: SmtpServer
) -> None:
    await _queued_email(merchant)
    smtp_server.stop()
    mailer = Mailer(runtime, "test-mailer")
    await _rounds_for(mailer, clock, timedelta(days=1), timedelta(minutes=30))
    row = await _row(runtime)
    assert row.status == "pending"
    assert row.attempts >= 3  # backoff: more than one try, far fewer than one per round
    assert row.attempts < 48
    assert row.last_error
    smtp_server.start()
    await _rounds_for(mailer, clock, timedelta(hours=12), timedelta(minutes=30))
    row = await _row(runtime)
    assert (row.status, row.sent_at is not None) == ("sent", True)
    assert len(smtp_server.received) == 1


async def test_temporary_refusal_and_hang_are_retried_then_delivered_once(
    merchant: Any, runtime: Any, clock: Any, smtp_server: SmtpServer
) -> None:
    await _queued_email(merchant)
    mailer = Mailer(runtime, "test-mailer")
    smtp_server.mode = "refuse-temporary"
    await mailer.run_until_idle()
    assert smtp_server.handler.refused == 1
    row = await _row(runtime)
    assert row.status == "pending"
    assert row.last_error is not None
    assert row.last_error.startswith("451")
    smtp_server.mode = "hang"
    clock.advance(timedelta(hours=1))
    await mailer.run_until_idle()  # bounded by smtp.timeout_seconds
    row = await _row(runtime)
    assert (row.status, row.attempts) == ("pending", 2)
    smtp_server.mode = "accept"
    await _rounds_for(mailer, clock, timedelta(hours=6), timedelta(minutes=10))
    row = await _row(runtime)
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(smtp_server.received) == 1


async def test_permanent_refusal_abandons_at_once(
    merchant: Any, runtime: Any, clock: Any, smtp_server: SmtpServer
) -> None:
    await _queued_email(merchant)
    smtp_server.mode = "refuse-permanent"
    mailer = Mailer(runtime, "test-mailer")
    await _rounds_for(mailer, clock, timedelta(days=1), timedelta(hours=1))
    row = await _row(runtime)
    assert (row.status, row.attempts) == ("abandoned", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("550")


async def test_three_days_of_failures_abandon(
    merchant: Any, runtime: Any, clock: Any, smtp_server: SmtpServer
) -> None:
    await _queued_email(merchant)
    smtp_server.stop()
    mailer = Mailer(runtime, "test-mailer")
    started: datetime = clock.now()
    await _rounds_for(mailer, clock, timedelta(days=4), timedelta(hours=1))
    row = await _row(runtime)
    assert row.status == "abandoned"
    assert row.last_attempt_at is not None
    assert row.last_attempt_at - started <= timedelta(days=3, hours=1)
    smtp_server.start()
    await _rounds_for(mailer, clock, timedelta(days=1), timedelta(hours=1))
    assert smtp_server.received == []


async def test_billing_runs_while_smtp_is_down(merchant: Any, runtime: Any, smtp_server: SmtpServer) -> None:
    """The renewal happened and its e-mail is queued although no SMTP server answers: billing
    never waits for mail."""
    smtp_server.stop()
    sub_id = await _queued_email(merchant)
    detail = data_of(await merchant.get(f"/v1/subscriptions/detail/{sub_id}"))
    assert detail["renewalStatus"] == "in_grace"
    assert (await _row(runtime)).status == "pending"


async def test_the_password_never_reaches_logs_or_the_stored_error(
    merchant: Any, runtime: Any, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The loopback server offers no AUTH: the attempt fails, is kept for a retry, and says why without
    the password."""
    from billing.outbound.smtp_mail import MailSender, SmtpConfig

    await _queued_email(merchant)
    password = "pw-" + "x7Q2" * 4
    sender = MailSender(
        SmtpConfig(
            host="127.0.0.1",
            port=smtp_server.port,
            username="billing",
            password=password,
            starttls=False,
            tls=False,
            timeout=3.0,
        )
    )
    caplog.set_level("DEBUG")
    await Mailer(runtime, "test-mailer", sender=sender).run_until_idle()
    row = await _row(runtime)
    assert row.status == "pending"
    assert row.last_error
    assert password not in row.last_error
    assert password not in caplog.text
    assert smtp_server.received == []


async def test_finished_emails_are_purged_with_the_events_retention(
    merchant: Any, runtime: Any, clock: Any, smtp_server: SmtpServer
) -> None:
    from billing.services.notifications.sending import purge_pass

    await _queued_email(merchant)
    await Mailer(runtime, "test-mailer").run_until_idle()
    assert (await _row(runtime)).status == "sent"
    assert await purge_pass(runtime, "test") == 0  # kept while recent
    clock.advance(timedelta(days=runtime.settings.webhooks.event_retention_days + 40))
    assert await purge_pass(runtime, "test") == 1
