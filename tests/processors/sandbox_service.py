"""`sandbox_server`: start `billing sandbox serve` processes on loopback, stopped after the test.

Imported by the conftest of every test package that needs the sandbox behind real HTTP.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from billing.processors.sandbox_server import start_service, stop_service

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_server() -> Iterator[Callable[..., str]]:
    """Start `billing sandbox serve` processes on loopback; returns their base URLs."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *, latency_ms: float = 0, timeout_rate: float = 0, hang_seconds: float = 2, seed: int = 7
    ) -> str:
        process, url = start_service(
            latency_ms=latency_ms, timeout_rate=timeout_rate, hang_seconds=hang_seconds, seed=seed
        )
        started.append(process)
        return url

    yield start
    for process in started:
        stop_service(process)
