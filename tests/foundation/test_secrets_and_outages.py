"""The token secret must be strong; a database outage answers 503; logs never carry SQL parameters."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from billing.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def billing(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", *args],
        cwd=cwd,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
            "BILLING_DATA_DIR": str(cwd),
            "BILLING_DATABASE__URL": f"sqlite+aiosqlite:///{cwd / 'b.db'}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "at least 32 bytes"),
        ("x", "at least 32 bytes"),
        ("0123456789abcdef0123456789abcde", "at least 32 bytes"),
        ("a" * 64, "too predictable"),
        ("abab" * 16, "too predictable"),
    ],
)
def test_a_weak_token_secret_is_refused(secret: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(auth={"jwt_secret": secret})
    assert "auth.jwt_secret" in str(refused.value)
    assert reason in str(refused.value)
    assert secret not in str(refused.value) or not secret


def test_a_generated_secret_passes() -> None:
    assert load_settings(auth={"jwt_secret": secrets.token_urlsafe(48)}).auth.jwt_secret is not None


def test_config_check_and_serve_refuse_a_weak_secret(tmp_path: Path) -> None:
    check = billing("config", "check", cwd=tmp_path, BILLING_AUTH__JWT_SECRET="short")
    assert check.returncode == 3
    assert "auth.jwt_secret" in check.stderr
    assert "short" not in check.stderr

    (tmp_path / "jwt.secret").write_text("password")
    check = billing("config", "check", cwd=tmp_path)
    assert check.returncode == 3
    assert "jwt.secret" in check.stderr
    serve = billing("serve", "--port", "1", cwd=tmp_path)
    assert serve.returncode == 3
    assert "jwt.secret" in serve.stderr


def test_config_init_writes_a_private_strong_secret_once(tmp_path: Path) -> None:
    first = billing("config", "init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "jwt.secret"
    secret = path.read_text()
    assert secret not in first.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings(auth={"jwt_secret": secret}).auth.jwt_secret is not None
    again = billing("config", "init", cwd=tmp_path)
    assert again.returncode == 1
    assert path.read_text() == secret
    forced = billing("config", "init", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert path.read_text() != secret
    assert billing("config", "check", cwd=tmp_path).returncode == 0


def test_a_secret_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    settings = load_settings(data_dir=tmp_path)
    first = settings.jwt_secret()  # written on first use
    assert settings.jwt_secret() == first == path.read_text().strip()
    # An operator replaces the file (a new inode) and later edits it in place: each is picked up.
    replacement = tmp_path / "jwt.secret.new"
    replacement.write_text(secrets.token_urlsafe(48))
    os.replace(replacement, path)
    assert settings.jwt_secret() == path.read_text().strip() != first
    edited = secrets.token_urlsafe(60)  # (a same-length edit within one clock tick would look unchanged)
    path.write_text(edited)
    assert settings.jwt_secret() == edited
    path.write_text("password")
    with pytest.raises(ConfigError):
        settings.jwt_secret()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://postgres@127.0.0.1:1/none", "sqlite+aiosqlite:////nonexistent-dir/billing.db"],
)
async def test_a_database_outage_answers_503_with_retry_after(url: str, tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from api.app import create_app

    settings = load_settings(
        database={"url": url}, data_dir=tmp_path, auth={"jwt_secret": secrets.token_urlsafe(48)}
    )
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as http:
        response = await http.post(
            "/v1/auth/login",
            json={"clientId": "cli_x", "timestamp": str(int(time.time())), "signature": "AAAA"},
        )
        health = await http.get("/health")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["errors"][0]["code"] == "7019"
    assert "retry" in body["message"]
    assert response.headers["retry-after"] == "5"
    assert health.status_code == 503


def _integrity_error_with_secret(db_url: str, secret: str) -> BaseException:
    import asyncio

    from billing.store.engine import create_engine, session_factory
    from billing.store.models import Client, SeenSignature

    async def go() -> BaseException:
        engine = create_engine(db_url, pool_size=1)
        try:
            async with session_factory(engine)() as session:
                from datetime import UTC, datetime

                now = datetime.now(UTC)
                session.add(Client(id="cli_logs", name="L", created_at=now))
                await session.commit()
                for _ in range(2):
                    session.add(SeenSignature(client_id="cli_logs", digest=secret, expires_at=now))
                    try:
                        await session.commit()
                    except Exception as exc:
                        return exc
        finally:
            await engine.dispose()
        raise AssertionError("no error")

    return asyncio.run(go())


def test_logged_database_errors_carry_no_parameters(db_url: str) -> None:
    from billing.logs import log_formatter

    secret = "tok_" + secrets.token_hex(12)
    exc = _integrity_error_with_secret(db_url, secret)
    # The engine hides bound parameters; PostgreSQL's DETAIL line still quotes the key, so the
    # log formatter reduces the whole message to the operation and table.
    assert "parameters hidden" in str(exc)
    record = logging.LogRecord(
        "billing.api", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__)
    )
    line = json.loads(log_formatter("json").format(record))
    assert secret not in line["exc"]
    assert "INSERT seen_signature" in line["exc"]
    assert "IntegrityError" in line["exc"]
    assert "Traceback" in line["exc"]
