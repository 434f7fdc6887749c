"""Counting a transaction's enrolment attempts reads that transaction's charges, not every charge.

Every enrolment counts the earlier attempts of its transaction to number its first charge. The count
once matched the idempotency key by prefix (``LIKE 'enrol:trx_...:%'``), which no index serves, so
PostgreSQL read every charge of every client on each enrolment (its CPU per enrolment grew from 14 to
31 ms between 10,000 and 40,000 seeded subscriptions in bench/api.py). The statements are captured as
the function runs and replayed under ``EXPLAIN ANALYZE``, which counts the charge rows they read.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from billing.store.charges import enrolment_attempts, enrolment_key
from billing.store.engine import create_engine, session_factory
from tests.store.query_plans import add_client, libpq, rows_read

pytestmark = pytest.mark.anyio

OTHER_CHARGES = 2_000


@pytest.mark.parametrize("attempts", [0, 2, 8, 9])
async def test_the_attempts_of_a_transaction_are_counted_by_key(
    postgres_database: str, attempts: int
) -> None:
    trx = f"trx_att_{secrets.token_hex(4)}"
    now = datetime.now(UTC)
    with psycopg.connect(libpq(postgres_database)) as conn:
        client = add_client(conn, "cli_att", now)
        with conn.cursor().copy(
            "COPY charge (id, client_id, kind, amount_minor, currency, processor, attempt, method_index, state,"
            " hard_decline, idempotency_key, created_at, updated_at) FROM STDIN"
        ) as copy:
            rows = [(f"other_{n}", enrolment_key(f"trx_other_{n}", 1)) for n in range(OTHER_CHARGES)]
            rows += [(f"mine_{n}", enrolment_key(trx, n)) for n in range(1, attempts + 1)]
            for suffix, key in rows:
                copy.write_row(
                    (f"chg_{client}_{suffix}", client, "enrolment", 100, "USD", "sandbox", 1, 0, "failed",
                     False, key, now, now)
                )  # fmt: skip
        conn.commit()
        conn.execute("ANALYZE charge")

    engine = create_engine(postgres_database, pool_size=1)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with session_factory(engine)() as session:
            counted = await enrolment_attempts(session, client, trx)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        await engine.dispose()

    read = 0
    with psycopg.connect(libpq(postgres_database)) as conn:
        for statement, parameters in captured:
            row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).fetchone()
            assert row is not None
            document = row[0] if isinstance(row[0], list) else json.loads(row[0])
            read += rows_read(document[0]["Plan"], "charge")
        conn.execute("DELETE FROM charge WHERE client_id = %s", (client,))
        conn.execute("DELETE FROM client WHERE id = %s", (client,))
        conn.commit()
    assert counted == attempts
    assert read <= attempts + 1, (read, captured)
