"""What every `billing` command shares: where the configuration and the data directory are found,
exit codes, `--json`, and arguments checked before anything is written."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from billing.cli import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without config/, a data home of its own, no configuration named."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("BILLING_CONFIG", "")  # restored afterwards, whatever --config sets
    for name in ("BILLING_DATA_DIR", "BILLING_DATABASE__URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("BILLING_AUTH__JWT_SECRET", secrets.token_urlsafe(48))
    return tmp_path


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_data_directory_holds_the_default_database_wherever_a_command_runs(home: Path) -> None:
    checked = _json(_invoke("config", "check", "--json"))
    assert checked["file"] is None
    data_dir = home / "xdg" / "billing-engine"
    assert checked["settings"]["data_dir"] == str(data_dir)
    assert checked["settings"]["database"]["url"] == f"sqlite+aiosqlite:///{data_dir / 'billing.db'}"


def test_a_command_about_to_create_an_empty_database_says_so_once(home: Path) -> None:
    first = _invoke("migrate", "--json")
    assert first.exit_code == 0, first.output
    assert "creating a new, empty one" in first.stderr
    assert (home / "xdg" / "billing-engine" / "billing.db").exists()
    again = _invoke("migrate", "--json")
    assert again.exit_code == 0, again.output
    assert "creating" not in again.stderr
    assert json.loads(again.stdout) == {"migratedTo": "head"}


def test_config_is_found_by_option_then_environment_then_working_directory(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = home / "elsewhere" / "config" / "billing.toml"
    local.parent.mkdir()
    local.write_text('log_level = "ERROR"\n')
    assert _json(_invoke("config", "check", "--json"))["file"] == "config/billing.toml"

    named = home / "named.toml"
    named.write_text('default_timezone = "Europe/Madrid"\n')
    monkeypatch.setenv("BILLING_CONFIG", str(named))
    assert _json(_invoke("config", "check", "--json"))["settings"]["default_timezone"] == "Europe/Madrid"

    option = home / "option.toml"
    option.write_text('default_timezone = "Asia/Tokyo"\n')
    chosen = _json(_invoke("--config", str(option), "config", "check", "--json"))
    assert chosen["file"] == str(option)
    assert chosen["settings"]["default_timezone"] == "Asia/Tokyo"


def test_exit_codes_tell_usage_from_configuration_from_failure(home: Path) -> None:
    unreadable = _invoke("policy", "show", "--plan", "pln_missing")  # no database there yet
    assert unreadable.exit_code == 1
    assert "the database could not be used (OperationalError)" in unreadable.stderr
    assert "Traceback" not in unreadable.output
    assert _invoke("migrate").exit_code == 0
    missing = _invoke("policy", "show", "--plan", "pln_missing")
    assert missing.exit_code == 1
    assert "7040" in missing.stderr
    assert _invoke("policy", "show").exit_code == 2  # usage: neither --plan nor --name
    assert _invoke("--config", str(home / "missing.toml"), "config", "check").exit_code == 2  # no such file
    bad = home / "bad.toml"
    bad.write_text("[database]\nurl = 'mysql://x'\n")
    refused = _invoke("--config", str(bad), "config", "check")
    assert refused.exit_code == 3
    assert "database.url" in refused.stderr


def test_clients_create_checks_the_key_file_before_creating_anything(home: Path) -> None:
    taken = home / "taken.pem"
    taken.write_text("keep me")
    refused = _invoke("clients", "create", "--name", "Acme", "--private-key-out", str(taken))
    assert refused.exit_code != 0
    assert "already exists" in refused.output
    assert taken.read_text() == "keep me"
    nowhere = _invoke("clients", "create", "--name", "Acme", "--private-key-out", str(home / "no" / "k.pem"))
    assert nowhere.exit_code != 0
    assert _json(_invoke("clients", "list", "--json")) == []

    made = _invoke(
        "clients", "create", "--name", "Acme", "--private-key-out", str(home / "acme.pem"), "--json"
    )
    assert made.exit_code == 0, made.output
    assert "BEGIN PRIVATE KEY" in (home / "acme.pem").read_text()
    assert [c["name"] for c in _json(_invoke("clients", "list", "--json"))] == ["Acme"]


def test_commands_that_print_results_print_json(home: Path) -> None:
    schedule = _json(_invoke("webhooks", "schedule", "--json"))
    assert schedule["retries"][0]["retry"] == 1
    policy = _json(_invoke("policy", "show", "--name", "default", "--from", "2026-01-01", "--json"))
    assert policy["attempts"] == 4
    assert policy["timeline"][0]["at"] == "2026-01-01T00:00:00+00:00"
    renewals = _json(_invoke("renewals", "run", "--json"))
    assert renewals["claimed"] == 0


def test_sign_and_version_load_neither_the_store_nor_the_api() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from click.testing import CliRunner; from billing.cli import cli; "
        "CliRunner().invoke(cli, ['--version']); CliRunner().invoke(cli, ['sign', '--help']); "
        "print(sorted(m for m in ('sqlalchemy', 'litestar', 'api.app', 'billing.store.models') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
