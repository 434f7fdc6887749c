"""A 4000000000000341 subscription walked through its grace episode with the sandbox clock, e-mailed over
a real SMTP server: exactly the expected messages, with the right recipients, amounts and local dates."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from billing.domain.grace import GracePolicy, timeline
from billing.domain.notifications import spoken_date
from billing.services.notifications import Mailer
from tests.api.conftest import CHARGES_DECLINE, create_plan, data_of, enrol
from tests.services.notifications.conftest import SmtpServer

pytestmark = pytest.mark.anyio


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _advance(merchant: Any, to: datetime) -> None:
    data_of(await merchant.post("/v1/sandbox/clock", json={"to": to.isoformat()}))


async def _walk_episode(merchant: Any, runtime: Any, smtp_server: SmtpServer) -> tuple[str, list[datetime]]:
    """Enrol on a 7-day trial, then move the clock through 3 failed attempts and the suspension."""
    plan = await create_plan(
        merchant,
        name="Pro",
        amount=29.9,
        trialDays=7,
        dailyAttempts=3,
        intervalAttempt=24,
        graceDays=7,
    )
    enrolled = await enrol(merchant, plan["id"], number=CHARGES_DECLINE, notificationEmail="ada@example.com")
    sub = enrolled["subscription"]
    first_failure = _at(sub["nextRenewalDate"])
    steps = timeline(GracePolicy(attempts=3, interval_hours=24, grace_days=7), first_failure)
    mailer = Mailer(runtime, "test-mailer")
    for step in steps:
        await _advance(merchant, step.at)
        await mailer.run_until_idle()
    detail = data_of(await merchant.get(f"/v1/subscriptions/detail/{sub['id']}"))
    assert detail["status"] == "inactive"
    return sub["id"], [step.at for step in steps]


async def test_first_failure_and_suspension_each_send_one_email(
    merchant: Any, runtime: Any, smtp_server: SmtpServer
) -> None:
    """Default settings: subPayProblem at the first failure only, subscriptionSuspended at the end."""
    _, times = await _walk_episode(merchant, runtime, smtp_server)
    first_failure, inactive_at = times[0], times[-1]
    mails = smtp_server.received
    assert [m.envelope_to for m in mails] == [["ada@example.com"], ["ada@example.com"]]
    problem, suspended = mails
    assert problem.message["To"] == "ada@example.com"
    assert problem.message["From"] == "Acme <billing@shop.example>"  # the client's name by default
    # Spanish by default; dates in the client's zone (America/Guatemala, UTC-6).
    assert problem.message["Subject"] == "No pudimos cobrar tu suscripción Pro"
    assert _spanish(first_failure) in problem.text
    assert "29.90 USD" in problem.text
    assert _spanish(first_failure + timedelta(hours=24)) in problem.text  # the next retry
    assert _spanish(first_failure + timedelta(days=7)) in problem.text  # the end of grace
    assert "<p>" in problem.html
    assert "29.90 USD" in problem.html
    assert suspended.message["Subject"] == "Tu suscripción Pro fue suspendida"
    assert _spanish(inactive_at) in suspended.text
    assert "29.90 USD" in suspended.text


async def test_each_attempt_setting_adds_one_email_per_failed_retry(
    merchant: Any, runtime: Any, smtp_server: SmtpServer
) -> None:
    data_of(
        await merchant.put(
            "/v1/notifications/settings",
            json={"eachAttempt": True, "locale": "en", "senderName": "Acme Billing"},
        )
    )
    sub_id, times = await _walk_episode(merchant, runtime, smtp_server)
    subjects = [m.message["Subject"] for m in smtp_server.received]
    assert subjects == [
        "We could not charge your card for Pro",
        "We could not charge your card for Pro",
        "We could not charge your card for Pro",
        "Your Pro subscription has been suspended",
    ]
    assert smtp_server.received[0].message["From"] == "Acme Billing <billing@shop.example>"
    # The second attempt's e-mail names the third attempt's date (a day later, in English).
    second, third = times[1], times[2]
    assert second + timedelta(hours=24) == third
    third_day = third.astimezone(ZoneInfo("America/Guatemala")).date()
    assert spoken_date(third_day, "en") in smtp_server.received[1].text
    listed = data_of(await merchant.get(f"/v1/subscriptions/{sub_id}/notifications"))
    assert [(n["template"], n["status"], n["attempts"]) for n in listed] == [
        ("subPayProblem", "sent", 1),
        ("subPayProblem", "sent", 1),
        ("subPayProblem", "sent", 1),
        ("subscriptionSuspended", "sent", 1),
    ]
    assert all(n["to"] == "ada@example.com" for n in listed)


async def test_turned_off_types_and_empty_email_send_nothing(
    merchant: Any, runtime: Any, smtp_server: SmtpServer
) -> None:
    data_of(
        await merchant.put(
            "/v1/notifications/settings", json={"disabled": ["subPayProblem", "subscriptionSuspended"]}
        )
    )
    await _walk_episode(merchant, runtime, smtp_server)
    assert smtp_server.received == []


def _spanish(instant: datetime) -> str:
    """The local day (America/Guatemala) as the Spanish templates spell it."""
    return spoken_date(instant.astimezone(ZoneInfo("America/Guatemala")).date(), "es")


async def test_a_new_default_card_recovers_and_says_so(
    merchant: Any, runtime: Any, smtp_server: SmtpServer
) -> None:
    """First failure (subPayProblem), then a good card set as default: the retry pays, paymentRecovered."""
    plan = await create_plan(
        merchant, name="Pro", amount=29.9, trialDays=7, dailyAttempts=3, intervalAttempt=24
    )
    enrolled = await enrol(merchant, plan["id"], number=CHARGES_DECLINE, notificationEmail="ada@example.com")
    sub = enrolled["subscription"]
    await _advance(merchant, _at(sub["nextRenewalDate"]))
    good = {"number": "4242424242424242", "expMonth": 11, "expYear": 2031, "cvv": "123", "holderName": "Ada"}
    added = data_of(
        await merchant.post(
            "/v1/subscriptions/payment-methods",
            json={"tokenizeData": {"userId": "user-1", "processorId": "sandbox", "cardInfo": good}},
        ),
        201,
    )
    data_of(
        await merchant.put(
            "/v1/subscriptions/payment-methods/set-default",
            json={"subscriptionId": sub["id"], "paymentMethodId": added["id"]},
        )
    )
    data_of(await merchant.post("/v1/sandbox/clock", json={"advanceSeconds": 60}))
    await Mailer(runtime, "test-mailer").run_until_idle()
    subjects = [m.message["Subject"] for m in smtp_server.received]
    assert subjects == ["No pudimos cobrar tu suscripción Pro", "Recibimos tu pago de Pro"]
    recovered = smtp_server.received[1].text
    assert "29.90 USD" in recovered
    assert "terminada en 4242" in recovered
