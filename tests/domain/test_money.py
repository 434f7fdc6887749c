"""Money is exact: amounts never pass through float and respect each currency's minor unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.errors import BillingError
from billing.domain.money import (
    CURRENCY_EXPONENTS,
    MAX_MINOR,
    Money,
    from_minor,
    minor_units,
    normalize_currency,
    to_minor,
)

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))


def _error_name(excinfo: pytest.ExceptionInfo[BillingError]) -> str:
    return excinfo.value.spec.name


@pytest.mark.parametrize(
    ("code", "digits"),
    [
        ("USD", 2),
        ("GTQ", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_minor_units_follow_iso_4217(code: str, digits: int) -> None:
    assert minor_units(code) == digits


def test_table_holds_only_well_formed_codes() -> None:
    """A typo in the table (lower case, four letters, exponent 5) would reach the API."""
    assert len(CURRENCY_EXPONENTS) > 150
    for code, digits in CURRENCY_EXPONENTS.items():
        assert len(code) == 3
        assert code.isalpha()
        assert code.isupper()
        assert digits in (0, 2, 3, 4)


@pytest.mark.parametrize("code", ["XAU", "XTS", "XXX", "HRK", "ABC", "US", "", "USDD"])
def test_unknown_or_unchargeable_currency_is_7016(code: str) -> None:
    with pytest.raises(BillingError) as excinfo:
        minor_units(code)
    assert excinfo.value.code == "7016"
    assert excinfo.value.field == "currency"


def test_currency_codes_are_normalised_to_upper_case() -> None:
    assert normalize_currency(" usd ") == "USD"
    assert to_minor("1.50", "gtq") == 150
    assert Money(100, "jpy").currency == "JPY"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("10.50"), "USD", 1050),
        (Decimal("10.5"), "USD", 1050),
        (Decimal("10.500"), "USD", 1050),  # trailing zeros are not extra precision
        (10, "USD", 1000),
        ("10.50", "USD", 1050),
        (" 29.99 ", "GTQ", 2999),
        ("1500", "JPY", 1500),
        (Decimal("1500.0"), "JPY", 1500),
        ("1.234", "KWD", 1234),
        (Decimal("0.001"), "BHD", 1),
        (Decimal("1E+2"), "USD", 10000),
        ("+5", "EUR", 500),
        ("0.0001", "CLF", 1),
    ],
)
def test_to_minor_converts_exactly(amount: Decimal | int | str, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (Decimal("10.505"), "USD"),
        ("10.505", "USD"),
        (Decimal("1.5"), "JPY"),
        ("0.5", "KRW"),
        ("1.2345", "KWD"),
        # 28 significant digits would round this to 1 in the default decimal context.
        ("1.0000000000000000000000000000001", "USD"),
        (Decimal("1E-30"), "USD"),
    ],
)
def test_too_many_decimals_is_7002(amount: Decimal | str, currency: str) -> None:
    with pytest.raises(BillingError) as excinfo:
        to_minor(amount, currency, field="plan.amount")
    assert _error_name(excinfo) == "INVALID_FORMAT_AMOUNT"
    assert excinfo.value.field == "plan.amount"


@pytest.mark.parametrize(
    "amount",
    [
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        "NaN",
        "Infinity",
        "",
        "abc",
        "1_000",
        "1e2",
        ".5",
        "1.",
        "1,50",
        "0x10",
    ],
)
def test_non_finite_or_malformed_is_7002(amount: Decimal | str) -> None:
    with pytest.raises(BillingError) as excinfo:
        to_minor(amount, "USD")
    assert _error_name(excinfo) == "INVALID_FORMAT_AMOUNT"
    assert excinfo.value.field == "amount"


@pytest.mark.parametrize(
    "amount", [0, Decimal("0"), Decimal("-0"), "0.00", "-0", -1, Decimal("-10.50"), "-3"]
)
def test_zero_or_negative_is_7001(amount: Decimal | int | str) -> None:
    with pytest.raises(BillingError) as excinfo:
        to_minor(amount, "USD")
    assert _error_name(excinfo) == "GREATER_THAN_ZERO"


@pytest.mark.parametrize(
    "amount",
    [MAX_MINOR + 1, 10**5000, Decimal("1E+999999"), "9" * 40],
    ids=["max-plus-one", "5000-digit-int", "huge-exponent", "40-nines"],
)
def test_amounts_beyond_a_64_bit_column_are_7002(amount: Decimal | int | str) -> None:
    with pytest.raises(BillingError) as excinfo:
        to_minor(amount, "JPY")
    assert _error_name(excinfo) == "INVALID_FORMAT_AMOUNT"


def test_largest_storable_amount_is_accepted() -> None:
    assert to_minor(MAX_MINOR, "JPY") == MAX_MINOR


@pytest.mark.parametrize("amount", [10.5, 1.0, True, None, [1]])
def test_floats_and_other_types_are_a_type_error(amount: object) -> None:
    """Floats are refused outright: by the time we see one the rounding has happened."""
    with pytest.raises(TypeError):
        to_minor(amount, "USD")  # type: ignore[arg-type]


def test_unknown_currency_is_checked_before_the_amount() -> None:
    with pytest.raises(BillingError) as excinfo:
        to_minor("abc", "ZZZ")
    assert excinfo.value.code == "7016"


@pytest.mark.parametrize(
    ("minor", "currency", "rendered"),
    [
        (1050, "USD", "10.50"),
        (5, "USD", "0.05"),
        (0, "USD", "0.00"),
        (1500, "JPY", "1500"),
        (1234, "KWD", "1.234"),
        (1, "BHD", "0.001"),
        (-250, "EUR", "-2.50"),
    ],
)
def test_from_minor_has_exactly_the_currency_precision(minor: int, currency: str, rendered: str) -> None:
    value = from_minor(minor, currency)
    assert str(value) == rendered
    assert value.as_tuple().exponent == -minor_units(currency)


def test_from_minor_refuses_non_integers() -> None:
    with pytest.raises(TypeError):
        from_minor(10.5, "USD")  # type: ignore[arg-type]


def test_money_parses_and_renders() -> None:
    money = Money.parse("29.99", "usd")
    assert money == Money(2999, "USD")
    assert money.amount == Decimal("29.99")
    assert str(money) == "29.99 USD"


def test_money_refuses_unknown_currency_and_float_minor() -> None:
    with pytest.raises(BillingError):
        Money(100, "XXX")
    with pytest.raises(TypeError):
        Money(1.0, "USD")  # type: ignore[arg-type]


@given(minor=st.integers(min_value=1, max_value=MAX_MINOR), currency=currencies)
def test_round_trip_through_decimal_and_text(minor: int, currency: str) -> None:
    rendered = from_minor(minor, currency)
    assert to_minor(rendered, currency) == minor
    assert to_minor(str(rendered), currency) == minor


@given(
    minor=st.integers(min_value=1, max_value=10**12),
    currency=currencies,
    extra=st.integers(min_value=1, max_value=9),
)
def test_one_digit_past_the_precision_is_always_refused(minor: int, currency: str, extra: int) -> None:
    """Appending a non-zero digit after the currency's last decimal must never round silently."""
    text = str(from_minor(minor, currency))
    if "." not in text:
        text += "."
    with pytest.raises(BillingError) as excinfo:
        to_minor(text + str(extra), currency)
    assert _error_name(excinfo) == "INVALID_FORMAT_AMOUNT"


@given(
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=4),
    currency=currencies,
)
def test_to_minor_agrees_with_exact_scaling(amount: Decimal, currency: str) -> None:
    """Against an independent oracle: scale by 10**digits with Python ints (exact)."""
    digits = minor_units(currency)
    sign, coefficient_digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    numerator = int("".join(map(str, coefficient_digits)) or "0") * (-1 if sign else 1)
    # amount * 10**digits == numerator * 10**(exponent + digits)
    power = exponent + digits
    if power >= 0:
        scaled, exact = numerator * 10**power, True
    else:
        scaled, exact = numerator // 10**-power, numerator % 10**-power == 0
    if not exact:
        with pytest.raises(BillingError) as excinfo:
            to_minor(amount, currency)
        assert _error_name(excinfo) == "INVALID_FORMAT_AMOUNT"
    elif scaled <= 0:
        with pytest.raises(BillingError) as excinfo:
            to_minor(amount, currency)
        assert _error_name(excinfo) == "GREATER_THAN_ZERO"
    elif scaled > MAX_MINOR:
        with pytest.raises(BillingError):
            to_minor(amount, currency)
    else:
        assert to_minor(amount, currency) == scaled
