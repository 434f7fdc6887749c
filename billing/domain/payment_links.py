"""Payment link rules without I/O: whether a link still opens, what a returnUrl may be, how the card
form is read and checked, and how a plan's price and schedule read to a cardholder in each locale."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from billing.domain.card_numbers import luhn_valid
from billing.domain.errors import spec
from billing.domain.money import from_minor
from billing.domain.text import has_control_character

LinkState = Literal["open", "enrolling", "used", "expired", "locked"]

MAX_RETURN_URL = 2000


def link_state(
    *, status: str, expires_at: datetime | None, declines: int, now: datetime, max_declines: int
) -> LinkState:
    """Where a link stands. A used link says so even once expired: that is what the cardholder
    needs to hear. A transaction from before links existed (no expiry) never opens."""
    if status == "used":
        return "used"
    if status == "enrolling":
        return "enrolling"
    if expires_at is None or now >= expires_at:
        return "expired"
    if declines >= max_declines:
        return "locked"
    return "open"


def return_url_problem(url: str, *, production: bool) -> str | None:
    """Why `url` cannot be a transaction's returnUrl, or None.

    Absolute, with a host, https (http only for sandbox clients, whose shop may run on a
    developer's machine), no user name or password in it, at most 2000 characters.
    """
    if len(url) > MAX_RETURN_URL:
        return f"returnUrl may hold at most {MAX_RETURN_URL} characters."
    if has_control_character(url, allow_whitespace=False) or any(ch.isspace() for ch in url):
        return "returnUrl must not contain spaces or control characters."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "returnUrl is not a valid URL."
    schemes = ("https",) if production else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname or port == 0:
        if production:
            return "returnUrl must be an absolute https URL (production clients)."
        return "returnUrl must be an absolute http or https URL."
    if parts.username is not None or parts.password is not None:
        return "returnUrl must not carry a user name or password."
    return None


def return_url_with(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` added to its query (the merchant's own parameters kept, ours replacing
    any of the same name); the fragment stays where it was."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query = urlencode([*kept, *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


# ---- the card form ---------------------------------------------------------------------------------

FormProblem = Literal[
    "number_missing",
    "number_invalid",
    "expiry_missing",
    "expiry_invalid",
    "expiry_past",
    "cvv_invalid",
    "name_missing",
    "name_invalid",
    "email_missing",
    "email_invalid",
]

_EXPIRY = re.compile(r"(\d{1,2})\s*[/\-. ]?\s*(\d{2}|\d{4})")
_DIGITS = re.compile(r"\d+")
_EMAIL = re.compile(r"[^@\s<>,;:\"()\[\]\\]{1,64}@[^@\s<>,;:\"()\[\]\\]+\.[^@\s.<>,;:\"()\[\]\\]{2,}")


@dataclass(frozen=True, repr=False)
class CardForm:
    """What the cardholder typed. Card fields live only for one submission; the repr hides them."""

    number: str
    expiry: str
    cvv: str
    holder_name: str
    email: str

    def __repr__(self) -> str:
        return "CardForm(number='***', expiry='***', cvv='***', holder_name='***', email='***')"

    __str__ = __repr__

    @property
    def digits(self) -> str:
        """The card number without the spaces and dashes people type."""
        return re.sub(r"[\s\-]", "", self.number)


def parse_expiry(text: str) -> tuple[int, int] | None:
    """(month, four-digit year) from "MM/YY", "MM / YY", "MMYY" or "MM/YYYY"; None if unreadable."""
    match = _EXPIRY.fullmatch(text.strip())
    if match is None:
        return None
    month, year = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        return None
    return month, (2000 + year if year < 100 else year)


def card_form_problems(
    form: CardForm, *, today_year: int, today_month: int, email_required: bool
) -> dict[str, FormProblem]:
    """Every field the cardholder must fix, by field name; empty when the form can go to the processor.

    The processor decides whether the card is good; these checks only catch typing mistakes early
    (a Luhn check, an expiry in the past), so a typo never counts as a declined card.
    """
    problems: dict[str, FormProblem] = {}
    digits = form.digits
    if not digits:
        problems["number"] = "number_missing"
    elif not (_DIGITS.fullmatch(digits) and 12 <= len(digits) <= 19 and luhn_valid(digits)):
        problems["number"] = "number_invalid"
    expiry = parse_expiry(form.expiry) if form.expiry.strip() else None
    if not form.expiry.strip():
        problems["expiry"] = "expiry_missing"
    elif expiry is None:
        problems["expiry"] = "expiry_invalid"
    elif (expiry[1], expiry[0]) < (today_year, today_month):
        problems["expiry"] = "expiry_past"
    if not (_DIGITS.fullmatch(form.cvv.strip()) and 3 <= len(form.cvv.strip()) <= 4):
        problems["cvv"] = "cvv_invalid"
    name = form.holder_name.strip()
    if not name:
        problems["holder_name"] = "name_missing"
    elif len(name) > 200 or has_control_character(name, allow_whitespace=False):
        problems["holder_name"] = "name_invalid"
    email = form.email.strip()
    if not email:
        if email_required:
            problems["email"] = "email_missing"
    elif len(email) > 320 or not _EMAIL.fullmatch(email):
        problems["email"] = "email_invalid"
    return problems


# ---- what the cardholder reads -----------------------------------------------------------------------

_SYMBOLS: Final[Mapping[str, str]] = {
    "USD": "US$",
    "GTQ": "Q",
    "EUR": "€",
    "MXN": "MX$",
    "HNL": "L",
    "CRC": "₡",
    "NIO": "C$",
    "DOP": "RD$",
    "COP": "COL$",
    "PEN": "S/",
    "GBP": "£",
    "JPY": "¥",
}


def money_text(minor: int, currency: str) -> str:
    """An amount as a cardholder reads it: the currency's symbol where one is unambiguous, digits
    grouped in thousands, exactly the currency's decimals, and the ISO code ("Q1,250.50 GTQ",
    "¥500 JPY", "1,250.500 KWD"). The point and comma follow the usage of the Americas, where
    this engine's merchants bill in both languages."""
    amount: Decimal = from_minor(minor, currency)
    grouped = f"{amount:,}"
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{grouped} {currency}" if symbol else f"{grouped} {currency}"


def frequency_words(
    plan_type: str, frequency: int | None, day: int | None, cycles: int | None, locale: str
) -> str:
    """How often a plan charges, in words: "every month", "every 30 days", "on day 15 of every
    month" / "cada mes", "cada 30 días", "el día 15 de cada mes"; a fixed term adds the number of
    payments ("for 12 payments" / "durante 12 pagos")."""
    es = locale == "es"
    if plan_type == "fixedDay":
        text = f"el día {day} de cada mes" if es else f"on day {day} of every month"
    elif plan_type == "anniversary":
        months = frequency or 1
        if months == 1:
            text = "cada mes" if es else "every month"
        elif months == 12:
            text = "cada año" if es else "every year"
        else:
            text = f"cada {months} meses" if es else f"every {months} months"
    else:
        days = frequency or 1
        if days == 1:
            text = "cada día" if es else "every day"
        elif days == 7:
            text = "cada semana" if es else "every week"
        else:
            text = f"cada {days} días" if es else f"every {days} days"
    if cycles is not None:
        if cycles == 1:
            text += ", un solo pago" if es else ", one payment only"
        else:
            text += f", durante {cycles} pagos" if es else f", for {cycles} payments"
    return text


# What a cardholder reads when the processor refuses a card, by catalog code. English is the
# catalog's own message (the one the API answers with); Spanish says the same thing.
_DECLINES_ES: Final[Mapping[str, str]] = {
    "7201": "La tarjeta fue rechazada.",
    "7202": "La tarjeta está vencida.",
    "7203": "La tarjeta fue reportada como perdida o robada.",
    "7204": "Los datos de la tarjeta no son válidos.",
    "7205": "El procesador no pudo completar la operación; inténtelo más tarde.",
    "7303": "La cuenta no tiene fondos suficientes.",
}
DECLINE_CODES: Final = tuple(_DECLINES_ES)
"""The catalog codes a card refusal on the page can carry."""


def cardholder_message(code: str, locale: str) -> str:
    """The message for a refused card: the catalog's text in English, its translation in Spanish."""
    if locale == "es":
        return _DECLINES_ES.get(code, _DECLINES_ES["7201"])
    return spec(code).message if code in _DECLINES_ES else spec("7201").message
