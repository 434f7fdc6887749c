"""The delivery claim reads pending rows through partial indexes, without sorting the backlog.

The planner is told to avoid sequential scans and sorts; a plan that still sorts (or scans the
table) proves no index can serve the claim's ORDER BY on pending rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
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


@pytest.mark.anyio
async def test_a_large_dispatch_refreshes_the_statistics_the_claim_is_planned_by(
    postgres_database: str, tmp_path: Path
) -> None:
    """5,000 events queued at once: dispatching them ANALYZEs the delivery table. With the statistics
    of an almost empty backlog the planner sorted 70,000 pending rows for each claim (130 ms; 3 ms
    once analyzed, bench/webhooks.py at 100,000 events: 391 against 1,090 deliveries/s)."""
    from billing.domain.clock import SystemClock
    from billing.services.runtime import build_runtime
    from billing.services.webhooks import delivery
    from billing.services.webhooks.delivery import LARGE_DISPATCH, dispatch_all
    from tests.conftest import _truncate_all, test_settings

    _truncate_all(postgres_database)  # the session's database: no event of an earlier test is left
    delivery._statistics_refreshed[0] = float("-inf")  # refreshed at most once a minute per process
    now = datetime.now(UTC)
    with psycopg.connect(_libpq(postgres_database)) as conn:
        conn.execute(
            "INSERT INTO client (id, name, environment, timezone, signing_required, signature_scheme,"
            " clock_offset_seconds, created_at) VALUES ('cli_stats', 'Stats', 'sandbox', 'UTC', false, 'v2', 0, %s)",
            (now,),
        )
        conn.execute(
            "INSERT INTO webhook_endpoint (id, client_id, url, secret, event_types, status, consecutive_failures,"
            " created_at) VALUES ('whe_stats', 'cli_stats', 'http://127.0.0.1:9/hook', 'whsec_QkVOQ0g=', '[]',"
            " 'enabled', 0, %s)",
            (now,),
        )
        with conn.cursor().copy("COPY event (id, client_id, type, payload, created_at) FROM STDIN") as copy:
            for n in range(LARGE_DISPATCH):
                copy.write_row((f"evt_stats{n:08d}", "cli_stats", "charge.succeeded", "{}", now))
        before = _analyze_count(conn)

    runtime = build_runtime(test_settings(postgres_database, tmp_path), SystemClock(), processors={})
    try:
        assert await dispatch_all(runtime) == LARGE_DISPATCH
    finally:
        await runtime.aclose()

    with psycopg.connect(_libpq(postgres_database)) as conn:
        assert _analyze_count(conn) == before + 1


def _analyze_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'webhook_delivery'"
    ).fetchone()
    assert row is not None
    return int(row[0])
