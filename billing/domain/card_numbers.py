"""Spotting what may be a card number in text that is about to be kept.

Tokens and references (``may_hold_card_number``): card numbers are 12-19 digits and people write
them with spaces, dots, dashes or slashes between the groups; anything holding twelve digits in a
row once such separators are ignored is treated as a possible card number and never stored.

Free text and metadata (``holds_card_number``): a user id, an alias or a metadata note may hold
long numbers (order numbers, phone numbers), so only what a card number really is counts: a
Luhn-valid run of 13 to 19 digits, grouped by spaces or dashes at most. Card numbers belong only
in the card fields, which go to the processor and are never stored.
"""

from __future__ import annotations

import re
from typing import Final

MIN_CARD_DIGITS: Final = 12
"""The shortest card number any network issues."""

_SEPARATORS = re.compile(r"[\W_]+")
_DIGIT_RUN = re.compile(rf"\d{{{MIN_CARD_DIGITS},}}")
# A run of digits, possibly grouped by single spaces or dashes as people write card numbers.
_GROUPED_DIGITS: Final = re.compile(r"\d(?:[ -]?\d)*")
CARD_DIGITS: Final = range(13, 20)  # PAN lengths issued today: 13 to 19 digits
# At least 13 grouped digits somewhere: the cheap test that most text fails at once.
_CARD_SHAPED: Final = re.compile(r"\d(?:[ -]?\d){12}")


def may_hold_card_number(value: str) -> bool:
    """True when `value` holds `MIN_CARD_DIGITS` or more digits in a row, ignoring punctuation.

    `\\d` matches every Unicode digit, so full-width or other-script digits count too.
    """
    return _DIGIT_RUN.search(_SEPARATORS.sub("", value)) is not None


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def holds_card_number(value: str) -> bool:
    """True when ``value`` holds a Luhn-valid run of 13 to 19 ASCII digits (spaces or dashes between)."""
    if _CARD_SHAPED.search(value) is None:
        return False
    for match in _GROUPED_DIGITS.finditer(value):
        digits = match.group().replace(" ", "").replace("-", "")
        if len(digits) in CARD_DIGITS and digits.isascii() and luhn_valid(digits):
            return True
    return False
