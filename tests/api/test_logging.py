"""The whole merchant flow logged at DEBUG: no secret in any line, every request's lines carry its id.

The engine's own logging set-up (billing/logs.py ``configure_logging``) writes to a buffer while a
merchant logs in, refreshes, creates a plan and a transaction, verifies a card (full number and
CVV), charges on demand, refunds, creates a webhook endpoint (its signing secret is in the answer)
and changes its notification settings; the worker then runs its passes, its webhook deliveries and
its e-mails (to an SMTP server that is down, with a password configured). Every captured line is
searched for each secret that went by.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from billing.logs import configure_logging
from billing.services.notifications import Mailer
from billing.services.webhooks.delivery import Deliverer
from billing.worker import pass_context, run_pass_once
from tests.api.conftest import create_plan, create_transaction, data_of
from tests.conftest import new_merchant, test_settings

pytestmark = pytest.mark.anyio

CARD_NUMBER = "4242424242424242"
CVV = "8317"
SMTP_PASSWORD = "smtp-Pa55word-" + "q7Zr"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The engine's logging configuration at DEBUG, into a buffer; the previous handlers come back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _lines(stream: io.StringIO, start: int = 0) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue()[start:].splitlines() if line.strip()]


async def test_merchant_flow_logs_no_secret_and_every_request_line_carries_its_id(
    db_url: str, tmp_path: Path, clock: Any, captured: io.StringIO
) -> None:
    closed = _closed_port()
    settings = test_settings(
        db_url,
        tmp_path,
        log_level="DEBUG",
        smtp={"host": "127.0.0.1", "port": closed, "username": "mailer", "password": SMTP_PASSWORD},
    )
    app = create_app(settings, clock=clock)
    request_ids: list[str] = []
    signatures: list[str] = []
    tokens: list[str] = []

    async def remember_request_id(response: Any) -> None:
        request_ids.append(response.headers["x-request-id"])

    async with AsyncTestClient(app=app, raise_server_exceptions=False) as http:
        http.event_hooks["response"].append(remember_request_id)
        runtime = app.state.runtime
        merchant = await new_merchant(http, runtime, name="Acme")
        sign = merchant.sign

        def signing(message: bytes) -> str:
            signatures.append(signature := sign(message))
            return signature

        merchant.sign = signing  # type: ignore[method-assign]
        tokens += [merchant.access_token or "", merchant.refresh_token or ""]
        assert (await merchant.login()).status_code == 200
        tokens += [merchant.access_token or "", merchant.refresh_token or ""]
        refreshed = data_of(
            await http.post("/v1/auth/refresh", json={"refreshToken": merchant.refresh_token})
        )
        merchant.access_token = refreshed["accessToken"]
        tokens += [refreshed["accessToken"], refreshed["refreshToken"]]

        plan = await create_plan(merchant, amount="29.90")
        trx = await create_transaction(merchant, user="ada")
        card = {"number": CARD_NUMBER, "expMonth": 12, "expYear": 2030, "cvv": CVV, "holderName": "Ada L"}
        body = {"uid": trx["uid"], "processor": "sandbox", "cardInfo": card}
        body |= {"shouldCreateSubscription": True, "planUid": plan["id"]}
        enrolled = data_of(await merchant.post("/v1/subscriptions/verify-card", json=body))
        subscription_id = enrolled["subscription"]["id"]
        batch = await merchant.post(
            "/v1/subscriptions/charges",
            json={"client": merchant.id, "data": [{"subscriptionId": subscription_id, "amount": 2.5}]},
        )
        assert batch.status_code == 202, batch.text
        data_of(await merchant.post(f"/v1/charges/{enrolled['charge']['id']}/refund", json={}), 201)
        endpoint = data_of(
            await merchant.post("/v1/webhooks/endpoints", json={"url": f"http://127.0.0.1:{closed}/hook"}),
            201,
        )
        webhook_secret = endpoint["secret"]
        assert webhook_secret.startswith("whsec_")
        data_of(await merchant.put("/v1/notifications/settings", json={"senderName": "Acme"}))
        # A failing request logs too (a refresh token used twice revokes the login).
        await http.post("/v1/auth/refresh", json={"refreshToken": tokens[3]})
        http.event_hooks["response"].clear()
        requests_end = len(captured.getvalue())

        await run_pass_once(runtime, "test-worker")
        deliverer = Deliverer(runtime, "test-worker")
        with pass_context("webhooks"):
            await deliverer.run_until_idle()
        await deliverer.aclose(1.0)
        with pass_context("notifications"):
            await Mailer(runtime, "test-worker").run_until_idle()

    lines = _lines(captured)
    text = captured.getvalue()
    assert len(lines) > 20  # DEBUG really captured the flow
    secrets = {
        "card number": CARD_NUMBER,
        "card number, grouped": "4242 4242 4242 4242",
        "jwt secret": settings.jwt_secret(),
        "webhook secret": webhook_secret,
        "webhook secret key": webhook_secret.removeprefix("whsec_"),
        "smtp password": SMTP_PASSWORD,
    }
    secrets |= {f"token {n}": token for n, token in enumerate(tokens)}
    secrets |= {f"signature {n}": signature for n, signature in enumerate(signatures)}
    key_lines = [line for line in merchant.private_key_pem.splitlines() if "PRIVATE KEY" not in line]
    secrets |= {f"private key line {n}": line for n, line in enumerate(key_lines)}
    assert len(tokens) == 6
    assert all(tokens)
    assert len(signatures) >= 6
    for what, secret in secrets.items():
        assert secret, what
        assert secret not in text, f"{what} appears in the log"
    assert not re.search(rf"(?<![0-9A-Za-z]){CVV}(?![0-9A-Za-z])", text), "the CVV appears in the log"

    # Every line a request caused names the request: the server's lines, not those of the test
    # client (httpx) or of the event loop its portal thread starts (asyncio).
    request_lines = [
        line
        for line in _lines(io.StringIO(text[:requests_end]))
        if not str(line.get("logger", "")).startswith(("httpx", "httpcore", "asyncio"))
    ]
    assert request_lines
    missing = [line for line in request_lines if line.get("request_id") not in request_ids]
    assert not missing, missing[:3]
    access = [line for line in request_lines if line.get("logger") == "billing.access"]
    assert [line["request_id"] for line in access] == request_ids
    assert any(line["logger"] != "billing.access" for line in request_lines)

    # The worker's lines name their pass and its run.
    worker_lines = [
        line for line in _lines(io.StringIO(text[requests_end:])) if not line["logger"].startswith("asyncio")
    ]
    assert worker_lines
    unnamed = [line for line in worker_lines if not (line.get("pass") and line.get("pass_id"))]
    assert not unnamed, unnamed[:3]
    passes = {line["pass"] for line in worker_lines}
    assert {"ondemand", "webhooks"} <= passes
    assert len({line["pass_id"] for line in worker_lines if line["pass"] == "ondemand"}) == 1
    assert not any("request_id" in line for line in worker_lines)
