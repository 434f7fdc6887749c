"""docs/authentication.md is executable: its Python example and its curl session run against a live server.

The merchant is created with `billing clients create` on a fresh SQLite file (which migrates it),
then `billing serve` answers on a free port, exactly as an operator would set it up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "authentication.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveEngine:
    url: str
    client_id: str
    key_file: Path
    env: dict[str, str]
    workdir: Path

    def merchant_env(self) -> dict[str, str]:
        return {
            **self.env,
            "API_URL": self.url,
            "CLIENT_ID": self.client_id,
            "PRIVATE_KEY_FILE": str(self.key_file),
        }

    def plans(self) -> list[dict[str, object]]:
        """The client's plans, read through the API with a fresh login."""
        from billing.domain.signatures import sign

        # A login signature is accepted once; the example may have logged in this very second.
        for back in range(30):
            ts = str(int(time.time()) - back)
            login = httpx.post(
                f"{self.url}/v1/auth/login",
                json={
                    "clientId": self.client_id,
                    "timestamp": ts,
                    "signature": sign(self.key_file.read_text(), f"{self.client_id}.{ts}".encode()),
                },
            )
            if "replay" not in login.text:
                break
        token = login.json()["data"]["accessToken"]
        found = httpx.get(f"{self.url}/v1/plans/list", headers={"Authorization": f"Bearer {token}"})
        data: list[dict[str, object]] = found.json()["data"]
        return data


@pytest.fixture
def live_engine(tmp_path: Path) -> Iterator[LiveEngine]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
        "BILLING_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}",
        "BILLING_DATA_DIR": str(tmp_path),
        "BILLING_LOG_LEVEL": "WARNING",
    }
    key_file = tmp_path / "private_key.pem"
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing.cli",
            "clients",
            "create",
            "--name",
            "Docs",
            "--json",
            "--private-key-out",
            str(key_file),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    client_id = json.loads(created.stdout)["clientId"]

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port), "--no-worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise AssertionError(
                    f"billing serve exited:\n{server.stderr.read() if server.stderr else ''}"
                )
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "billing serve did not start in 30 s"
                time.sleep(0.2)
        yield LiveEngine(url, client_id, key_file, env, tmp_path)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_python_example_logs_in_and_sends_a_signed_idempotent_request(live_engine: LiveEngine) -> None:
    [example] = blocks("python")
    script = live_engine.workdir / "example.py"
    script.write_text(example)
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=live_engine.workdir,
        env=live_engine.merchant_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "status: 201" in lines
    plan_id = next(line.split(": ", 1)[1] for line in lines if line.startswith("plan created: "))
    assert "replayed: true same plan: True" in lines
    assert f"plans: ['{plan_id}']" in lines
    assert [p["id"] for p in live_engine.plans()] == [plan_id]  # the retry made no second plan


def test_the_curl_session_runs_as_written(live_engine: LiveEngine) -> None:
    shell = blocks("sh")
    assert len(shell) == 4, "the curl session lost or gained a step; update this test with it"
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(shell)],
        cwd=live_engine.workdir,
        env=live_engine.merchant_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "same answer, one plan" in run.stdout
    created = next(line for line in run.stdout.splitlines() if line.startswith("plan created: "))
    assert [p["id"] for p in live_engine.plans()] == [created.split(": ", 1)[1]]
