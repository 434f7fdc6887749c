"""Whole-batch statements for PostgreSQL: one statement with one array per column (`unnest`).

The renewal pass writes thousands of rows a second. Sent as multi-row VALUES lists or as
executemany, every row costs parameter processing in SQLAlchemy and psycopg; sent as a
handful of arrays it costs almost nothing, and the statement text stays short and cached.
SQLite keeps the portable statements (it has no arrays, and the embedded default is not
where throughput matters).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from billing.store.engine import Session

Column = tuple[str, str]  # (name, PostgreSQL type of the array elements)


def is_postgres(session: Session) -> bool:
    """True when the session talks to PostgreSQL."""
    return session.get_bind().dialect.name == "postgresql"


def dialect_insert(session: Session, table: Any) -> Any:
    """`INSERT INTO table` in the session's dialect, so `ON CONFLICT DO NOTHING` is available."""
    return (postgresql_insert if is_postgres(session) else sqlite_insert)(table)


def _unnest(columns: Sequence[Column], alias: str = "v") -> str:
    arrays = ", ".join(f"CAST(:{name} AS {pg_type}[])" for name, pg_type in columns)
    names = ", ".join(name for name, _ in columns)
    return f"unnest({arrays}) AS {alias}({names})"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal (`{"a",NULL,3}`) of str, int, bool, date or aware datetime values.

    Built here rather than by the driver because the driver's generic list dumper escapes
    element by element with regular expressions, which dominates a bulk write's cost.
    """
    return "{" + ",".join(map(_element, values)) + "}"


def arrays(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """Column-wise array literals from row tuples (tuple positions follow `columns`)."""
    return {name: array_literal([row[i] for row in rows]) for i, (name, _) in enumerate(columns)}


def json_text(value: Any) -> str | None:
    """A JSON document as text for a `jsonb` array element (None stays SQL NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


async def insert_rows(
    session: Session,
    table: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    target: Sequence[str] | None = None,
    select_list: Sequence[str] | None = None,
    suffix: str = "",
) -> list[Any]:
    """INSERT INTO table (target) SELECT select_list FROM unnest(arrays) [suffix]; returns RETURNING rows.

    `target` defaults to the array columns and `select_list` to the unnested columns as they are.
    """
    if not rows:
        return []
    names = ", ".join(target if target is not None else [name for name, _ in columns])
    selected = ", ".join(select_list if select_list is not None else [name for name, _ in columns])
    # Identifiers come from module constants of the store; every value is a bound array.
    statement = text(f"INSERT INTO {table} ({names}) SELECT {selected} FROM {_unnest(columns)} {suffix}")  # noqa: S608
    conn = await session.connection()
    result = await conn.execute(statement, arrays(columns, rows))
    return list(result.all()) if result.returns_rows else []


async def update_rows(
    session: Session,
    table: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    assignments: Sequence[str],
    where: str,
) -> int:
    """UPDATE table AS t SET assignments FROM unnest(arrays) AS v WHERE where; returns the row count."""
    if not rows:
        return 0
    statement = text(
        f"UPDATE {table} AS t SET {', '.join(assignments)} FROM {_unnest(columns)} WHERE {where}"  # noqa: S608
    )
    conn = await session.connection()
    result = await conn.execute(statement, arrays(columns, rows))
    return int(result.rowcount)
