"""The catalog is the single source: codes are unique, statuses follow the class, the docs match."""

from __future__ import annotations

from pathlib import Path

from billing.domain.errors import _ROWS, CATALOG, BillingError, catalog_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_codes_and_names_are_unique() -> None:
    assert len({row.code for row in _ROWS}) == len(_ROWS)
    assert len({row.name for row in _ROWS}) == len(_ROWS)


def test_migo_codes_keep_their_meaning() -> None:
    expected = {
        "7000": ("CHECK_PARAMETERS", 400),
        "7001": ("GREATER_THAN_ZERO", 400),
        "7002": ("INVALID_FORMAT_AMOUNT", 400),
        "7005": ("PROCESSOR_NOT_FOUND", 404),
        "7006": ("EXTERNAL_ID_ALREADY_EXISTS", 409),
        "7010": ("NOT_FOUND", 404),
        "7100": ("USER_NOT_FOUND", 404),
        "7200": ("CARD_NOT_FOUND", 404),
        "7604": ("INVALID_SIGNATURE", 401),
        "7616": ("KEYS_EXPIRED", 401),
    }
    for code, (name, status) in expected.items():
        assert (CATALOG[code].name, CATALOG[code].status) == (name, status)
    assert CATALOG["7303"].name == "INSUFFICIENT_FUNDS"


def test_codes_stay_in_range() -> None:
    assert all(7000 <= int(row.code) <= 8099 for row in _ROWS)


def test_billing_error_carries_catalog_row_and_override() -> None:
    error = BillingError("PLAN_NOT_FOUND", message="Plan pln_x was not found.", field="planUid")
    assert (error.code, error.status) == ("7040", 404)
    assert error.items()[0].as_dict() == {
        "code": "7040",
        "message": "Plan pln_x was not found.",
        "field": "planUid",
    }


def test_docs_publish_the_whole_catalog() -> None:
    assert catalog_markdown() in (ROOT / "docs" / "errors.md").read_text()


def test_error_name_type_lists_exactly_the_catalog() -> None:
    from typing import get_args

    from billing.domain.errors import ErrorName

    assert list(get_args(ErrorName)) == [row.name for row in _ROWS]
