"""Card-expiry notices: a default card expiring next month gets one cardExpiring e-mail (and one
`payment_method.expiring` event), not one per day, once the plan's daysNotifyExpiringCard window opens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.services.notifications import Mailer, run_expiring_cards
from tests.api.conftest import create_plan, create_transaction, data_of
from tests.services.notifications.conftest import SmtpServer

pytestmark = pytest.mark.anyio


async def _enrol_with_card(merchant: Any, plan_id: str, exp_month: int, exp_year: int) -> dict[str, Any]:
    trx = await create_transaction(merchant)
    card = {"number": "4242424242424242", "expMonth": exp_month, "expYear": exp_year, "cvv": "123"}
    body = {
        "uid": trx["uid"],
        "processor": "sandbox",
        "cardInfo": {**card, "holderName": "Ada Lovelace"},
        "shouldCreateSubscription": True,
        "planUid": plan_id,
        "notificationEmail": "ada@example.com",
    }
    result: dict[str, Any] = data_of(await merchant.post("/v1/subscriptions/verify-card", json=body))
    return result


async def test_card_expiring_next_month_gets_one_notice(
    merchant: Any, runtime: Any, clock: Any, smtp_server: SmtpServer
) -> None:
    """Enrolled Jan 15 with a card valid through February; 30 days' notice: the window opens when
    March 1 (local) is 30 days away, and walking 45 days one at a time sends exactly one e-mail."""
    assert clock.now() == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    plan = await create_plan(merchant, daysNotifyExpiringCard=30, frequency={"frequency": 30})
    await _enrol_with_card(merchant, plan["id"], 2, 2026)
    await _enrol_with_card(merchant, plan["id"], 12, 2030)  # far from expiring: no notice
    mailer = Mailer(runtime, "test-mailer")
    noticed_on: list[datetime] = []
    for _ in range(45):
        data_of(await merchant.post("/v1/sandbox/clock", json={"advanceSeconds": 86400}))
        # The worker's daily pass runs too (the client's now is real time plus its offset).
        await run_expiring_cards(runtime, "test-worker")
        await mailer.run_until_idle()
        if len(smtp_server.received) > len(noticed_on):
            noticed_on.append(datetime.fromisoformat(data_of(await merchant.get("/v1/sandbox/clock"))["now"]))
    assert len(smtp_server.received) == 1
    mail = smtp_server.received[0]
    assert mail.message["Subject"] == "Tu tarjeta terminada en 4242 vence pronto"
    assert "28 de febrero de 2026" in mail.text
    opens = datetime(2026, 3, 1, 6, 0, tzinfo=UTC) - timedelta(days=30)  # midnight in Guatemala
    assert opens <= noticed_on[0] < opens + timedelta(days=1)
    events = data_of(await merchant.get("/v1/events", params={"type": "payment_method.expiring"}))
    items = events["items"] if isinstance(events, dict) else events
    assert len(items) == 1


async def test_no_notice_without_days_notify_expiring_card(
    merchant: Any, runtime: Any, smtp_server: SmtpServer
) -> None:
    plan = await create_plan(merchant)
    await _enrol_with_card(merchant, plan["id"], 2, 2026)
    data_of(await merchant.post("/v1/sandbox/clock", json={"advanceSeconds": 40 * 86400}))
    assert await run_expiring_cards(runtime, "test-worker") == 0
    await Mailer(runtime, "test-mailer").run_until_idle()
    assert smtp_server.received == []
