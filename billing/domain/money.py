"""Exact money: ISO 4217 currencies, their minor units, and amount parsing.

Amounts arrive as decimals (JSON parsed with `parse_float=Decimal`), as integers or as
strings (CSV cells), and are stored as integer minor units plus a currency code. Nothing
here ever goes through `float`: a float amount is a programming error and raises
`TypeError`, because the rounding has already happened by the time we would see it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from billing.domain.errors import BillingError

# ISO 4217 codes in circulation, with the number of digits after the decimal separator
# (the "minor unit" column). Fund codes that are real units of account (BOV, CHE, CHW,
# CLF, COU, MXV, USN, UYI, UYW) are kept; precious metals, SDRs and the test/"no currency"
# codes (XAU, XDR, XTS, XXX, ...) have no minor unit and cannot be charged, so they are left
# out. ANG and BGN are being replaced (by XCG and EUR) but still appear on live subscriptions.
_EXPONENTS: Final[dict[str, int]] = {
    # zero-decimal currencies
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # three-decimal currencies
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four-decimal units of account
    "CLF": 4, "UYW": 4,
    # two-decimal currencies
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2,
    "AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BMD": 2, "BND": 2,
    "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2,
    "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CNY": 2, "COP": 2, "COU": 2,
    "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2,
    "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2,
    "GIP": 2, "GMD": 2, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "IRR": 2, "JMD": 2, "KES": 2, "KGS": 2, "KHR": 2,
    "KPW": 2, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2,
    "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2,
    "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2,
    "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2, "PAB": 2, "PEN": 2, "PGK": 2,
    "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "SAR": 2,
    "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2,
    "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2,
    "TMT": 2, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "USD": 2,
    "USN": 2, "UYU": 2, "UZS": 2, "VED": 2, "VES": 2, "WST": 2, "XCD": 2, "XCG": 2,
    "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

CURRENCY_EXPONENTS: Final = MappingProxyType(_EXPONENTS)
"""Read-only view: ISO 4217 code -> number of minor-unit digits."""

MAX_MINOR: Final = 2**63 - 1
"""Largest storable amount in minor units (the columns are signed 64-bit integers)."""

# Plain decimal notation only for text input (CSV cells): no exponents, no underscores,
# no "1." or ".5", which `Decimal()` would otherwise accept.
_PLAIN_DECIMAL = re.compile(r"[+-]?\d+(?:\.\d+)?")


def normalize_currency(currency: str, *, field: str = "currency") -> str:
    """Return the upper-case ISO 4217 code, or raise 7016 UNSUPPORTED_CURRENCY."""
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if code not in _EXPONENTS:
        raise BillingError("UNSUPPORTED_CURRENCY", field=field)
    return code


def minor_units(currency: str) -> int:
    """Number of digits after the decimal separator for `currency` (USD 2, JPY 0, KWD 3)."""
    return _EXPONENTS[normalize_currency(currency)]


def to_minor(amount: Decimal | int | str, currency: str, *, field: str = "amount") -> int:
    """Convert a major-unit amount to integer minor units, exactly.

    `Decimal("10.50")`, `10` and `"10.50"` in USD all give 1050; trailing zeros beyond the
    currency's precision are fine ("10.500" USD), a non-zero digit beyond it is not.

    Raises `TypeError` for floats (and bools), 7016 for an unknown currency, 7002 for
    anything that is not a finite amount representable in the currency, and 7001 for zero
    or negative amounts. `field` names the input in the error.
    """
    if isinstance(amount, float | bool) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"amount must be Decimal, int or str, not {type(amount).__name__}")
    exponent = _EXPONENTS[normalize_currency(currency)]

    if isinstance(amount, str):
        text = amount.strip()
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise BillingError("INVALID_FORMAT_AMOUNT", field=field)
        value = Decimal(text)
    else:
        value = Decimal(amount)
    if not value.is_finite():
        raise BillingError("INVALID_FORMAT_AMOUNT", field=field)

    # Work on the (sign, digits, exponent) triple rather than with Decimal arithmetic:
    # the default context rounds to 28 digits, which would silently accept
    # 1.0000000000000000000000000000001 as 1.
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)  # finite, checked above
    coefficient = "".join(map(str, digits)).lstrip("0")
    stripped = coefficient.rstrip("0")
    exp += len(coefficient) - len(stripped)
    if not stripped:
        raise BillingError("GREATER_THAN_ZERO", field=field)
    shift = exp + exponent
    if shift < 0:
        raise BillingError(
            "INVALID_FORMAT_AMOUNT",
            message=f"{field} has more than {exponent} decimal places for this currency.",
            field=field,
        )
    # A negative amount is refused as negative however large it is.
    if sign:
        raise BillingError("GREATER_THAN_ZERO", field=field)
    if len(stripped) + shift > len(str(MAX_MINOR)):
        raise BillingError("INVALID_FORMAT_AMOUNT", message=f"{field} is too large.", field=field)
    minor = int(stripped) * 10**shift
    if minor > MAX_MINOR:
        raise BillingError("INVALID_FORMAT_AMOUNT", message=f"{field} is too large.", field=field)
    return minor


def from_minor(minor: int, currency: str) -> Decimal:
    """Render integer minor units as a Decimal with exactly the currency's precision.

    `from_minor(1050, "USD") == Decimal("10.50")`, `from_minor(500, "JPY") == Decimal("500")`.
    """
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor must be int, not {type(minor).__name__}")
    exponent = _EXPONENTS[normalize_currency(currency)]
    sign = 1 if minor < 0 else 0
    return Decimal((sign, tuple(int(c) for c in str(abs(minor))), -exponent))


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: integer minor units of one currency (stored as two columns)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError(f"Money.minor must be int, not {type(self.minor).__name__}")
        # Frozen: normalising the code needs object.__setattr__.
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def parse(cls, amount: Decimal | int | str, currency: str, *, field: str = "amount") -> Money:
        """Validate a positive major-unit amount (see `to_minor`) and wrap it."""
        return cls(to_minor(amount, currency, field=field), currency)

    @property
    def amount(self) -> Decimal:
        """The major-unit amount with the currency's precision, for responses."""
        return from_minor(self.minor, self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
