"""A 10 MB, 50,000-row upload to a live `billing serve` does not stall the other requests.

`/health` is polled from another thread during the upload; the latencies are printed (a report,
not an assertion on time) and every poll must have been answered.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live_engine import running_engine

UPLOAD = "/v1/subscriptions/charges/upload-csv"
ROWS = 50_000


def _charges_file() -> bytes:
    note = "x" * 150
    lines = [b"subscriptionId,amount,metadata"]
    for n in range(ROWS):
        lines.append(f'sub_{n:026d},1.00,"{{""note"": ""{note}""}}"'.encode())
    return b"\n".join(lines) + b"\n"


@pytest.mark.slow
def test_health_answers_during_a_large_upload(db_url: str, tmp_path: Path) -> None:
    from billing.domain.signatures import canonical_request, sign

    content = _charges_file()
    assert len(content) > 9 * 1024 * 1024
    with running_engine(tmp_path, BILLING_WORKER__ENABLED="false", BILLING_DATABASE__URL=db_url) as (
        base,
        env,
    ):
        created = subprocess.run(
            [sys.executable, "-m", "billing.cli", "clients", "create", "--name", "Bulk", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        client = json.loads(created.stdout)
        client_id, pem = client["clientId"], client["key"]["privateKeyPem"]
        ts = str(int(time.time()))
        login = httpx.post(
            f"{base}/v1/auth/login",
            json={
                "clientId": client_id,
                "timestamp": ts,
                "signature": sign(pem, f"{client_id}.{ts}".encode()),
            },
        )
        token = login.json()["data"]["accessToken"]
        request = httpx.Request(
            "POST",
            f"{base}{UPLOAD}",
            files={"file": ("big.csv", content, "text/csv")},
            data={"clientId": client_id},
        )
        body = request.read()
        ts = str(int(time.time()))
        message = canonical_request(
            "v2", timestamp=ts, method="POST", target=UPLOAD, idempotency_key=None, body=body
        )
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": request.headers["Content-Type"],
            "X-Timestamp": ts,
            "X-Signature-Version": "2",
            "X-Signature": sign(pem, message),
        }

        latencies: list[float] = []
        statuses: list[int] = []
        done = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=base, timeout=30) as http:
                while not done.is_set():
                    started = time.perf_counter()
                    statuses.append(http.get("/health").status_code)
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.02)

        poller = threading.Thread(target=poll)
        poller.start()
        started = time.perf_counter()
        try:
            response = httpx.post(f"{base}{UPLOAD}", content=body, headers=headers, timeout=300)
        finally:
            took = time.perf_counter() - started
            time.sleep(0.1)
            done.set()
            poller.join()

    assert response.status_code == 202, response.text[:300]
    totals = response.json()["data"]["totals"]
    assert totals["received"] == ROWS
    assert statuses
    assert set(statuses) == {200}
    ordered = sorted(latencies)
    print(
        f"\n{db_url.split(':', 1)[0]}: upload of {len(content) / 1e6:.1f} MB, {ROWS} rows: {took:.1f} s; /health during it: "
        f"{len(latencies)} answers, median {statistics.median(ordered) * 1000:.0f} ms, "
        f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
    )
