"""What a payment link shows: the merchant, the plan and its price and schedule in the cardholder's
terms, and whether the link still opens.

The schedule shown is the one enrolment would create right now (the same `new_subscription` rule
verify-card uses), in the client's time zone and locale (the locale of its e-mail notifications).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from billing.domain.calendar import local_date
from billing.domain.errors import BillingError
from billing.domain.notifications import LOCALES, spoken_date
from billing.domain.payment_links import LinkState, frequency_words, link_state, money_text
from billing.services.client_clock import client_now
from billing.services.enrolment.settlement import EnrolmentContext, new_subscription
from billing.services.runtime import Runtime
from billing.store import payment_links as store
from billing.store.engine import Session
from billing.store.models import Client, Plan, Transaction
from billing.store.notifications import client_settings

# Test cards shown to sandbox clients' cardholders (the sandbox processor's and Stripe's test mode
# share them): number as printed, what it does.
TEST_CARDS: tuple[tuple[str, str], ...] = (
    ("4242 4242 4242 4242", "approve"),
    ("4000 0000 0000 9995", "insufficient_funds"),
    ("4000 0000 0000 0002", "decline"),
)

_GONE: Mapping[LinkState, Any] = {
    "used": "PAYMENT_LINK_USED",
    "expired": "PAYMENT_LINK_EXPIRED",
    "locked": "PAYMENT_LINK_LOCKED",
    "enrolling": "PAYMENT_LINK_IN_PROGRESS",
}


def link_url(public_url: str, reference: str) -> str:
    """The payment link of a transaction: `{public_url}/pay/{reference}`."""
    return f"{public_url.rstrip('/')}/pay/{reference}"


@dataclass(frozen=True)
class PaymentPage:
    """Everything the page shows; texts are already in the cardholder's locale."""

    reference: str
    locale: str
    merchant_name: str
    processor: str
    sandbox: bool
    enrols: bool  # False: the link verifies and saves the card only
    amount_text: str  # the plan's price, or the verification hold when the link saves a card
    plan_name: str | None = None
    plan_description: str | None = None
    frequency_text: str | None = None
    trial_days: int = 0
    trial_ends_text: str | None = None
    first_charge_text: str | None = None  # None: charged today
    next_charge_text: str | None = None  # the charge after the first one
    test_cards: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class OpenLink:
    """A link's rows, as loaded for one request."""

    transaction: Transaction
    client: Client
    plan: Plan | None
    locale: str
    merchant_name: str


def page_processor(processors: Mapping[str, Any], plan: Plan | None, client: Client) -> str:
    """The processor a link sends the card to: the plan's first allowed processor that is installed;
    else the sandbox for sandbox clients and a real processor for production ones, when installed.
    7005 when nothing fits."""
    installed = list(processors)
    if plan is not None and plan.methods:
        allowed = [slug for slug in plan.methods if slug in processors]
    elif client.environment == "sandbox":
        allowed = sorted(installed, key=lambda slug: slug != "sandbox")
    else:
        allowed = sorted(installed, key=lambda slug: slug == "sandbox")
    if not allowed:
        raise BillingError("PROCESSOR_NOT_FOUND", message="No installed processor can take this link's card.")
    return allowed[0]


async def load_link(session: Session, reference: str, *, now: datetime, max_declines: int) -> OpenLink:
    """The link's rows if it still takes a card; else the catalog error saying why (7801 unknown,
    7802 used, 7803 expired, 7804 locked, 7807 a payment still being confirmed)."""
    trx = await store.transaction_by_reference(session, reference)
    client, plan = await store.link_parts(session, trx) if trx is not None else (None, None)
    if trx is None or client is None or (trx.plan_id is not None and plan is None):
        raise BillingError("PAYMENT_LINK_NOT_FOUND")
    state = link_state(
        status=trx.status,
        expires_at=trx.link_expires_at,
        declines=trx.link_declines,
        now=now,
        max_declines=max_declines,
    )
    settings = await client_settings(session, client.id)
    locale = settings.locale if settings.locale in LOCALES else "es"
    link = OpenLink(trx, client, plan, locale, settings.sender_name or client.name)
    if state != "open":
        raise BillingError(_GONE[state], data={"locale": locale, "merchant": link.merchant_name})
    return link


def _preview(plan: Plan, client: Client, local_now: datetime) -> tuple[date | None, date, date | None]:
    """(trial end, first charge, the charge after it) as local dates if the cardholder enrolled now;
    with a trial the first charge is at its end and the one after it is not shown."""
    context = EnrolmentContext(
        trx_id="preview",
        plan_id=plan.id,
        user_id="preview",
        payment_method_id="preview",
        notification_email=None,
        timezone=client.timezone,
        enrolled_on=local_date(local_now, client.timezone),
        enrolled_at=local_now,
    )
    preview = new_subscription(plan, context, client_id=client.id, now=local_now)
    today = local_date(local_now, client.timezone)
    assert preview.current_period_end is not None  # set for every new subscription
    period_end = local_date(preview.current_period_end, client.timezone)
    if preview.trial_ends_at is not None:
        return period_end, period_end, None
    return None, today, None if plan.cycles == 1 else period_end


def describe(link: OpenLink, runtime: Runtime) -> PaymentPage:
    """The page of an open link."""
    trx, client, plan, locale = link.transaction, link.client, link.plan, link.locale
    processor = page_processor(runtime.processors, plan, client)
    sandbox = client.environment == "sandbox"
    common: dict[str, Any] = {
        "reference": trx.reference,
        "locale": locale,
        "merchant_name": link.merchant_name,
        "processor": processor,
        "sandbox": sandbox,
        "test_cards": TEST_CARDS if sandbox else (),
    }
    if plan is None:
        return PaymentPage(enrols=False, amount_text=money_text(trx.amount_minor, trx.currency), **common)
    trial_end, first, following = _preview(plan, client, client_now(runtime.clock, client))
    today = local_date(client_now(runtime.clock, client), client.timezone)
    return PaymentPage(
        enrols=True,
        amount_text=money_text(plan.amount_minor, plan.currency),
        plan_name=plan.name,
        plan_description=plan.short_description,
        frequency_text=frequency_words(plan.type, plan.frequency, plan.frequency_day, plan.cycles, locale),
        trial_days=plan.trial_days,
        trial_ends_text=spoken_date(trial_end, locale) if trial_end else None,
        first_charge_text=None if first == today else spoken_date(first, locale),
        next_charge_text=spoken_date(following, locale) if following else None,
        **common,
    )


async def open_link(runtime: Runtime, reference: str) -> PaymentPage:
    """The page behind `/pay/{reference}`, or the catalog error saying why the link does not open."""
    async with runtime.sessions() as session:
        link = await load_link(
            session,
            reference,
            now=runtime.clock.now(),
            max_declines=runtime.settings.payment_links.max_declines,
        )
    return describe(link, runtime)
