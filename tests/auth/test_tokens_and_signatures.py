"""Login, refresh rotation and request signatures, through HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


async def test_login_returns_both_tokens_with_expirations(merchant: Any, clock: Any) -> None:
    response = await merchant.login()
    data = response.json()["data"]
    now = int(clock.now().timestamp())
    assert data["expirationToken"] == now + 30 * 60
    assert data["expirationRefreshToken"] == now + 7 * 24 * 3600
    assert data["refreshToken"].startswith("rt_")


async def test_login_with_bad_signature_is_7604(merchant: Any) -> None:
    ts = merchant.timestamp()
    response = await merchant.http.post(
        "/v1/auth/login",
        json={
            "clientId": merchant.id,
            "timestamp": ts,
            "signature": merchant.sign(f"{merchant.id}.{int(ts) + 1}".encode()),
        },
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7604"


async def test_login_for_unknown_client_looks_like_bad_signature(merchant: Any) -> None:
    ts = merchant.timestamp()
    response = await merchant.http.post(
        "/v1/auth/login",
        json={
            "clientId": "cli_nobody",
            "timestamp": ts,
            "signature": merchant.sign(f"cli_nobody.{ts}".encode()),
        },
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7604"


async def test_login_with_stale_timestamp_is_7604(merchant: Any, clock: Any) -> None:
    ts = str(int(clock.now().timestamp()) - 6 * 60)
    response = await merchant.http.post(
        "/v1/auth/login",
        json={
            "clientId": merchant.id,
            "timestamp": ts,
            "signature": merchant.sign(f"{merchant.id}.{ts}".encode()),
        },
    )
    assert response.json()["errors"][0]["code"] == "7604"


async def test_signed_write_is_accepted(merchant: Any) -> None:
    response = await merchant.post("/v1/probe/echo", json={"amount": 10})
    assert response.status_code == 200, response.text
    assert response.json()["client"] == merchant.id


async def test_one_byte_change_is_7604(merchant: Any) -> None:
    body = b'{"amount": 10}'
    headers = merchant.signed_headers(body)
    response = await merchant.post("/v1/probe/echo", content=b'{"amount": 11}', headers=headers, sign=False)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7604"


async def test_reserialised_body_is_7604(merchant: Any) -> None:
    """The same JSON with different bytes does not verify: sign what you send."""
    signed = json.dumps({"a": 1, "b": 2}).encode()
    sent = json.dumps({"a": 1, "b": 2}, separators=(",", ":")).encode()
    assert json.loads(signed) == json.loads(sent)
    response = await merchant.post(
        "/v1/probe/echo", content=sent, headers=merchant.signed_headers(signed), sign=False
    )
    assert response.json()["errors"][0]["code"] == "7604"


async def test_missing_signature_is_7604(merchant: Any) -> None:
    response = await merchant.post("/v1/probe/echo", json={"a": 1}, sign=False)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7604"


async def test_timestamp_six_minutes_old_is_7604(merchant: Any, clock: Any) -> None:
    body = b"{}"
    ts = str(int(clock.now().timestamp()) - 6 * 60)
    headers = {"X-Timestamp": ts, "X-Signature": merchant.sign(ts.encode() + b"." + body)}
    response = await merchant.post("/v1/probe/echo", content=body, headers=headers, sign=False)
    assert response.json()["errors"][0]["code"] == "7604"


async def test_expired_key_is_7616(merchant: Any, clock: Any) -> None:
    clock.advance(timedelta(days=366))
    response = await merchant.login()
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7616"


async def test_expired_key_on_signed_request_is_7616(merchant: Any, runtime: Any, clock: Any) -> None:
    from billing.store.models import SigningKey

    async with runtime.sessions() as session, session.begin():
        key = await session.get(SigningKey, merchant.key_id)
        key.expires_at = clock.now() - timedelta(seconds=1)
    response = await merchant.post("/v1/probe/echo", json={"a": 1})
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7616"


async def test_revoked_key_is_7604(merchant: Any, runtime: Any, clock: Any) -> None:
    from billing.services.auth import revoke_key

    async with runtime.sessions() as session, session.begin():
        await revoke_key(session, clock, merchant.id, merchant.key_id)
    response = await merchant.post("/v1/probe/echo", json={"a": 1})
    assert response.json()["errors"][0]["code"] == "7604"


async def test_reads_need_a_token_but_no_signature(merchant: Any) -> None:
    assert (await merchant.get("/v1/probe/whoami")).json() == {"client": merchant.id}
    anonymous = await merchant.http.get("/v1/probe/whoami")
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["code"] == "7600"


async def test_expired_access_token_is_7601(merchant: Any, clock: Any) -> None:
    clock.advance(timedelta(minutes=31))
    response = await merchant.get("/v1/probe/whoami")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "7601"


async def test_malformed_access_token_is_7602(merchant: Any) -> None:
    response = await merchant.http.get("/v1/probe/whoami", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.json()["errors"][0]["code"] == "7602"


async def test_refresh_rotates_and_old_token_dies(merchant: Any) -> None:
    first_refresh = merchant.refresh_token
    response = await merchant.http.post("/v1/auth/refresh", json={"refreshToken": first_refresh})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["refreshToken"] != first_refresh
    merchant.access_token = data["accessToken"]
    assert (await merchant.get("/v1/probe/whoami")).status_code == 200


async def test_refresh_reuse_revokes_the_whole_family(merchant: Any) -> None:
    stolen = merchant.refresh_token
    owner = (await merchant.http.post("/v1/auth/refresh", json={"refreshToken": stolen})).json()["data"]
    replay = await merchant.http.post("/v1/auth/refresh", json={"refreshToken": stolen})
    assert replay.status_code == 401
    assert replay.json()["errors"][0]["code"] == "7603"
    # The owner's newer tokens died with the family: both must log in again.
    again = await merchant.http.post("/v1/auth/refresh", json={"refreshToken": owner["refreshToken"]})
    assert again.json()["errors"][0]["code"] == "7603"
    merchant.access_token = owner["accessToken"]
    assert (await merchant.get("/v1/probe/whoami")).status_code == 401
    assert (await merchant.login()).status_code == 200
    assert (await merchant.get("/v1/probe/whoami")).status_code == 200


async def test_sandbox_client_may_turn_signing_off(merchant_factory: Any) -> None:
    unsigned = await merchant_factory(name="Loose", signing_required=False)
    response = await unsigned.post("/v1/probe/echo", json={"a": 1}, sign=False)
    assert response.status_code == 200


async def test_production_client_cannot_turn_signing_off(merchant_factory: Any) -> None:
    from billing.domain.errors import BillingError

    with pytest.raises(BillingError, match="Production clients must sign"):
        await merchant_factory(name="Strict", environment="production", signing_required=False)


async def test_transactions_outside_v1_need_a_token_and_a_signature(merchant: Any) -> None:
    body = {"amount": 1, "currency": "USD", "userId": "u-1"}
    anonymous = await merchant.http.post("/transactions", json=body)
    assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (401, "7600")
    unsigned = await merchant.post("/transactions", json=body, sign=False)
    assert (unsigned.status_code, unsigned.json()["errors"][0]["code"]) == (401, "7604")
    assert (await merchant.post("/transactions", json=body)).status_code == 201


async def test_a_token_already_accepted_is_refused_once_its_family_is_revoked(merchant: Any) -> None:
    # Accepted once: its signature check is remembered by the process, not its validity.
    assert (await merchant.get("/v1/probe/whoami")).status_code == 200
    stolen = merchant.refresh_token
    await merchant.http.post("/v1/auth/refresh", json={"refreshToken": stolen})
    await merchant.http.post("/v1/auth/refresh", json={"refreshToken": stolen})  # reuse: family revoked
    refused = await merchant.get("/v1/probe/whoami")
    assert (refused.status_code, refused.json()["errors"][0]["code"]) == (401, "7602")


async def test_a_token_is_checked_against_the_current_secret(merchant: Any, runtime: Any) -> None:
    from billing.domain.errors import BillingError
    from billing.services.auth import authenticate

    header = f"Bearer {merchant.access_token}"
    secret = runtime.settings.jwt_secret()
    async with runtime.sessions() as session:
        accepted = await authenticate(session, runtime.clock, secret, header)
        assert accepted.id == merchant.id
        # The same token after the secret changed: a remembered verification must not carry over.
        with pytest.raises(BillingError) as refused:
            await authenticate(session, runtime.clock, secret + "-rotated", header)
        assert refused.value.spec.code == "7602"
        tampered = header[:-2] + ("AA" if not header.endswith("AA") else "BB")
        with pytest.raises(BillingError):
            await authenticate(session, runtime.clock, secret, tampered)
