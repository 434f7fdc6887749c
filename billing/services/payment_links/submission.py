"""A card submitted on a payment link: checked, limited, then enrolled by verify-card itself.

The page has no enrolment logic of its own: the card goes through `verify_card` (with
`shouldCreateSubscription` when the link names a plan), exactly as an API call would, so the
first charge, the events and the crash-safety are the API's. What this module adds is the page's
guard rails: typing mistakes caught before the processor is asked, the per-IP limit, and the
link's decline counter that locks it after `payment_links.max_declines` refusals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from billing.domain.calendar import local_date
from billing.domain.errors import BillingError
from billing.domain.notifications import spoken_date
from billing.domain.payment_links import (
    DECLINE_CODES,
    CardForm,
    card_form_problems,
    parse_expiry,
    return_url_with,
)
from billing.processors.base import CardInfo
from billing.services.client_clock import client_now
from billing.services.enrolment import VerifyCardRequest, verify_card
from billing.services.payment_links.attempts import admit_attempt
from billing.services.payment_links.pages import OpenLink, load_link, page_processor
from billing.services.runtime import Runtime
from billing.store import payment_links as store
from billing.store.engine import transaction

log = logging.getLogger("billing.payment_links")

# Refusals that are about the card (they count towards locking the link); a processor that could
# not answer (7205) is not the cardholder's doing.
_COUNTED = frozenset(DECLINE_CODES) - {"7205"}


@dataclass(frozen=True)
class Receipt:
    """What the cardholder sees after the card was accepted."""

    reference: str
    locale: str
    merchant_name: str
    last4: str | None
    brand: str | None
    plan_name: str | None = None
    subscription_id: str | None = None
    next_renewal_text: str | None = None
    trial_ends_text: str | None = None
    return_to: str | None = None  # returnUrl with the outcome in its query


def _card(form: CardForm, month: int, year: int) -> CardInfo:
    return CardInfo(
        number=form.digits, exp_month=month, exp_year=year, cvv=form.cvv.strip(), holder_name=form.holder_name
    )


async def submit_card(runtime: Runtime, *, reference: str, form: CardForm, address: str) -> Receipt:
    """Enrol (or save the card) through the link `reference`.

    Raises the catalog error the page shows: 7801-7804/7807 when the link does not take a card,
    7204 with `data["fields"]` (field -> problem) for typing mistakes, 7805 past the per-IP
    limit, a decline's code (7201, 7202, 7203, 7204, 7303) or 7205 from verify-card, and 7804
    when this decline locked the link.
    """
    limits = runtime.settings.payment_links
    async with runtime.sessions() as session:
        link = await load_link(session, reference, now=runtime.clock.now(), max_declines=limits.max_declines)
    today = local_date(client_now(runtime.clock, link.client), link.client.timezone)
    problems = card_form_problems(
        form, today_year=today.year, today_month=today.month, email_required=link.plan is not None
    )
    if problems:
        raise BillingError("INVALID_CARD_DATA", field=next(iter(problems)), data={"fields": problems})
    await admit_attempt(runtime, address=address, trx_id=link.transaction.id)
    month, year = _expiry(form)
    request = VerifyCardRequest(
        transaction_id=link.transaction.id,
        processor=page_processor(runtime.processors, link.plan, link.client),
        card=_card(form, month, year),
        create_subscription=link.plan is not None,
        plan_id=link.plan.id if link.plan is not None else None,
        notification_email=form.email.strip() or None if link.plan is not None else None,
    )
    try:
        enrolment = await verify_card(runtime, client_id=link.client.id, request=request)
    except BillingError as exc:
        raise await _refused(runtime, link, exc) from exc
    method, subscription = enrolment.payment_method, enrolment.subscription
    log.info("payment link used", extra={"transaction": link.transaction.id, "payment_method": method.id})
    params = {"uid": link.transaction.id, "reference": reference, "status": "approved"}
    if subscription is not None:
        params["subscriptionId"] = subscription.id
    else:
        params["paymentMethodId"] = method.id
    tz, locale = link.client.timezone, link.locale
    return Receipt(
        reference=reference,
        locale=locale,
        merchant_name=link.merchant_name,
        last4=method.last4,
        brand=method.brand,
        plan_name=link.plan.name if link.plan is not None else None,
        subscription_id=subscription.id if subscription is not None else None,
        next_renewal_text=(
            spoken_date(local_date(subscription.next_attempt_at, tz), locale)
            if subscription is not None and subscription.next_attempt_at is not None
            else None
        ),
        trial_ends_text=(
            spoken_date(local_date(subscription.trial_ends_at, tz), locale)
            if subscription is not None and subscription.trial_ends_at is not None
            else None
        ),
        return_to=(
            return_url_with(link.transaction.return_url, params) if link.transaction.return_url else None
        ),
    )


def _expiry(form: CardForm) -> tuple[int, int]:
    parsed = parse_expiry(form.expiry)
    if parsed is None:  # pragma: no cover - card_form_problems refused it
        raise BillingError("INVALID_CARD_DATA", field="expiry")
    return parsed


async def _refused(runtime: Runtime, link: OpenLink, exc: BillingError) -> BillingError:
    """The error the page shows for verify-card's refusal; a card refusal counts towards the lock."""
    if exc.name == "TRANSACTION_ALREADY_USED":
        return BillingError("PAYMENT_LINK_USED", data=_gone_data(link))
    if exc.name == "STATE_CONFLICT":
        return BillingError("PAYMENT_LINK_IN_PROGRESS", data=_gone_data(link))
    if exc.code not in _COUNTED:
        if exc.code == "7205" and await _enrolling(runtime, link):
            # The first charge's outcome never arrived: the recovery pass settles it, once.
            return BillingError("PAYMENT_LINK_IN_PROGRESS", data=_gone_data(link))
        return exc
    async with transaction(runtime.sessions) as session:
        trx = await store.transaction_by_reference(session, link.transaction.reference)
        declines = await store.add_decline(session, trx) if trx is not None else 0
    log.info("payment link card refused", extra={"transaction": link.transaction.id, "code": exc.code})
    if declines >= runtime.settings.payment_links.max_declines:
        return BillingError("PAYMENT_LINK_LOCKED", data={**_gone_data(link), "decline": exc.code})
    return exc


async def _enrolling(runtime: Runtime, link: OpenLink) -> bool:
    async with runtime.sessions() as session:
        trx = await store.transaction_by_reference(session, link.transaction.reference)
    return trx is not None and trx.status == "enrolling"


def _gone_data(link: OpenLink) -> dict[str, str]:
    return {"locale": link.locale, "merchant": link.merchant_name}
