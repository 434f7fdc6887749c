"""The migrated schema and the models agree on every backend (autogenerate finds nothing)."""

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
