"""Card data checks every processor runs before it talks to anyone: Luhn, expiry, brand.

Refusing malformed data locally keeps junk off the wire and gives every processor the same
error for the same mistake.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from billing.domain.errors import BillingError
from billing.processors.base import CardInfo

MAX_YEARS_AHEAD: Final = 50
"""How far in the future an expiry year may lie; issuers print far shorter validity."""


def ascii_digits(text: str) -> bool:
    """True when `text` is non-empty and only 0-9 (`str.isdigit` also accepts "²" and "٣")."""
    return text.isascii() and text.isdigit()


def luhn_valid(number: str) -> bool:
    """True when `number` is all ASCII digits and passes the Luhn checksum."""
    if not ascii_digits(number):
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """The card network by IIN prefix; "unknown" for anything not recognised."""
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if "51" <= number[:2] <= "55" or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number.startswith(("6011", "65")) or "644" <= number[:3] <= "649":
        return "discover"
    return "unknown"


def full_exp_year(exp_year: int) -> int:
    """Two-digit years mean this century, as printed on cards."""
    return exp_year + 2000 if 0 <= exp_year < 100 else exp_year


def check_card(card: CardInfo, now: datetime) -> None:
    """Raise BillingError INVALID_CARD_DATA or CARD_EXPIRED when `card` cannot be tokenized.

    A card is good through the last day of its expiry month. Every field is bounded here, before
    any processor is called, so nothing out of range reaches a processor or a database column.
    """
    if not (12 <= len(card.number) <= 19) or not luhn_valid(card.number):
        raise BillingError("INVALID_CARD_DATA", message="The card number is not valid.", field="number")
    if not 1 <= card.exp_month <= 12:
        raise BillingError("INVALID_CARD_DATA", message="The expiry month must be 1-12.", field="expMonth")
    if not (ascii_digits(card.cvv) and 3 <= len(card.cvv) <= 4):
        raise BillingError("INVALID_CARD_DATA", message="The CVV must be 3 or 4 digits.", field="cvv")
    if card.exp_year < 0 or full_exp_year(card.exp_year) > now.year + MAX_YEARS_AHEAD:
        raise BillingError(
            "INVALID_CARD_DATA",
            message=f"The expiry year must be a year (or its last two digits) at most {MAX_YEARS_AHEAD} years ahead.",
            field="expYear",
        )
    if (full_exp_year(card.exp_year), card.exp_month) < (now.year, now.month):
        raise BillingError("CARD_EXPIRED", field="expYear")
