"""Replays sent to two `billing serve` processes at once: the database decides, exactly one runs."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.live_engine import running_engine

pytestmark = pytest.mark.anyio


async def _new_client(db_url: str) -> tuple[str, str]:
    from billing.domain.clock import SystemClock
    from billing.services.auth import create_client
    from billing.settings import AuthSettings
    from billing.store.engine import create_engine, session_factory

    engine = create_engine(db_url, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            client, key = await create_client(
                session,
                SystemClock(),
                name="Twice",
                timezone="UTC",
                environment="sandbox",
                settings=AuthSettings(),
            )
    finally:
        await engine.dispose()
    assert key.private_key_pem is not None
    return client.id, key.private_key_pem


@pytest.mark.slow
async def test_concurrent_replays_on_two_api_processes_run_once(db_url: str, tmp_path: Path) -> None:
    from billing.domain.signatures import canonical_request, sign

    client_id, pem = await _new_client(db_url)
    env = {
        "BILLING_DATABASE__URL": db_url,
        "BILLING_WORKER__ENABLED": "false",
        # Processes behind one load balancer share the token secret.
        "BILLING_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
    }
    with ExitStack() as stack:
        bases = []
        for name in ("a", "b"):
            workdir = tmp_path / name
            workdir.mkdir()
            base, _ = stack.enter_context(running_engine(workdir, **env))
            bases.append(base)

        ts = str(int(time.time()))
        login = httpx.post(
            f"{bases[0]}/v1/auth/login",
            json={
                "clientId": client_id,
                "timestamp": ts,
                "signature": sign(pem, f"{client_id}.{ts}".encode()),
            },
        )
        assert login.status_code == 200, login.text
        token = login.json()["data"]["accessToken"]
        plan = {
            "client": client_id,
            "plan": {
                "name": "Once",
                "amount": 9.90,
                "currency": "USD",
                "type": "interval",
                "frequency": {"frequency": 30},
            },
        }
        body = json.dumps(plan).encode()
        ts = str(int(time.time()))
        message = canonical_request(
            "v2", timestamp=ts, method="POST", target="/v1/plans", idempotency_key=None, body=body
        )
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Timestamp": ts,
            "X-Signature-Version": "2",
            "X-Signature": sign(pem, message),
        }

        def post(base: str) -> httpx.Response:
            return httpx.post(f"{base}/v1/plans", content=body, headers=headers, timeout=30)

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = await asyncio.get_running_loop().run_in_executor(
                None, lambda: list(pool.map(post, [bases[i % 2] for i in range(12)]))
            )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] + [401] * 11 or statuses == [201] + [401] * 11, statuses
        assert all("replay" in a.json()["message"] for a in answers if a.status_code == 401), [
            a.text for a in answers
        ]
        listed = httpx.get(f"{bases[1]}/v1/plans/list", headers={"Authorization": f"Bearer {token}"})
        assert [p["name"] for p in listed.json()["data"]] == ["Once"]
