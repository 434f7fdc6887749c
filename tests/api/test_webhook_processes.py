"""A `billing serve` process (API and worker) SIGKILLed while a delivery is in flight loses no event:
after a restart every event reaches the receiver, the interrupted one again (at least once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing.domain.signatures import sign
from tests.conftest import BACKENDS, _truncate_all
from tests.live_engine import running_engine
from tests.signing import Signer
from tests.webhook_receiver import Receiver

CARD = {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvv": "123", "holderName": "Ada"}


class Api:
    """A signed merchant session against a live engine."""

    def __init__(self, base: str, client_id: str, pem: str) -> None:
        self.base, self.client_id, self.pem = base, client_id, pem
        self.signer = Signer(pem)
        self.token = ""

    def login(self) -> None:
        ts = int(time.time())
        answer = httpx.post(
            f"{self.base}/v1/auth/login",
            json={
                "clientId": self.client_id,
                "timestamp": ts,
                "signature": sign(self.pem, f"{self.client_id}.{ts}".encode()),
            },
        )
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["data"]["accessToken"]

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = httpx.Request(method, f"{self.base}{path}", params=params)
        if method != "GET":
            headers.update(self.signer.signed_headers(method, request.url.raw_path.decode(), None, raw))
        answer = httpx.request(
            method, f"{self.base}{path}", content=raw or None, params=params, headers=headers
        )
        assert answer.is_success, answer.text
        return answer.json()["data"]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("postgres_database")
    _truncate_all(url)
    return {"BILLING_DATABASE__URL": url}


@pytest.mark.slow
def test_a_killed_worker_loses_no_event(tmp_path: Path, database: dict[str, str]) -> None:
    receiver = Receiver().start()
    receiver.behaviours["/hooks"] = [("hang", 30.0), 200]
    settings = {
        **database,
        "BILLING_WORKER__INTERVAL_SECONDS": "0.2",
        "BILLING_WEBHOOKS__INTERVAL_SECONDS": "0.2",
        "BILLING_WEBHOOKS__TIMEOUT_SECONDS": "2",
    }
    processes: list[subprocess.Popen[str]] = []
    try:
        with running_engine(tmp_path, processes=processes, **settings) as (base, env):
            made = subprocess.run(
                [sys.executable, "-m", "billing.cli", "clients", "create", "--name", "Kill", "--json",
                 "--private-key-out", str(tmp_path / "key.pem")],
                env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
            )  # fmt: skip
            api = Api(base, json.loads(made.stdout)["clientId"], (tmp_path / "key.pem").read_text())
            api.login()
            endpoint = api.call("POST", "/v1/webhooks/endpoints", {"url": receiver.url("/hooks")})
            receiver.secrets["/hooks"] = [endpoint["secret"]]
            plan = api.call(
                "POST",
                "/v1/plans",
                {"plan": {"name": "Pro", "amount": "9.90", "currency": "USD", "type": "interval",
                          "frequency": {"frequency": 30}}},
            )  # fmt: skip
            for user in ("u1", "u2"):
                trx = api.call("POST", "/transactions", {"amount": 1, "currency": "USD", "userId": user})
                api.call(
                    "POST",
                    "/v1/subscriptions/verify-card",
                    {"uid": trx["uid"], "processor": "sandbox", "cardInfo": CARD,
                     "shouldCreateSubscription": True, "planUid": plan["id"]},
                )  # fmt: skip
            deadline = time.monotonic() + 30
            while not receiver.arrivals and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.arrivals, "no delivery started"
            interrupted = receiver.arrivals[0][1]
            os.kill(processes[0].pid, signal.SIGKILL)  # the delivery to `interrupted` is in flight
            processes[0].wait()

        with running_engine(tmp_path, **settings) as (base, _env):
            api.base = base
            events = api.call("GET", "/v1/events", params={"limit": 100})["items"]
            wanted = {e["id"] for e in events}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                answered = {
                    r.body["eventId"]
                    for r in receiver.on("/hooks")
                    if r.headers["webhook-id"] != interrupted or r.status == 200
                }
                again = [a for a in receiver.arrivals if a[1] == interrupted]
                if wanted <= answered and len(again) >= 2:
                    break
                time.sleep(0.2)
    finally:
        receiver.stop()

    assert len(wanted) >= 4  # two enrolments: subscription.created and charge.succeeded each
    assert wanted <= {r.body["eventId"] for r in receiver.on("/hooks")}
    assert len([a for a in receiver.arrivals if a[1] == interrupted]) >= 2, (
        "the interrupted delivery was not sent again"
    )
    assert all(r.verified_with == [0] for r in receiver.on("/hooks"))
