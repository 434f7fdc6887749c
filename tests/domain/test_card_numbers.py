"""Spotting possible card numbers in values about to be stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.card_numbers import may_hold_card_number

SEPARATORS = st.sampled_from([" ", ".", "-", "_", "/", ":", "=", ", ", ""])


@pytest.mark.parametrize(
    "value",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242.4242.4242.4242",
        "4242424242424242/123",
        "pan=4242424242424242",
        "tok_sbx_approve_4242-4242-4242-4242",
        "cus_424242424242:pm_1",
        "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12",  # full-width digits
        "378282246310005",
        "123456789012",
    ],
)
def test_card_numbers_however_spelled_are_spotted(value: str) -> None:
    assert may_hold_card_number(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "tok_sbx_approve_qwertyuiopasdfgh",
        "tok_sbx_approve_0123456789abcdef",
        "cus_NffrFeUfNV2Hib:pm_1MqLiJLkdIwHu7ixUEgbFdYF",
        "12345678901",
        "4242 x 4242 x 4242",
    ],
)
def test_tokens_and_short_digit_groups_are_not(value: str) -> None:
    assert not may_hold_card_number(value)


@given(
    groups=st.lists(st.from_regex(r"[0-9]{1,6}", fullmatch=True), min_size=1, max_size=8),
    separator=SEPARATORS,
    prefix=st.from_regex(r"[a-z_=]{0,8}", fullmatch=True),
)
def test_property_twelve_digits_split_by_punctuation_are_always_spotted(
    groups: list[str], separator: str, prefix: str
) -> None:
    value = prefix + separator.join(groups)
    assert may_hold_card_number(value) == (len("".join(groups)) >= 12)
