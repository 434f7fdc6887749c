"""Fixtures for renewal tests: a runtime on the test database with a sandbox processor and a fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from billing.processors.sandbox import SandboxProcessor
from billing.services.runtime import Runtime, build_runtime
from tests.processors.sandbox_service import sandbox_server  # noqa: F401  (the sandbox behind HTTP)
from tests.services.renewals.test_crashes_and_races import spied  # noqa: F401  (the spying runtime, for every module)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sandbox() -> SandboxProcessor:
    return SandboxProcessor()


@pytest.fixture
async def engine_runtime(settings: Any, clock: Any, sandbox: SandboxProcessor) -> AsyncIterator[Runtime]:
    """A runtime like a worker's, on the test database, charging through `sandbox`."""
    runtime = build_runtime(settings, clock, processors={"sandbox": sandbox})
    try:
        yield runtime
    finally:
        await runtime.aclose()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """The session's scratch PostgreSQL database, emptied (for the multi-process tests)."""
    import psycopg

    from billing.store.models import ALL_TABLES

    url: str = request.getfixturevalue("postgres_database")
    names = ", ".join(f'"{model.__tablename__}"' for model in ALL_TABLES)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    return url
