"""Fixtures for renewal tests: a runtime on the test database with a sandbox processor and a fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from billing.processors.sandbox import SandboxProcessor
from billing.services.runtime import Runtime, build_runtime


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
