"""`billing notifications preview TEMPLATE --subscription ID`: the e-mail that would be sent, with an
operator's template from notifications.templates_dir winning over the built-in one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from billing.cli import cli
from billing.domain.clock import SystemClock
from billing.services.runtime import build_runtime
from billing.settings import load_settings
from billing.store.engine import transaction
from tests.services.renewals import factory


@pytest.fixture
def cli_env(db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BILLING_DATABASE__URL", db_url)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("BILLING_SMTP__SENDER", "billing@shop.example")
    return db_url


def _subscription(url: str) -> str:
    async def go() -> str:
        runtime = build_runtime(load_settings(database={"url": url}), SystemClock(), processors={})
        enrolled = datetime.now(UTC) - timedelta(days=3)
        try:
            async with transaction(runtime.sessions) as session:
                client = await factory.make_client(session, now=enrolled, timezone="America/Guatemala")
                plan = await factory.make_plan(session, client, now=enrolled)
                method = await factory.make_method(session, client, "u1", now=enrolled)
                sub = await factory.enrol(session, client, plan, method, enrolled_at=enrolled)
                sub.notification_email = "ada@example.com"
                session.add(sub)
                return sub.id
        finally:
            await runtime.aclose()

    return asyncio.run(go())


def test_preview_prints_headers_text_and_html(cli_env: str) -> None:
    sub_id = _subscription(cli_env)
    result = CliRunner().invoke(cli, ["notifications", "preview", "subPayProblem", "--subscription", sub_id])
    assert result.exit_code == 0, result.output
    assert "To: ada@example.com" in result.output
    assert "<billing@shop.example>" in result.output
    assert "Subject: No pudimos cobrar tu suscripción" in result.output
    assert "--- HTML ---" in result.output
    assert "<p>" in result.output


def test_an_operator_template_wins(cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub_id = _subscription(cli_env)
    own = tmp_path / "templates"
    (own / "es").mkdir(parents=True)
    (own / "es" / "subPayProblem.txt").write_text(
        "Pago pendiente: {{ plan }}\n\nHola {{ user_id }}, no pudimos cobrar {{ amount }}.\n"
    )
    monkeypatch.setenv("BILLING_NOTIFICATIONS__TEMPLATES_DIR", str(own))
    result = CliRunner().invoke(cli, ["notifications", "preview", "subPayProblem", "--subscription", sub_id])
    assert result.exit_code == 0, result.output
    assert "Subject: Pago pendiente:" in result.output
    assert "Hola u1, no pudimos cobrar" in result.output
    other = CliRunner().invoke(cli, ["notifications", "preview", "cardExpiring", "--subscription", sub_id])
    assert "Subject: Tu tarjeta terminada en" in other.output  # not overridden: the built-in one


def test_unknown_subscription_or_template(cli_env: str) -> None:
    missing = CliRunner().invoke(
        cli, ["notifications", "preview", "subPayProblem", "--subscription", "sub_x"]
    )
    assert missing.exit_code == 1
    assert "7041" in missing.output
    bad = CliRunner().invoke(cli, ["notifications", "preview", "nope", "--subscription", "sub_x"])
    assert bad.exit_code == 2
