"""docs/ondemand.md is executable: its `sh` blocks run, in order, against a live `billing serve`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ondemand.md"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`billing serve` (API and worker) on a free port with a fresh SQLite file."""
    port = _free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
        "BILLING_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'ondemand.db'}",
        "BILLING_DATA_DIR": str(tmp_path),
        "BILLING_LOG_LEVEL": "WARNING",
        # The worker wakes often, so the walkthrough's polling loops finish in a second or two.
        "BILLING_WORKER__INTERVAL_SECONDS": "0.5",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"billing serve exited:\n{server.stderr.read() if server.stderr else ''}")
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, env
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_ondemand_walkthrough_runs_as_written(engine: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = engine
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) == 6, "the walkthrough lost its commands"
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)],
        cwd=tmp_path,
        env={**env, "BASE": base},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"batch bat_\w+: 2 accepted, 2 rejected", lines[0]), lines
    assert re.fullmatch(r"batch bat_\w+: 1 succeeded, 1 failed", lines[1]), lines
    assert re.fullmatch(r"upload [\w-]{21}: 2 accepted, 1 rejected", lines[2]), lines
    assert re.fullmatch(r"upload [\w-]{21}: 1 succeeded, 1 failed, 1 rejected", lines[3]), lines
    assert lines[4] == "latest charge: on_demand succeeded 2.5", lines
    results = (tmp_path / "results.csv").read_text().splitlines()
    assert results[0] == "line,subscriptionId,amount,metadata,chargeId,state,code,message"
    assert re.fullmatch(r'2,sub_\w+,2\.50,"\{""sku"": ""add-on-1""\}",chg_\w+,succeeded,,', results[1])
    assert re.fullmatch(r"3,sub_\w+,abc,,,rejected,7002,Invalid amount format for the currency\.", results[2])
    assert re.fullmatch(r"4,sub_\w+,7\.00,,chg_\w+,failed,7201,The card was declined\.", results[3])
