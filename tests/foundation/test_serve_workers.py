"""`billing serve --workers N`: N API processes on one port, the renewal worker once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.live_engine import running_engine


@pytest.mark.slow
def test_two_api_processes_share_the_port_and_the_worker_runs_once(tmp_path: Path) -> None:
    with running_engine(
        tmp_path,
        "--workers",
        "2",
        start_seconds=120,
        BILLING_LOG_LEVEL="INFO",
        BILLING_WORKER__INTERVAL_SECONDS="0.5",
    ) as (base, _):
        answers = [httpx.get(f"{base}/health", timeout=30) for _ in range(10)]
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    log = (tmp_path / "serve.log").read_text()
    started = [line for line in log.splitlines() if '"msg": "Started server process' in line]
    assert len(started) == 2, log[-3000:]
    # The scheduler runs in the supervising parent only, whatever the number of API processes.
    assert log.count('"worker started"') == 1, log[-3000:]
    assert log.count('"worker stopped"') == 1, log[-3000:]
