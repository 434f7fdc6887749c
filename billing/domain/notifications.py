"""E-mail notification rules without I/O: which event sends which e-mail, the retry schedule, what an
SMTP answer means, when a card counts as expiring, and how amounts and dates read in each locale."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

from billing.domain.money import from_minor

Template = Literal[
    "subPayProblem", "subscriptionSuspended", "paymentRecovered", "subscriptionExpired", "cardExpiring"
]
TEMPLATES: tuple[str, ...] = get_args(Template)
Locale = Literal["es", "en"]
LOCALES: tuple[str, ...] = get_args(Locale)

EVENT_TEMPLATES: Final[Mapping[str, str]] = {
    "subscription.payment_failed": "subPayProblem",
    "subscription.inactive": "subscriptionSuspended",
    "subscription.recovered": "paymentRecovered",
    "subscription.expired": "subscriptionExpired",
    "payment_method.expiring": "cardExpiring",
}
"""The event that queues each e-mail (a failed retry queues subPayProblem too when the client asks)."""

RETRY_FAILED: Final = "charge.failed"
# Events in the same write that make a failed retry's subPayProblem pointless: the retry's
# fallback card paid, or the episode ended (subscriptionSuspended says it instead).
_SUPERSEDES_RETRY: Final = frozenset({"charge.succeeded", "subscription.recovered", "subscription.inactive"})


def template_of(
    event_type: str, payload: Mapping[str, Any], *, each_attempt: bool, same_write: frozenset[str]
) -> str | None:
    """The e-mail an event queues, or None.

    `same_write`: the types of the other events of the same subscription written with this one.
    A failed renewal retry (attempt 2 and later) queues subPayProblem only with `each_attempt`,
    and not when the same write also reports a success or the end of the episode.
    """
    if event_type in EVENT_TEMPLATES:
        return EVENT_TEMPLATES[event_type]
    if event_type != RETRY_FAILED or not each_attempt:
        return None
    attempt = payload.get("attempt")
    if payload.get("kind") != "renewal" or not isinstance(attempt, int) or attempt < 2:
        return None
    if same_write & _SUPERSEDES_RETRY:
        return None
    return "subPayProblem"


GIVE_UP_AFTER: Final = timedelta(days=3)


def smtp_permanent(code: int | None) -> bool:
    """A 5xx answer refuses this message for good (bad mailbox, policy): retrying cannot help."""
    return code is not None and 500 <= code < 600


_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]{1,64}@[^@\s<>,;:\"()\[\]\\]+\.[^@\s.<>,;:\"()\[\]\\]{2,}")


def header_safe(value: str) -> bool:
    """Whether `value` can go in a mail header as is: no CR, LF or other control character."""
    return not _HEADER_UNSAFE.search(value)


def mailbox_ok(address: str) -> bool:
    """A single plain mailbox (no display name, no list, nothing a header could be split with)."""
    return header_safe(address) and _ADDRESS.fullmatch(address) is not None


def card_expires_at(exp_month: int, exp_year: int, timezone: str) -> datetime:
    """A card stops working when its expiry month ends: the first instant of the next month, locally."""
    year, month = (exp_year + 1, 1) if exp_month == 12 else (exp_year, exp_month + 1)
    return datetime(year, month, 1, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def expiring_soon(expires_at: datetime, now: datetime, days: int) -> bool:
    """Within `days` days of expiring and not expired yet."""
    return days > 0 and now < expires_at <= now + timedelta(days=days)


def months_ahead(now: datetime, days: int) -> int:
    """The latest `year * 12 + month` a card may expire in to be within `days` days of `now` (a coarse
    bound the store filters with before the exact check)."""
    later = now + timedelta(days=days + 1)
    return later.year * 12 + later.month


_MONTHS: Final[Mapping[str, tuple[str, ...]]] = {
    "en": tuple(
        [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ]
    ),
    "es": tuple(
        [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ]
    ),
}


def local_date(instant: datetime | str | None, timezone: str, locale: str) -> str:
    """A day as a cardholder reads it, in the client's time zone: "March 5, 2026" / "5 de marzo de 2026"."""
    if instant is None or instant == "":
        return ""
    moment = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    day = moment.astimezone(ZoneInfo(timezone)).date()
    return spoken_date(day, locale)


def spoken_date(day: date, locale: str) -> str:
    month = _MONTHS.get(locale, _MONTHS["en"])[day.month - 1]
    if locale == "es":
        return f"{day.day} de {month} de {day.year}"
    return f"{month} {day.day}, {day.year}"


def amount_text(minor: int | None, currency: str | None) -> str:
    """An amount with its currency's precision: "29.90 USD", "500 JPY"."""
    if minor is None or not currency:
        return ""
    return f"{from_minor(minor, currency)} {currency}"
