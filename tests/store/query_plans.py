"""Reading PostgreSQL plans in tests: what a statement touched, counted by EXPLAIN ANALYZE, not timed;
and the throwaway client those tests seed their rows under."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import psycopg


def libpq(url: str) -> str:
    """A SQLAlchemy psycopg URL as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows of `relation` that the plan's scans produced or filtered out, over all loops."""
    total = 0
    if plan.get("Relation Name") == relation:
        loops = int(plan.get("Actual Loops", 1))
        total += (int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))) * loops
    for child in plan.get("Plans", []):
        total += rows_read(child, relation)
    return total


def add_client(conn: psycopg.Connection[Any], prefix: str, now: datetime) -> str:
    """A sandbox client with a fresh id starting with `prefix`; answers its id."""
    client = f"{prefix}_{secrets.token_hex(4)}"
    conn.execute(
        "INSERT INTO client (id, name, environment, timezone, signing_required, signature_scheme,"
        " clock_offset_seconds, created_at) VALUES (%s, %s, 'sandbox', 'UTC', false, 'v2', 0, %s)",
        (client, prefix, now),
    )
    return client
