"""Building processors by slug from plain config values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from billing.domain.errors import BillingError
from billing.processors import (
    KNOWN_SLUGS,
    CardInfo,
    PaymentProcessor,
    SandboxProcessor,
    StripeProcessor,
    build_processors,
)
from billing.settings import ProcessorsSettings
from tests.clock import FixedClock

pytestmark = pytest.mark.anyio

KEY = "sk_test_registry_secret_123456"


async def test_builds_every_configured_processor_by_slug() -> None:
    processors = build_processors(
        {
            "sandbox": {},
            "stripe": {"api_key": KEY, "base_url": "http://127.0.0.1:8420", "localstripe": True},
        }
    )
    try:
        assert set(processors) == {"sandbox", "stripe"}
        assert isinstance(processors["sandbox"], SandboxProcessor)
        stripe = processors["stripe"]
        assert isinstance(stripe, StripeProcessor)
        assert (stripe.base_url, stripe.localstripe) == ("http://127.0.0.1:8420", True)
        assert all(isinstance(p, PaymentProcessor) and p.slug == slug for slug, p in processors.items())
    finally:
        for processor in processors.values():
            await processor.aclose()


async def test_stripe_defaults_to_the_real_api_and_takes_a_secret_str() -> None:
    processors = build_processors({"stripe": {"api_key": SecretStr(KEY)}})
    stripe = processors["stripe"]
    assert isinstance(stripe, StripeProcessor)
    assert (stripe.base_url, stripe.localstripe) == ("https://api.stripe.com", False)
    await stripe.aclose()


async def test_what_the_settings_enable_is_accepted() -> None:
    """The settings object hands the registry its config; the two must agree on option names."""
    settings = ProcessorsSettings.model_validate(
        {
            "stripe": {
                "enabled": True,
                "api_key": KEY,
                "base_url": "http://127.0.0.1:8420",
                "timeout_seconds": 4,
            }
        }
    )
    processors = build_processors(settings.enabled())
    try:
        assert set(processors) == {"sandbox", "stripe"}
    finally:
        for processor in processors.values():
            await processor.aclose()


async def test_processors_check_expiry_against_the_given_clock() -> None:
    """A sandbox clock moved past a card's expiry makes that card expired."""
    card = CardInfo(number="4242424242424242", exp_month=12, exp_year=2030, cvv="123", holder_name="A")
    later = build_processors({"sandbox": {}}, clock=FixedClock(datetime(2031, 1, 1, tzinfo=UTC)))["sandbox"]
    with pytest.raises(BillingError, match="7202"):
        await later.tokenize(card, customer_ref="u")
    now = build_processors({"sandbox": {}}, clock=FixedClock(datetime(2030, 12, 31, tzinfo=UTC)))["sandbox"]
    assert (await now.tokenize(card, customer_ref="u")).last4 == "4242"


def test_nothing_configured_builds_nothing() -> None:
    assert build_processors({}) == {}


def test_unknown_slug_is_named() -> None:
    with pytest.raises(ValueError, match="'volcan'") as caught:
        build_processors({"sandbox": {}, "volcan": {}})
    assert all(slug in str(caught.value) for slug in KNOWN_SLUGS)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({}, "api_key is required"),
        ({"api_key": 42}, "api_key is required"),
        ({"api_key": "pk_test_publishable_key"}, "secret (sk_...)"),
        ({"api_key": KEY, "base_url": "api.stripe.com"}, "base_url"),
        ({"api_key": KEY, "base_url": 8420}, "base_url"),
        ({"api_key": KEY, "localstripe": "yes"}, "localstripe"),
        ({"api_key": KEY, "api_version": 2024}, "api_version"),
        ({"api_key": KEY, "timeout_seconds": 0}, "timeout_seconds"),
        ({"api_key": KEY, "timeout_seconds": True}, "timeout_seconds"),
        ({"api_key": KEY, "timeout_seconds": "10"}, "timeout_seconds"),
        ({"api_key": KEY, "apikey": KEY, "retries": 3}, "apikey, retries"),
    ],
)
def test_bad_stripe_options_name_the_option_never_the_value(
    options: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match="processor 'stripe'") as caught:
        build_processors({"stripe": options})
    assert complaint in str(caught.value)
    assert KEY not in str(caught.value)
    assert "pk_test_publishable_key" not in str(caught.value)


def test_sandbox_takes_no_options() -> None:
    with pytest.raises(ValueError, match="processor 'sandbox': unknown option"):
        build_processors({"sandbox": {"seed": 1}})


def test_a_bad_entry_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """All entries are checked before any processor (and its HTTP client) is created."""
    built: list[str] = []
    monkeypatch.setattr(StripeProcessor, "__init__", lambda self, *a, **k: built.append("stripe"))
    with pytest.raises(ValueError, match="'nope'"):
        build_processors({"stripe": {"api_key": KEY}, "nope": {}})
    assert built == []
