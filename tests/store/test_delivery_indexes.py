"""The delivery claim reads pending rows through partial indexes, without sorting the backlog.

The planner is told to avoid sequential scans and sorts; a plan that still sorts (or scans the
table) proves no index can serve the claim's ORDER BY on pending rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from sqlalchemy.dialects import postgresql

from billing.store.webhooks import due_deliveries_query


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _plan(url: str, sql: str) -> str:
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_sort = off")
        rows = conn.execute(f"EXPLAIN {sql}").fetchall()
    return "\n".join(row[0] for row in rows)


def test_the_claim_walks_the_pending_index_in_order(postgres_database: str) -> None:
    query = due_deliveries_query(datetime(2026, 12, 1, tzinfo=UTC), 400)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    plan = _plan(postgres_database, sql)
    assert "ix_webhook_delivery_due" in plan, plan
    assert "Sort" not in plan, plan
    assert "ix_webhook_delivery_order" in plan, plan  # the per-subscription order check


def test_the_indexes_cover_pending_rows_only(postgres_database: str) -> None:
    with psycopg.connect(_libpq(postgres_database)) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'webhook_delivery'"
            " AND indexname IN ('ix_webhook_delivery_due', 'ix_webhook_delivery_order')"
        ).fetchall()
    assert len(rows) == 2
    assert all("WHERE" in definition and "'pending'" in definition for _name, definition in rows)
