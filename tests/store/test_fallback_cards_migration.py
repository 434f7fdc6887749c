"""Migration 0010 attaches to each existing subscription exactly the cards that backed it before.

Before 0010 every active card of the cardholder backed each of their subscriptions: the default
first, then the others by `priority`, then age. After it, a subscription is backed by the cards
attached to it; the back-fill must leave every existing subscription charging the same cards in
the same order, and the downgrade must go back cleanly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from billing.store.migrations import downgrade, upgrade
from tests.conftest import BACKENDS, empty_database

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(params=BACKENDS)
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (the migration runs from an older revision)."""
    yield from empty_database(request, tmp_path, "fallbacks")


def _insert(conn: Any, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    conn.execute(
        sa.text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in values)})"), values
    )


def _card(conn: Any, card_id: str, user: str, *, priority: int, age: int, status: str = "active") -> None:
    _insert(
        conn,
        "payment_method",
        id=card_id,
        client_id="cli_a",
        user_id=user,
        processor="sandbox",
        token=f"tok_sbx_approve_{card_id}",
        priority=priority,
        status=status,
        created_at=NOW + timedelta(minutes=age),
    )


def _subscription(conn: Any, sub_id: str, user: str, default: str, status: str = "active") -> None:
    _insert(
        conn,
        "subscription",
        id=sub_id,
        client_id="cli_a",
        user_id=user,
        plan_id="pln_a",
        currency="USD",
        default_payment_method_id=default,
        status=status,
        renewal_status="current",
        timezone="UTC",
        anchor_date=NOW.date(),
        period_index=0,
        cycles_paid=1,
        grace_attempts=0,
        event_seq=0,
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_back_fill_keeps_the_cards_and_order_of_every_subscription(scratch_url: str) -> None:
    upgrade(scratch_url, "0009")
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            _insert(conn, "client", id="cli_a", name="A", timezone="UTC", environment="sandbox",
                    signing_required=False, signature_scheme="v2", clock_offset_seconds=0, created_at=NOW)  # fmt: skip
            _insert(conn, "plan", id="pln_a", client_id="cli_a", name="P", amount_minor=1000, currency="USD",
                    type="interval", frequency=30, methods="[]", installments="[]", auto_renewal=True,
                    trial_days=0, status="active", created_at=NOW, updated_at=NOW)  # fmt: skip
            # holder-1: three active cards and a removed one; the default is neither first by
            # priority nor the oldest. Two equal priorities are ordered by age.
            _card(conn, "pm_1a", "holder-1", priority=0, age=3)
            _card(conn, "pm_1b", "holder-1", priority=1, age=1)
            _card(conn, "pm_1c", "holder-1", priority=0, age=2)
            _card(conn, "pm_1x", "holder-1", priority=0, age=0, status="removed")
            _subscription(conn, "sub_1", "holder-1", default="pm_1b")
            _subscription(conn, "sub_2", "holder-1", default="pm_1a", status="cancelled")
            # holder-2: one card; another cardholder's cards never back their subscription.
            _card(conn, "pm_2a", "holder-2", priority=0, age=0)
            _subscription(conn, "sub_3", "holder-2", default="pm_2a")

        upgrade(scratch_url, "0010")

        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT subscription_id, payment_method_id, position, client_id"
                    " FROM subscription_payment_method ORDER BY subscription_id, position"
                )
            ).all()
        attached: dict[str, list[str]] = {}
        for sub_id, method_id, position, client_id in rows:
            assert client_id == "cli_a"
            assert position == len(attached.setdefault(sub_id, []))
            attached[sub_id].append(method_id)
        # The default first, then the cardholder's other active cards by priority, then age.
        assert attached == {
            "sub_1": ["pm_1b", "pm_1c", "pm_1a"],
            "sub_2": ["pm_1a", "pm_1c", "pm_1b"],
            "sub_3": ["pm_2a"],
        }

        downgrade(scratch_url, "0009")
        with engine.connect() as conn:
            assert "subscription_payment_method" not in sa.inspect(conn).get_table_names()
        upgrade(scratch_url, "head")
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT COUNT(*) FROM subscription_payment_method")).scalar()
        assert count == 7
    finally:
        engine.dispose()
