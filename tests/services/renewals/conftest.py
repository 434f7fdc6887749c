"""Fixtures for renewal tests: a runtime on the test database with a sandbox processor and a fixed clock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from billing.processors.sandbox import SandboxProcessor
from billing.services.runtime import Runtime, build_runtime
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


@pytest.fixture
def sandbox_server() -> Iterator[Callable[..., str]]:
    """Start `billing.processors.sandbox_server` processes on loopback; returns their base URLs."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *, latency_ms: float = 0, timeout_rate: float = 0, hang_seconds: float = 2, seed: int = 7
    ) -> str:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "billing.processors.sandbox_server",
                "--port",
                "0",
                "--latency-ms",
                str(latency_ms),
                "--timeout-rate",
                str(timeout_rate),
                "--hang-seconds",
                str(hang_seconds),
                "--seed",
                str(seed),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("listening on "), line
        return line.removeprefix("listening on ")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
