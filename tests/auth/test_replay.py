"""Request signatures v2: bound to the method, route, query and Idempotency-Key, and accepted once.

Each test plays the party that captured a signed request (a logging proxy, a retrying load
balancer, a leaked HAR file) and re-sends or moves exactly the bytes and headers it saw.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.auth.test_idempotency import EFFECTS, code, effects

pytestmark = pytest.mark.anyio


def captured(
    merchant: Any,
    method: str,
    target: str,
    body: bytes,
    *,
    key: str | None = None,
    scheme: str | None = None,
    timestamp: str | None = None,
) -> dict[str, str]:
    """Every header of one signed request, as a proxy would log them."""
    headers = {"Authorization": f"Bearer {merchant.access_token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if timestamp is None:
        headers |= merchant.signed_headers(
            body, method=method, target=target, idempotency_key=key, scheme=scheme
        )
    else:
        from billing.domain.signatures import canonical_request

        scheme = scheme or merchant.scheme
        message = canonical_request(
            scheme, timestamp=timestamp, method=method, target=target, idempotency_key=key, body=body
        )
        headers |= {"X-Timestamp": timestamp, "X-Signature": merchant.sign(message)}
        if scheme == "v2":
            headers["X-Signature-Version"] = "2"
    return headers


async def send(merchant: Any, method: str, target: str, body: bytes, headers: dict[str, str]) -> Any:
    return await merchant.http.request(method, target, content=body, headers=headers)


def message_of(response: Any) -> str:
    return str(response.json()["message"])


async def test_a_replayed_write_runs_once(merchant: Any, runtime: Any) -> None:
    body = b'{"amount": 10}'
    headers = captured(merchant, "POST", EFFECTS, body)
    answers = [await send(merchant, "POST", EFFECTS, body, headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 401, 401]
    assert {code(a) for a in answers[1:]} == {"7604"}
    assert "replay" in message_of(answers[1])
    assert await effects(runtime) == 1


async def test_concurrent_replays_run_once(concurrent_merchant_factory: Any, app: Any) -> None:
    merchant = await concurrent_merchant_factory()
    body = b'{"amount": 11}'
    headers = captured(merchant, "POST", EFFECTS, body)
    answers = await asyncio.gather(*(send(merchant, "POST", EFFECTS, body, headers) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [201] + [401] * 7
    assert await effects(app.state.runtime) == 1


async def test_a_byte_for_byte_retry_with_an_answered_key_gets_the_stored_answer(
    merchant: Any, runtime: Any
) -> None:
    """The key's rule comes first, so an honest retrying client or load balancer keeps working."""
    body = b'{"amount": 12}'
    headers = captured(merchant, "POST", EFFECTS, body, key="k-retry")
    first = await send(merchant, "POST", EFFECTS, body, headers)
    again = await send(merchant, "POST", EFFECTS, body, headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await effects(runtime) == 1


async def test_stripping_or_changing_the_idempotency_key_breaks_the_signature(
    merchant: Any, runtime: Any
) -> None:
    body = b'{"amount": 13}'
    headers = captured(merchant, "POST", EFFECTS, body, key="k-signed")
    stripped = {name: value for name, value in headers.items() if name != "Idempotency-Key"}
    changed = {**headers, "Idempotency-Key": "k-other"}
    for variant in (stripped, changed):
        answer = await send(merchant, "POST", EFFECTS, body, variant)
        assert (answer.status_code, code(answer)) == (401, "7604")
        assert "replay" not in message_of(answer)
    assert await effects(runtime) == 0
    # The genuine request still runs once: the refused variants did not use its signature up.
    assert (await send(merchant, "POST", EFFECTS, body, headers)).status_code == 201
    assert await effects(runtime) == 1


async def test_a_replay_after_a_server_error_needs_a_new_signature(
    merchant: Any, runtime: Any, app: Any
) -> None:
    """A 5xx releases the key; the same signature again is a replay, a re-signed retry runs."""
    app.state.probe_crashes = 1
    body = b'{"amount": 14}'
    headers = captured(merchant, "POST", EFFECTS, body, key="k-crash")
    assert (await send(merchant, "POST", EFFECTS, body, headers)).status_code == 500
    replay = await send(merchant, "POST", EFFECTS, body, headers)
    assert (replay.status_code, code(replay)) == (401, "7604")
    assert "replay" in message_of(replay)
    resigned = await merchant.post(EFFECTS, content=body, headers={"Idempotency-Key": "k-crash"})
    assert resigned.status_code == 201, resigned.text
    assert await effects(runtime) == 1


@pytest.mark.parametrize(
    ("method", "signed_target", "sent_target"),
    [
        # A cancel signed for one subscription, sent for another.
        (
            "DELETE",
            "/v1/subscriptions/sub_01JXAAAAAAAAAAAAAAAAAAAAAA",
            "/v1/subscriptions/sub_01JXBBBBBBBBBBBBBBBBBBBBBB",
        ),
        # Another query string.
        ("POST", EFFECTS, EFFECTS + "?clientId=x"),
        # A write moved to another route.
        ("POST", EFFECTS, "/v1/probe/echo"),
    ],
)
async def test_a_signature_moved_to_another_route_is_refused(
    merchant: Any, method: str, signed_target: str, sent_target: str
) -> None:
    body = b"" if method == "DELETE" else b"{}"
    headers = captured(merchant, method, signed_target, body)
    moved = await send(merchant, method, sent_target, body, headers)
    assert (moved.status_code, code(moved)) == (401, "7604")


async def test_a_signature_moved_to_another_method_is_refused(merchant: Any) -> None:
    """A signed set-default body re-sent as DELETE of the card does not verify."""
    body = json.dumps({"userId": "u1", "client": merchant.id, "cardId": "tok_x"}).encode()
    headers = captured(merchant, "POST", "/v1/subscriptions/payment-methods/set-default", body)
    moved = await send(merchant, "DELETE", "/v1/subscriptions/payment-methods", body, headers)
    assert (moved.status_code, code(moved)) == (401, "7604")


@pytest.mark.parametrize(
    ("offset", "accepted", "says"),
    [
        (20, True, ""),
        (31, False, "ahead"),
        (299, False, "ahead"),
        (-299, True, ""),
        (-301, False, "older"),
    ],
)
async def test_the_timestamp_window(merchant: Any, offset: int, accepted: bool, says: str) -> None:
    ts = str(int(merchant.timestamp()) + offset)
    body = b'{"w": %d}' % offset
    answer = await send(
        merchant,
        "POST",
        "/v1/probe/echo",
        body,
        captured(merchant, "POST", "/v1/probe/echo", body, timestamp=ts),
    )
    assert (answer.status_code == 200) is accepted, answer.text
    if not accepted:
        assert code(answer) == "7604"
        assert says in message_of(answer)


@pytest.mark.parametrize("raw", ["1767225600000", "1767225600.0", "-5", " ", "0x10"])
async def test_the_timestamp_is_whole_seconds(merchant: Any, raw: str) -> None:
    if raw == "1767225600000":
        raw = str(int(merchant.timestamp()) * 1000)
    body = b"{}"
    headers = {**captured(merchant, "POST", "/v1/probe/echo", body), "X-Timestamp": raw}
    answer = await send(merchant, "POST", "/v1/probe/echo", body, headers)
    assert (answer.status_code, code(answer)) == (401, "7604")
    assert "seconds" in message_of(answer)


async def test_a_v2_client_refuses_v1_signatures(merchant: Any) -> None:
    body = b"{}"
    v1 = captured(merchant, "POST", "/v1/probe/echo", body, scheme="v1")
    answer = await send(merchant, "POST", "/v1/probe/echo", body, v1)
    assert (answer.status_code, code(answer)) == (401, "7604")
    assert "X-Signature-Version: 2" in message_of(answer)
    bad_version = {**captured(merchant, "POST", "/v1/probe/echo", body), "X-Signature-Version": "3"}
    answer = await send(merchant, "POST", "/v1/probe/echo", body, bad_version)
    assert (answer.status_code, code(answer)) == (401, "7604")


async def test_a_v1_sandbox_client_signs_the_body_and_may_use_v2(merchant_factory: Any, runtime: Any) -> None:
    merchant = await merchant_factory(name="Migo-compatible")
    async with runtime.sessions() as session, session.begin():
        from billing.services.auth import set_signature_scheme

        await set_signature_scheme(session, merchant.id, "v1")
    body = b'{"v": 1}'
    v1 = captured(merchant, "POST", EFFECTS, body, scheme="v1")
    assert (await send(merchant, "POST", EFFECTS, body, v1)).status_code == 201
    replay = await send(merchant, "POST", EFFECTS, body, v1)
    assert (replay.status_code, code(replay)) == (401, "7604")
    assert "replay" in message_of(replay)
    v2 = captured(merchant, "POST", EFFECTS, body, scheme="v2")
    assert (await send(merchant, "POST", EFFECTS, body, v2)).status_code == 201
    assert await effects(runtime, merchant.id) == 2


async def test_production_clients_cannot_use_v1(runtime: Any, merchant: Any) -> None:
    from billing.domain.errors import BillingError
    from billing.services.auth import create_client, set_signature_scheme

    async with runtime.sessions() as session, session.begin():
        with pytest.raises(BillingError) as refused:
            await create_client(
                session,
                runtime.clock,
                name="Prod",
                timezone="UTC",
                environment="production",
                settings=runtime.settings.auth,
                signature_scheme="v1",
            )
        assert refused.value.field == "signatureScheme"
        prod, _ = await create_client(
            session,
            runtime.clock,
            name="Prod",
            timezone="UTC",
            environment="production",
            settings=runtime.settings.auth,
        )
        with pytest.raises(BillingError):
            await set_signature_scheme(session, prod.id, "v1")
        assert prod.signature_scheme == "v2"


async def test_a_login_is_accepted_once(merchant: Any) -> None:
    ts = str(int(merchant.timestamp()) - 7)
    body = {
        "clientId": merchant.id,
        "timestamp": ts,
        "signature": merchant.sign(f"{merchant.id}.{ts}".encode()),
    }
    first = await merchant.http.post("/v1/auth/login", json=body)
    again = await merchant.http.post("/v1/auth/login", json=body)
    assert first.status_code == 200
    assert (again.status_code, code(again)) == (401, "7604")
    assert "replay" in message_of(again)


async def test_login_does_the_same_work_for_unknown_and_known_clients(
    merchant: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing must not tell which client ids exist: one query and one verification either way."""
    from types import SimpleNamespace

    from sqlalchemy import event

    import billing.services.auth as auth_module

    real = auth_module.Ed25519PublicKey
    work = {"statements": 0, "verifications": 0}

    class Counting:
        def __init__(self, key: Any) -> None:
            self.key = key

        def verify(self, signature: bytes, message: bytes) -> None:
            work["verifications"] += 1
            self.key.verify(signature, message)

    monkeypatch.setattr(
        auth_module,
        "Ed25519PublicKey",
        SimpleNamespace(from_public_bytes=lambda raw: Counting(real.from_public_bytes(raw))),
    )

    def count(*_: Any) -> None:
        work["statements"] += 1

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        seen = []
        for client_id in (merchant.id, "cli_01JXNOBODYNOBODYNOBODYNOBO"):
            work.update(statements=0, verifications=0)
            ts = str(int(merchant.timestamp()) - 11)
            bad = merchant.sign(f"{client_id}.{int(ts) - 1}".encode())  # a signature of another message
            response = await merchant.http.post(
                "/v1/auth/login", json={"clientId": client_id, "timestamp": ts, "signature": bad}
            )
            assert (response.status_code, code(response)) == (401, "7604")
            seen.append((response.json()["message"], dict(work)))
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    assert seen[0] == seen[1]
    assert seen[0][1]["verifications"] == 1
