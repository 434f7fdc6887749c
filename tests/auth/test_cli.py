"""`billing clients ...` and `billing sign`, run with click's CliRunner against the test database.

Each key the CLI prints is then used through HTTP, so the tests show the operator's output works.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from billing.cli import cli

pytestmark = pytest.mark.anyio


@pytest.fixture
def run_cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``await run_cli("clients", "list")``: the CLI on the test database, off the event loop."""
    # The CLI points the root logger at stderr; inside pytest that would outlive the test.
    monkeypatch.setattr("billing.cli.common.configure_logging", lambda *_: None)
    env = {"BILLING_DATABASE__URL": db_url, "BILLING_DATA_DIR": str(tmp_path)}

    async def run(*args: str, extra_env: dict[str, str] | None = None, code: int = 0) -> Result:
        runner = CliRunner()
        result = await anyio.to_thread.run_sync(
            lambda: runner.invoke(cli, list(args), env={**env, **(extra_env or {})})
        )
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


_logins: dict[str, int] = {}


async def login_status(client: Any, clock: Any, client_id: str, private_key_pem: str) -> tuple[int, str]:
    from billing.domain.signatures import sign

    # A login signature is accepted once and the test clock stands still: a fresh timestamp per login.
    _logins[client_id] = _logins.get(client_id, 0) + 1
    ts = str(int(clock.now().timestamp()) - _logins[client_id])
    response = await client.post(
        "/v1/auth/login",
        json={
            "clientId": client_id,
            "timestamp": ts,
            "signature": sign(private_key_pem, f"{client_id}.{ts}".encode()),
        },
    )
    body = response.json()
    return response.status_code, body["data"]["accessToken"] if response.status_code == 200 else body[
        "errors"
    ][0]["code"]


def pem_of(output: str) -> str:
    start = output.index("-----BEGIN PRIVATE KEY-----")
    end = output.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----")
    return output[start:end] + "\n"


def field(output: str, label: str) -> str:
    for line in output.splitlines():
        if line.startswith(label + ":"):
            return line.split(":", 1)[1].strip().split()[0]
    raise AssertionError(f"{label} not in output:\n{output}")


async def test_create_prints_the_client_and_a_key_pair_that_logs_in(
    run_cli: Any, client: Any, clock: Any, runtime: Any
) -> None:
    from billing.store.models import SigningKey

    result = await run_cli("clients", "create", "--name", "Acme Co")
    client_id = field(result.output, "client id")
    assert client_id.startswith("cli_")
    assert field(result.output, "environment") == "sandbox"
    assert field(result.output, "timezone") == "America/Guatemala"
    pem = pem_of(result.output)
    status, _ = await login_status(client, clock, client_id, pem)
    assert status == 200
    # The engine keeps the public half only.
    async with runtime.sessions() as session:
        key = await session.get(SigningKey, field(result.output, "key id"))
    private = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.public_key == base64.b64encode(raw_public).decode()
    assert "PRIVATE" not in key.model_dump_json()


async def test_create_json_with_private_key_file(
    run_cli: Any, client: Any, clock: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "acme.pem"
    result = await run_cli(
        "clients",
        "create",
        "--name",
        "Acme",
        "--json",
        "--private-key-out",
        str(key_file),
        "--timezone",
        "Asia/Tokyo",
    )
    data = json.loads(result.output)
    assert data["timezone"] == "Asia/Tokyo"
    assert data["signingRequired"] is True
    assert "privateKeyPem" not in data["key"]
    assert data["key"]["status"] == "active"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert (await login_status(client, clock, data["clientId"], key_file.read_text()))[0] == 200
    # The file is never overwritten: a second key would lose the first one.
    again = await run_cli("clients", "create", "--name", "B", "--private-key-out", str(key_file), code=1)
    assert "already exists" in again.output


async def test_create_registers_a_given_public_key(
    run_cli: Any, client: Any, clock: Any, tmp_path: Path
) -> None:
    private = Ed25519PrivateKey.generate()
    public_file = tmp_path / "public.pem"
    public_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = await run_cli(
        "clients", "create", "--name", "Own key", "--public-key", str(public_file), "--json"
    )
    data = json.loads(result.output)
    assert "privateKeyPem" not in data["key"]
    assert "PRIVATE KEY" not in result.output
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert (await login_status(client, clock, data["clientId"], pem))[0] == 200


async def test_create_refuses_what_the_spec_forbids(run_cli: Any, tmp_path: Path) -> None:
    production = await run_cli(
        "clients", "create", "--name", "P", "--environment", "production", "--no-signing", code=1
    )
    assert "Production clients must sign" in production.output
    zone = await run_cli("clients", "create", "--name", "Z", "--timezone", "Mars/Olympus", code=1)
    assert "IANA" in zone.output
    not_a_key = tmp_path / "nope.pem"
    not_a_key.write_text("hello")
    bad = await run_cli("clients", "create", "--name", "K", "--public-key", str(not_a_key), code=1)
    assert "Ed25519" in bad.output
    listed = await run_cli("clients", "list", "--json")
    assert json.loads(listed.output) == []  # nothing half-created


async def test_sandbox_may_turn_signing_off_and_default_timezone_comes_from_settings(run_cli: Any) -> None:
    result = await run_cli(
        "clients",
        "create",
        "--name",
        "Loose",
        "--no-signing",
        "--json",
        extra_env={"BILLING_DEFAULT_TIMEZONE": "Europe/London"},
    )
    data = json.loads(result.output)
    assert (data["signingRequired"], data["timezone"]) == (False, "Europe/London")


async def test_list_shows_every_client(run_cli: Any) -> None:
    empty = await run_cli("clients", "list")
    assert "no clients yet" in empty.output
    a = json.loads((await run_cli("clients", "create", "--name", "Alpha", "--json")).output)
    b = json.loads(
        (await run_cli("clients", "create", "--name", "Beta", "--json", "--environment", "production")).output
    )
    text = (await run_cli("clients", "list")).output
    assert a["clientId"] in text
    assert b["clientId"] in text
    rows = json.loads((await run_cli("clients", "list", "--json")).output)
    assert [(r["name"], r["environment"], r["activeKeys"]) for r in rows] == [
        ("Alpha", "sandbox", 1),
        ("Beta", "production", 1),
    ]


async def test_key_rotation_add_list_revoke(run_cli: Any, client: Any, clock: Any) -> None:
    created = json.loads((await run_cli("clients", "create", "--name", "Rotor", "--json")).output)
    client_id, old = created["clientId"], created["key"]
    added = json.loads(
        (
            await run_cli("clients", "keys", "add", "--client", client_id, "--lifetime-days", "30", "--json")
        ).output
    )
    new = added["key"]
    assert added["clientId"] == client_id
    assert new["expiresAt"][:10] != old["expiresAt"][:10]
    listed = json.loads((await run_cli("clients", "keys", "list", "--client", client_id, "--json")).output)
    assert [(k["keyId"], k["status"]) for k in listed] == [(old["keyId"], "active"), (new["keyId"], "active")]
    assert (await login_status(client, clock, client_id, old["privateKeyPem"]))[0] == 200

    revoked = await run_cli("clients", "keys", "revoke", "--client", client_id, "--key-id", old["keyId"])
    assert f"revoked {old['keyId']}" in revoked.output
    text = (await run_cli("clients", "keys", "list", "--client", client_id)).output
    assert "revoked" in text
    assert await login_status(client, clock, client_id, old["privateKeyPem"]) == (401, "7604")
    assert (await login_status(client, clock, client_id, new["privateKeyPem"]))[0] == 200


async def test_key_commands_name_unknown_clients_and_keys(run_cli: Any) -> None:
    missing = await run_cli("clients", "keys", "add", "--client", "cli_nobody", code=1)
    assert "Client not found" in missing.output
    created = json.loads((await run_cli("clients", "create", "--name", "K", "--json")).output)
    other = json.loads((await run_cli("clients", "create", "--name", "L", "--json")).output)
    # A key id of another client is not found for this one.
    wrong = await run_cli(
        "clients",
        "keys",
        "revoke",
        "--client",
        created["clientId"],
        "--key-id",
        other["key"]["keyId"],
        code=1,
    )
    assert "not found" in wrong.output


async def test_sign_body_produces_headers_the_api_accepts(
    run_cli: Any, client: Any, clock: Any, tmp_path: Path
) -> None:
    created = json.loads((await run_cli("clients", "create", "--name", "Signer", "--json")).output)
    key_file = tmp_path / "signer.pem"
    key_file.write_text(created["key"]["privateKeyPem"])
    ts = str(int(clock.now().timestamp()))
    login_body = (
        await run_cli("sign", "--key", str(key_file), "--login", created["clientId"], "--timestamp", ts)
    ).output
    login = await client.post(
        "/v1/auth/login", content=login_body.strip().encode(), headers={"Content-Type": "application/json"}
    )
    assert login.status_code == 200, login.text
    token = login.json()["data"]["accessToken"]

    body_file = tmp_path / "body.json"
    body_file.write_bytes(b'{"amount": 12.50,  "note": "exact bytes"}\n')
    target = "/v1/probe/echo"
    base = ("sign", "--key", str(key_file), "--body", str(body_file), "--path", target, "--timestamp", ts)
    curl_form = (await run_cli(*base)).output
    parts = curl_form.split()
    assert parts[0::2] == ["-H", "-H", "-H"]
    headers = dict(part.split(":", 1) for part in parts[1::2])
    assert headers["X-Timestamp"] == ts
    assert headers["X-Signature-Version"] == "2"
    response = await client.post(
        target,
        content=body_file.read_bytes(),
        headers={**headers, "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    # The same headers again are a replay, and on another path they do not verify at all.
    again = await client.post(
        target,
        content=body_file.read_bytes(),
        headers={**headers, "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert again.status_code == 401
    assert "replay" in again.json()["message"]

    as_json = json.loads((await run_cli(*base, "--format", "json")).output)
    assert as_json == headers
    lines = (await run_cli(*base, "--format", "headers")).output
    assert lines.splitlines() == [
        f"X-Timestamp: {ts}",
        f"X-Signature: {headers['X-Signature']}",
        "X-Signature-Version: 2",
    ]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(created["key"]["publicKey"]))
    message = b"v2\n" + ts.encode() + b"\nPOST\n" + target.encode() + b"\n\n" + body_file.read_bytes()
    public.verify(base64.b64decode(headers["X-Signature"]), message)
    v1 = json.loads((await run_cli(*base, "--scheme", "v1", "--format", "json")).output)
    public.verify(base64.b64decode(v1["X-Signature"]), ts.encode() + b"." + body_file.read_bytes())
    assert "X-Signature-Version" not in v1
    keyed = json.loads((await run_cli(*base, "--idempotency-key", "k-1", "--format", "json")).output)
    assert keyed["Idempotency-Key"] == "k-1"
    keyed_message = message.replace(b"\n\n", b"\nk-1\n", 1)
    public.verify(base64.b64decode(keyed["X-Signature"]), keyed_message)
    missing_path = await run_cli("sign", "--key", str(key_file), "--body", str(body_file), code=2)
    assert "--path" in missing_path.output


async def test_sign_needs_exactly_one_of_body_or_login(run_cli: Any, tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    neither = await run_cli("sign", "--key", str(key_file), code=2)
    assert "exactly one of --body" in neither.output
    both = await run_cli("sign", "--key", str(key_file), "--body", str(key_file), "--login", "cli_x", code=2)
    assert "exactly one of --body" in both.output
    not_pem = tmp_path / "plain.txt"
    not_pem.write_text("not a key")
    bad = await run_cli("sign", "--key", str(not_pem), "--login", "cli_x", code=1)
    assert "not a PEM private key" in bad.output
