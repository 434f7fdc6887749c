"""Spotting what may be a card number in text that is about to be kept (tokens, references).

Card numbers are 12-19 digits and people write them with spaces, dots, dashes or slashes
between the groups. Anything holding twelve digits in a row once such separators are ignored
is treated as a possible card number and never stored.
"""

from __future__ import annotations

import re
from typing import Final

MIN_CARD_DIGITS: Final = 12
"""The shortest card number any network issues."""

_SEPARATORS = re.compile(r"[\W_]+")
_DIGIT_RUN = re.compile(rf"\d{{{MIN_CARD_DIGITS},}}")


def may_hold_card_number(value: str) -> bool:
    """True when `value` holds `MIN_CARD_DIGITS` or more digits in a row, ignoring punctuation.

    `\\d` matches every Unicode digit, so full-width or other-script digits count too.
    """
    return _DIGIT_RUN.search(_SEPARATORS.sub("", value)) is not None
