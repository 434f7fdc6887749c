"""Ready to shard by client: the migrated PostgreSQL schema keys every client-owned table by client_id.

Citus refuses a distributed table whose primary key or unique constraints (or unique indexes) leave
out the distribution column. These tests read the migrated schema from pg_catalog, so a new table
or key that forgets `client_id` fails here, not on the day the database is distributed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from billing.store.migrations import downgrade, upgrade
from tests.conftest import empty_database

# Tables that belong to no client, and why (docs/scaling.md: reference or coordinator-local tables).
NOT_CLIENT_OWNED = {
    "client": "the clients themselves: a reference table, copied to every node",
    "inbound_notification": "processor and settlement notices, deduplicated before their client is known",
    "alembic_version": "the migration bookkeeping",
    "worker_heartbeat": "one row per worker process of the engine (docs/operations.md)",
    "payment_link_attempt": "cards submitted per IP address on payment links, counted across every client",
}

# Primary keys that are still the bare surrogate `id`. The unique keys are client-scoped; turning
# these primary keys into (client_id, id) needs composite foreign keys and ORM identity changes
# (docs/scaling.md, "Before distributing"). The list may only shrink: a new table must get a
# client-scoped primary key, and a table fixed here must leave the list.
PRIMARY_KEYS_STILL_GLOBAL = {
    "batch",
    "batch_item",
    "charge",
    "event",
    "idempotency_record",
    "notification",
    "payment_method",
    "plan",
    "refresh_token",
    "signing_key",
    "subscription",
    "transaction",
    "webhook_delivery",
    "webhook_endpoint",
}

_KEYS = """
SELECT c.relname, i.relname, x.indisprimary,
       array(SELECT a.attname FROM unnest(x.indkey) AS k(n)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n)
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND x.indisunique
"""

_TABLES = """
SELECT t.table_name, bool_or(c.column_name = 'client_id')
FROM information_schema.tables t
JOIN information_schema.columns c USING (table_schema, table_name)
WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
GROUP BY t.table_name
"""


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_every_key_of_a_client_owned_table_includes_client_id(postgres_database: str) -> None:
    with psycopg.connect(_libpq(postgres_database)) as conn:
        tables = dict(conn.execute(_TABLES).fetchall())
        keys = conn.execute(_KEYS).fetchall()
    owned = {table for table in tables if table not in NOT_CLIENT_OWNED}
    assert set(NOT_CLIENT_OWNED) <= set(tables), "a listed exception no longer exists: drop it from the list"
    assert sorted(t for t in owned if not tables[t]) == [], "client-owned tables without a client_id column"
    unscoped = sorted(
        (table, index, "primary key" if primary else "unique")
        for table, index, primary, columns in keys
        if table in owned and "client_id" not in columns
    )
    unique_keys = [entry for entry in unscoped if entry[2] == "unique"]
    global_primary = {table for table, _index, kind in unscoped if kind == "primary key"}
    assert unique_keys == []
    assert global_primary == PRIMARY_KEYS_STILL_GLOBAL
    # The check sees the keys the migration made (not an empty catalog).
    assert ("charge", "uq_charge_client_id_idempotency_key", False, ["client_id", "idempotency_key"]) in [
        (t, i, p, list(c)) for t, i, p, c in keys
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (this test migrates down and up again)."""
    yield from empty_database(request, tmp_path, "keys")


def test_the_migration_fills_the_new_client_columns_and_goes_back(scratch_url: str) -> None:
    import sqlalchemy as sa

    upgrade(scratch_url, "0003")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            for client in ("cli_a", "cli_b"):
                conn.execute(
                    sa.text(
                        "INSERT INTO client (id, name, timezone, environment, signing_required,"
                        " signature_scheme, clock_offset_seconds, created_at)"
                        " VALUES (:id, 'x', 'UTC', 'sandbox', false, 'v2', 0, :now)"
                    ),
                    {"id": client, "now": now},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO batch (id, client_id, source, status, total, accepted, rejected,"
                        " succeeded, failed, created_at) VALUES (:id, :client, 'json', 'queued', 1, 1, 0, 0, 0, :now)"
                    ),
                    {"id": f"bat_{client}", "client": client, "now": now},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO batch_item (batch_id, item_index, state) VALUES (:batch, 0, 'queued')"
                    ),
                    {"batch": f"bat_{client}"},
                )
        upgrade(scratch_url, "head")
        with engine.connect() as conn:
            items = conn.execute(
                sa.text("SELECT batch_id, client_id FROM batch_item ORDER BY batch_id")
            ).all()
        assert [tuple(row) for row in items] == [("bat_cli_a", "cli_a"), ("bat_cli_b", "cli_b")]

        downgrade(scratch_url, "0003")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("batch_item")}
            uniques = {tuple(u["column_names"]) for u in sa.inspect(conn).get_unique_constraints("charge")}
        assert "client_id" not in columns
        assert ("idempotency_key",) in uniques
        upgrade(scratch_url, "head")
        with engine.connect() as conn:
            uniques = {tuple(u["column_names"]) for u in sa.inspect(conn).get_unique_constraints("charge")}
        assert ("client_id", "idempotency_key") in uniques
    finally:
        engine.dispose()
