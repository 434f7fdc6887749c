"""Payment link rules: link states, return URLs, the card form, and texts as cardholders read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.domain.errors import spec
from billing.domain.payment_links import (
    DECLINE_CODES,
    CardForm,
    card_form_problems,
    cardholder_message,
    frequency_words,
    link_state,
    money_text,
    parse_expiry,
    return_url_problem,
    return_url_with,
)

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expires_in", "declines", "state"),
    [
        ("created", timedelta(days=1), 0, "open"),
        ("created", timedelta(days=1), 4, "open"),
        ("created", timedelta(days=1), 5, "locked"),
        ("created", timedelta(0), 0, "expired"),
        ("created", None, 0, "expired"),  # from before links existed
        ("used", -timedelta(days=1), 9, "used"),  # used says so even once expired
        ("enrolling", timedelta(days=1), 0, "enrolling"),
    ],
)
def test_link_state(status: str, expires_in: timedelta | None, declines: int, state: str) -> None:
    expires_at = NOW + expires_in if expires_in is not None else None
    assert (
        link_state(status=status, expires_at=expires_at, declines=declines, now=NOW, max_declines=5) == state
    )


@pytest.mark.parametrize(
    ("url", "production", "ok"),
    [
        ("https://shop.example.com/done?x=1#top", True, True),
        ("http://shop.example.com/done", True, False),
        ("http://localhost:3000/done", False, True),
        ("https://user:pass@shop.example.com/", False, False),
        ("javascript:alert(1)", False, False),
        ("//shop.example.com/", False, False),
        ("https://shop.example.com/a b", False, False),
        ("https://shop.example.com/\r\nx", False, False),
        ("https://" + "a" * 2000 + ".com/", False, False),
        ("https://shop.example.com:99999/", False, False),
    ],
)
def test_return_urls(url: str, production: bool, ok: bool) -> None:
    assert (return_url_problem(url, production=production) is None) is ok


def test_the_outcome_joins_the_merchants_query() -> None:
    url = return_url_with(
        "https://shop.example.com/done?order=7&status=x#top", {"status": "approved", "uid": "t"}
    )
    assert url == "https://shop.example.com/done?order=7&status=approved&uid=t#top"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("12/30", (12, 2030)),
        ("1 / 2031", (1, 2031)),
        ("0530", (5, 2030)),
        ("13/30", None),
        ("00/30", None),
        ("12/3", None),
        ("soon", None),
    ],
)
def test_expiry(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_expiry(text) == parsed


def test_the_form_names_every_mistake_and_hides_itself() -> None:
    form = CardForm(number="4242 4242 4242 4241", expiry="12/25", cvv="1", holder_name=" ", email="x@")
    problems = card_form_problems(form, today_year=2026, today_month=1, email_required=True)
    assert problems == {
        "number": "number_invalid",
        "expiry": "expiry_past",
        "cvv": "cvv_invalid",
        "holder_name": "name_missing",
        "email": "email_invalid",
    }
    good = CardForm(number="4242-4242-4242-4242", expiry="01/26", cvv="123", holder_name="Ada", email="")
    assert card_form_problems(good, today_year=2026, today_month=1, email_required=False) == {}
    assert "4242" not in repr(good)
    assert "Ada" not in str(good)


def test_prices_and_frequencies_read_like_prose() -> None:
    assert money_text(125050, "GTQ") == "Q1,250.50 GTQ"
    assert money_text(500, "JPY") == "¥500 JPY"
    assert money_text(1250500, "KWD") == "1,250.500 KWD"
    assert frequency_words("interval", 30, None, None, "es") == "cada 30 días"
    assert frequency_words("anniversary", 1, None, 12, "en") == "every month, for 12 payments"
    assert frequency_words("fixedDay", None, 15, None, "es") == "el día 15 de cada mes"
    assert frequency_words("anniversary", 12, None, 1, "es") == "cada año, un solo pago"


def test_every_decline_has_a_message_in_both_languages() -> None:
    for code in DECLINE_CODES:
        assert cardholder_message(code, "en") == spec(code).message
        assert cardholder_message(code, "es")
        assert cardholder_message(code, "es") != cardholder_message(code, "en")
    assert cardholder_message("7303", "es") == "La cuenta no tiene fondos suficientes."
