"""docs/api.md is executable: its `sh` blocks run, in order, against a live `billing serve`."""

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
DOC = ROOT / "docs" / "api.md"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.S | re.M)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`billing serve` on a free port with a fresh SQLite file; yields its URL and the environment."""
    port = _free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
        "BILLING_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'walkthrough.db'}",
        "BILLING_DATA_DIR": str(tmp_path),
        "BILLING_LOG_LEVEL": "WARNING",
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


def test_the_walkthrough_runs_as_written(engine: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = engine
    blocks = _sh_blocks(DOC.read_text())
    assert len(blocks) >= 8, "the walkthrough lost its commands"
    script = "set -euo pipefail\n" + "\n".join(blocks)

    run = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**env, "BASE": base},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"plan pln_\w+ charges 29\.9 USD", lines[0]), lines
    # Enrolled "now" in New York: the anniversary renewal is due at local midnight one month on.
    assert re.fullmatch(
        r"subscription sub_\w+ is active, next renewal \d{4}-\d\d-\d\dT00:00:00-0[45]:00", lines[1]
    )
    assert lines[2] == "first charge: enrolment succeeded 29.9"
    assert re.fullmatch(r"subscription sub_\w+ is now cancelled", lines[3])
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("walkthrough.db*"))
    assert stored
    assert b"4242424242424242" not in stored
