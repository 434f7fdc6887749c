"""`billing serve` on the embedded default: migrates by itself and answers over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_starts_on_sqlite_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
        "BILLING_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None, "server did not start"
        assert health.json()["success"] is True
        nope = httpx.get(f"http://127.0.0.1:{port}/nope")
        assert (nope.status_code, nope.json()["errors"][0]["code"]) == (404, "7010")
        bad = httpx.post(f"http://127.0.0.1:{port}/v1/auth/login", content=b"{not json")
        assert (bad.status_code, bad.json()["errors"][0]["code"]) == (400, "7000")
        assert (tmp_path / "billing.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}/schema" in output
    assert '"path": "/health"' in output  # one structured access-log line per request
