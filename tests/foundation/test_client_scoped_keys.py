"""Ready to shard by client: every key of a client-owned table includes client_id.

Citus refuses a distributed table whose primary key or unique constraints (or unique indexes) leave
out the distribution column, and a foreign key between two distributed tables that does not carry
it on both sides. These tests read the migrated PostgreSQL schema from pg_catalog, so a new table,
key or reference that forgets `client_id` fails here, not on the day the database is distributed.
The same inspection run on a database migrated only to 0014 shows that it finds what it looks for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from billing.store import models
from billing.store.migrations import downgrade, upgrade
from tests.conftest import BACKENDS, empty_database

# Tables that belong to no client, and why (docs/scaling.md: reference or coordinator-local tables).
NOT_CLIENT_OWNED = {
    "client": "the clients themselves: a reference table, copied to every node",
    "inbound_notification": "processor and settlement notices, deduplicated before their client is known",
    "alembic_version": "the migration bookkeeping",
    "worker_heartbeat": "one row per worker process of the engine (docs/operations.md)",
    "payment_link_attempt": "cards submitted per IP address on payment links, counted across every client",
}

_TABLES = """
SELECT t.table_name, bool_or(c.column_name = 'client_id')
FROM information_schema.tables t
JOIN information_schema.columns c USING (table_schema, table_name)
WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
GROUP BY t.table_name
"""

# Primary keys, unique constraints and unique indexes.
_UNIQUE_KEYS = """
SELECT c.relname, i.relname, x.indisprimary,
       array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n ORDER BY k.i)
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND x.indisunique
"""

_FOREIGN_KEYS = """
SELECT c.relname, k.conname, p.relname,
       array(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
       array(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY AS u(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_class p ON p.oid = k.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND k.contype = 'f'
"""


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _keys_without_client(url: str) -> set[tuple[str, str, str]]:
    """(table, kind, name) of every key of a client-owned table that leaves out `client_id`: primary
    keys, unique constraints and indexes, and references to another client-owned table that do not
    pair the row's `client_id` with the parent's."""
    with psycopg.connect(_libpq(url)) as conn:
        tables = dict(conn.execute(_TABLES).fetchall())
        unique_keys = conn.execute(_UNIQUE_KEYS).fetchall()
        foreign_keys = conn.execute(_FOREIGN_KEYS).fetchall()
    owned = {table for table, has_client in tables.items() if has_client}
    assert sorted(set(tables) - owned) == sorted(NOT_CLIENT_OWNED), (
        "every table carries client_id except the ones listed (with the reason) in NOT_CLIENT_OWNED"
    )
    found = {
        (table, "primary key" if primary else "unique", index)
        for table, index, primary, columns in unique_keys
        if table in owned and "client_id" not in columns
    }
    found |= {
        (table, "foreign key", name)
        for table, name, parent, columns, parent_columns in foreign_keys
        if table in owned
        and parent in owned
        and ("client_id", "client_id") not in zip(columns, parent_columns, strict=True)
    }
    return found


def test_every_key_of_a_client_owned_table_includes_client_id(postgres_database: str) -> None:
    assert _keys_without_client(postgres_database) == set()
    # The inspection reads the keys the migrations made (not an empty catalog).
    with psycopg.connect(_libpq(postgres_database)) as conn:
        keys = {
            (table, index): list(columns) for table, index, _primary, columns in conn.execute(_UNIQUE_KEYS)
        }
        references = {name: (list(c), p, list(pc)) for _t, name, p, c, pc in conn.execute(_FOREIGN_KEYS)}
    assert keys[("subscription", "pk_subscription")] == ["id", "client_id"]
    assert keys[("charge", "uq_charge_client_id_idempotency_key")] == ["client_id", "idempotency_key"]
    assert references["fk_charge_client_id_subscription"] == (
        ["client_id", "subscription_id"],
        "subscription",
        ["client_id", "id"],
    )


# What the inspection must find on the schema of migration 0014: the primary keys were the bare id
# and the references between client-owned tables named the parent's id alone.
_GLOBAL_AT_0014 = {
    *(
        (table, "primary key", f"pk_{table}")
        for table in (
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
        )
    ),
    *(
        (table, "foreign key", f"fk_{table}_{column}_{parent}")
        for table, column, parent in (
            ("subscription", "plan_id", "plan"),
            ("subscription", "trx_id", "transaction"),
            ("subscription", "default_payment_method_id", "payment_method"),
            ("subscription_payment_method", "subscription_id", "subscription"),
            ("subscription_payment_method", "payment_method_id", "payment_method"),
            ("charge", "subscription_id", "subscription"),
            ("charge", "payment_method_id", "payment_method"),
            ("charge", "batch_id", "batch"),
            ("refund", "charge_id", "charge"),
            ("batch_item", "batch_id", "batch"),
            ("webhook_delivery", "endpoint_id", "webhook_endpoint"),
            ("webhook_delivery", "event_id", "event"),
        )
    ),
}


@pytest.fixture(params=BACKENDS)
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (these tests migrate from an older revision)."""
    yield from empty_database(request, tmp_path, "keys")


@pytest.fixture(params=["postgresql"] if "postgresql" in BACKENDS else [])
def scratch_postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from empty_database(request, tmp_path, "keys")


def test_the_inspection_finds_the_global_keys_of_0014(scratch_postgres_url: str) -> None:
    upgrade(scratch_postgres_url, "0014")
    assert _keys_without_client(scratch_postgres_url) == _GLOBAL_AT_0014
    upgrade(scratch_postgres_url, "head")
    assert _keys_without_client(scratch_postgres_url) == set()


NOW = datetime(2026, 12, 1, tzinfo=UTC)

# A plain value of each column type (sqlmodel's strings and UTC datetimes decorate these).
_FILLERS: list[tuple[type[sa.types.TypeEngine[Any]], Any]] = [
    (sa.JSON, {}),
    (sa.String, "x"),
    (sa.Boolean, False),
    (sa.Integer, 0),
    (sa.Float, 0.0),
    (sa.DateTime, NOW),
    (sa.Date, NOW.date()),
    (sa.LargeBinary, b""),
]


def _insert(conn: sa.Connection, table_name: str, **given: Any) -> None:
    """One row with the given values and a plain value in every other NOT NULL column."""
    table = models.SQLModel.metadata.tables[table_name]
    values = dict(given)
    for column in table.columns:
        if column.name in values or column.nullable or column.server_default is not None:
            continue
        if column is table.autoincrement_column:
            continue
        kind = getattr(column.type, "impl", column.type)
        values[column.name] = next(value for sa_type, value in _FILLERS if isinstance(kind, sa_type))
    conn.execute(sa.insert(table).values(**values))


def _seed(conn: sa.Connection, client: str) -> None:
    """A client's rows in every client-owned table, each reference pointing at the same client."""
    c = client
    _insert(conn, "client", id=c, name=c, timezone="UTC")
    _insert(conn, "signing_key", id=f"key_{c}", client_id=c)
    _insert(conn, "refresh_token", id=f"rt_{c}", client_id=c, family_id=f"fam_{c}", token_hash=f"h_{c}")
    _insert(conn, "seen_signature", client_id=c, digest=f"d_{c}")
    _insert(conn, "idempotency_record", client_id=c, key=f"k_{c}")
    _insert(conn, "plan", id=f"pln_{c}", client_id=c, currency="USD", type="interval", frequency=30)
    _insert(conn, "transaction", id=f"trx_{c}", client_id=c, currency="USD", reference=f"ref_{c}")
    _insert(conn, "payment_method", id=f"pm_{c}", client_id=c)
    _insert(
        conn,
        "subscription",
        id=f"sub_{c}",
        client_id=c,
        plan_id=f"pln_{c}",
        trx_id=f"trx_{c}",
        default_payment_method_id=f"pm_{c}",
        currency="USD",
    )
    _insert(
        conn,
        "subscription_payment_method",
        client_id=c,
        subscription_id=f"sub_{c}",
        payment_method_id=f"pm_{c}",
    )
    _insert(conn, "batch", id=f"bat_{c}", client_id=c)
    _insert(conn, "batch_item", client_id=c, batch_id=f"bat_{c}", item_index=0)
    _insert(
        conn,
        "charge",
        id=f"chg_{c}",
        client_id=c,
        subscription_id=f"sub_{c}",
        payment_method_id=f"pm_{c}",
        batch_id=f"bat_{c}",
        amount_minor=100,
        idempotency_key=f"ik_{c}",
    )
    _insert(conn, "refund", id=f"rf_{c}", client_id=c, charge_id=f"chg_{c}", idempotency_key=f"rk_{c}")
    _insert(conn, "event", id=f"evt_{c}", client_id=c, subscription_id=f"sub_{c}", sequence=1)
    _insert(conn, "webhook_endpoint", id=f"we_{c}", client_id=c)
    _insert(conn, "webhook_delivery", id=f"wd_{c}", client_id=c, endpoint_id=f"we_{c}", event_id=f"evt_{c}")
    _insert(conn, "notification", id=f"ntf_{c}", client_id=c, event_id=f"evt_{c}")
    _insert(conn, "notification_setting", client_id=c)


def _contents(engine: sa.Engine) -> dict[str, list[tuple[str, ...]]]:
    with engine.connect() as conn:
        return {
            model.__tablename__: sorted(
                tuple(map(str, row))
                for row in conn.execute(sa.select(model.__table__))  # type: ignore[attr-defined]
            )
            for model in models.ALL_TABLES
        }


def _schema(url: str) -> list[tuple[Any, ...]]:
    """The schema as the database describes it: columns, constraints and indexes, table by table."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            shape: list[tuple[Any, ...]] = []
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                shape.append((table, "columns", conn.execute(f'PRAGMA table_xinfo("{table}")').fetchall()))
                # Without the constraint's id, which numbers the keys in the order the table text lists them.
                keys = [row[1:] for row in conn.execute(f'PRAGMA foreign_key_list("{table}")')]
                shape.append((table, "foreign keys", sorted(keys, key=lambda key: (key[1], key[2], key[0]))))
                for index, unique, origin, partial in (
                    r[1:] for r in conn.execute(f'PRAGMA index_list("{table}")')
                ):
                    columns = [row[2] for row in conn.execute(f'PRAGMA index_info("{index}")')]
                    text = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()[
                        0
                    ]
                    shape.append(
                        (table, index.startswith("sqlite_autoindex"), unique, origin, partial, columns, text)
                    )
            return sorted(shape, key=repr)
    with psycopg.connect(_libpq(url)) as conn:
        return conn.execute(
            """
            SELECT c.relname, a.attnum::text, a.attname, format_type(a.atttypid, a.atttypmod),
                   a.attnotnull::text, coalesce(pg_get_expr(d.adbin, d.adrelid), '')
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT c.relname, 'constraint', k.conname, pg_get_constraintdef(k.oid), k.convalidated::text, ''
            FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            UNION ALL
            SELECT tablename, 'index', indexname, indexdef, '', '' FROM pg_indexes
            WHERE schemaname = current_schema()
            ORDER BY 1, 2, 3
            """
        ).fetchall()


def _references_hold(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        else:
            assert (
                conn.execute(sa.text("SELECT conname FROM pg_constraint WHERE NOT convalidated")).all() == []
            )


def _refer_across_clients(engine: sa.Engine) -> None:
    """Client b's subscription on client a's plan: a reference the 0014 keys allowed."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE subscription SET plan_id = 'pln_a' WHERE id = 'sub_b'"))


def test_rows_and_references_survive_the_migration_both_ways(scratch_url: str) -> None:
    upgrade(scratch_url, "0014")
    before = _schema(scratch_url)
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            _seed(conn, "a")
            _seed(conn, "b")
        rows = _contents(engine)

        upgrade(scratch_url, "0015")
        assert _contents(engine) == rows
        _references_hold(engine)
        engine.dispose()
        if engine.dialect.name == "sqlite":
            # SQLite checks references only on connections that ask it to.
            sa.event.listen(
                engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA foreign_keys = ON")
            )
        with pytest.raises(sa.exc.IntegrityError):
            _refer_across_clients(engine)
        engine.dispose()

        downgrade(scratch_url, "0014")
        assert _contents(engine) == rows
        _references_hold(engine)
        assert _schema(scratch_url) == before
    finally:
        engine.dispose()


def test_the_upgrade_refuses_a_reference_to_another_clients_row(scratch_url: str) -> None:
    upgrade(scratch_url, "0014")
    engine = sa.create_engine(scratch_url)
    try:
        with engine.begin() as conn:
            _seed(conn, "a")
            _seed(conn, "b")
        _refer_across_clients(engine)
        before = _schema(scratch_url)
        with pytest.raises(
            RuntimeError, match=r"subscription\.plan_id: 1 row\(s\) reference a plan of another client"
        ):
            upgrade(scratch_url, "0015")
        assert _schema(scratch_url) == before
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0014"
    finally:
        engine.dispose()


def test_the_migration_fills_the_new_client_columns_and_goes_back(scratch_url: str) -> None:
    """Migration 0004: batch_item and webhook_delivery got the client of their parent row."""
    upgrade(scratch_url, "0003")
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
                    {"id": client, "now": NOW},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO batch (id, client_id, source, status, total, accepted, rejected,"
                        " succeeded, failed, created_at) VALUES (:id, :client, 'json', 'queued', 1, 1, 0, 0, 0, :now)"
                    ),
                    {"id": f"bat_{client}", "client": client, "now": NOW},
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
