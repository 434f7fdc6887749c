"""Notification rules: which event e-mails what, what an SMTP answer means, when a card is expiring,
how amounts and dates read, and which values may go in a header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.domain.notifications import (
    amount_text,
    card_expires_at,
    expiring_soon,
    local_date,
    mailbox_ok,
    months_ahead,
    smtp_permanent,
    template_of,
)

NOTHING: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("event", "template"),
    [
        ("subscription.payment_failed", "subPayProblem"),
        ("subscription.inactive", "subscriptionSuspended"),
        ("subscription.recovered", "paymentRecovered"),
        ("subscription.expired", "subscriptionExpired"),
        ("payment_method.expiring", "cardExpiring"),
        ("subscription.renewed", None),
        ("charge.succeeded", None),
    ],
)
def test_events_and_their_emails(event: str, template: str | None) -> None:
    assert template_of(event, {}, each_attempt=True, same_write=NOTHING) == template


def test_a_failed_retry_emails_only_when_asked_and_only_if_the_episode_goes_on() -> None:
    retry = {"kind": "renewal", "attempt": 2}
    assert template_of("charge.failed", retry, each_attempt=False, same_write=NOTHING) is None
    assert template_of("charge.failed", retry, each_attempt=True, same_write=NOTHING) == "subPayProblem"
    # The first attempt's failure already sends subPayProblem through subscription.payment_failed.
    first = {"kind": "renewal", "attempt": 1}
    assert template_of("charge.failed", first, each_attempt=True, same_write=NOTHING) is None
    assert (
        template_of(
            "charge.failed", {"kind": "on_demand", "attempt": 2}, each_attempt=True, same_write=NOTHING
        )
        is None
    )
    for ending in ("subscription.inactive", "charge.succeeded", "subscription.recovered"):
        assert template_of("charge.failed", retry, each_attempt=True, same_write=frozenset({ending})) is None


def test_only_5xx_is_permanent() -> None:
    assert [smtp_permanent(c) for c in (None, 250, 421, 451, 550, 554)] == [
        False,
        False,
        False,
        False,
        True,
        True,
    ]


def test_a_card_expires_when_its_month_ends_locally() -> None:
    expires = card_expires_at(2, 2026, "America/Guatemala")
    assert expires == datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    assert card_expires_at(12, 2026, "UTC") == datetime(2027, 1, 1, tzinfo=UTC)
    assert not expiring_soon(expires, expires - timedelta(days=30, seconds=1), 30)
    assert expiring_soon(expires, expires - timedelta(days=30), 30)
    assert not expiring_soon(expires, expires, 30)  # already expired
    assert not expiring_soon(expires, expires - timedelta(days=1), 0)  # notices off
    now = datetime(2026, 1, 15, tzinfo=UTC)
    assert months_ahead(now, 30) >= 2026 * 12 + 2


def test_amounts_and_dates_as_cardholders_read_them() -> None:
    assert amount_text(2990, "USD") == "29.90 USD"
    assert amount_text(500, "JPY") == "500 JPY"
    assert amount_text(1234, "KWD") == "1.234 KWD"
    midnight_utc = "2026-03-01T03:00:00+00:00"  # still Feb 28 in Guatemala
    assert local_date(midnight_utc, "America/Guatemala", "es") == "28 de febrero de 2026"
    assert local_date(midnight_utc, "America/Guatemala", "en") == "February 28, 2026"
    assert local_date(midnight_utc, "UTC", "en") == "March 1, 2026"


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("ada@example.com", True),
        ("ada@example.com\r\nBcc: x@example.com", False),
        ("ada@example.com\nBcc: x@example.com", False),
        ("Ada <ada@example.com>", False),
        ("ada@example.com, eve@example.com", False),
    ],
)
def test_only_a_single_plain_mailbox_goes_in_to(address: str, ok: bool) -> None:
    assert mailbox_ok(address) is ok
