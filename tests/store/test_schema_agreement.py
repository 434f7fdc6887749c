"""The migrated schema and the models agree on every backend (autogenerate finds nothing, and the
primary keys, which autogenerate does not compare, are the same)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from billing.settings import DatabaseSettings
from billing.store import models


def test_migrations_match_models(db_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=db_url).sync_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff: list[Any] = compare_metadata(context, SQLModel.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diff == []
    assert {model.__tablename__ for model in models.ALL_TABLES} <= tables


# On SQLite these keep the single-column INTEGER PRIMARY KEY, the only form that takes its values
# from the rowid (migration 0015); their models declare (id, client_id), the key on PostgreSQL.
SQLITE_ROWID_KEYS = {"idempotency_record", "batch_item"}


def test_primary_keys_match_models(db_url: str, backend: str) -> None:
    engine = create_engine(DatabaseSettings(url=db_url).sync_url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            migrated = {
                model.__tablename__: inspector.get_pk_constraint(model.__tablename__)["constrained_columns"]
                for model in models.ALL_TABLES
            }
    finally:
        engine.dispose()
    declared = {
        model.__tablename__: [column.name for column in model.__table__.primary_key.columns]  # type: ignore[attr-defined]
        for model in models.ALL_TABLES
    }
    if backend == "sqlite":
        declared.update({table: ["id"] for table in SQLITE_ROWID_KEYS})
    assert migrated == declared
    assert migrated["subscription"] == ["id", "client_id"]


def test_unique_keys_the_engine_relies_on_exist(db_url: str) -> None:
    engine = create_engine(DatabaseSettings(url=db_url).sync_url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            charge = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("charge")}
            trx = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("transaction")}
            idem = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("idempotency_record")}
    finally:
        engine.dispose()
    assert ("client_id", "subscription_id", "period_start", "attempt", "method_index") in charge
    assert ("client_id", "idempotency_key") in charge
    assert ("client_id", "external_id") in trx
    assert ("client_id", "key") in idem
