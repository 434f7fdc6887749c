"""Reading PostgreSQL plans in tests: what a statement touched, counted by EXPLAIN ANALYZE, not timed."""

from __future__ import annotations

from typing import Any


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
