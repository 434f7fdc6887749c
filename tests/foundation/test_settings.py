"""Settings: file under environment, clear errors naming key, value and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from billing.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_has_a_named_policy() -> None:
    settings = load_settings()
    assert settings.database.url.startswith("sqlite+aiosqlite://")
    assert "patient" in settings.grace.policies
    assert settings.grace.default.attempts >= 1


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_GRACE__DEFAULT__ATTEMPTS", "7")
    monkeypatch.setenv("BILLING_WORKER__BATCH_SIZE", "33")
    settings = load_settings()
    assert settings.grace.default.attempts == 7
    assert settings.worker.batch_size == 33


def test_bad_value_names_key_value_and_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[grace.default]\nattempts = 0\n")
    monkeypatch.setenv("BILLING_CONFIG", str(bad))
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "grace.default.attempts" in message
    assert "= 0" in message
    assert "greater than or equal to 1" in message


def test_unknown_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text("[worker]\nintervall_seconds = 3\n")
    monkeypatch.setenv("BILLING_CONFIG", str(bad))
    with pytest.raises(ConfigError, match=r"worker\.intervall_seconds.*unknown key"):
        load_settings()


def test_missing_explicit_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BILLING_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not a readable file"):
        load_settings()


def test_broken_toml_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[grace\n")
    monkeypatch.setenv("BILLING_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_plain_postgres_url_means_psycopg3() -> None:
    settings = load_settings(database={"url": "postgresql://u@h/db"})
    assert settings.database.url == "postgresql+psycopg://u@h/db"


def test_config_check_masks_secrets(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
        "BILLING_PROCESSORS__STRIPE__API_KEY": "sk_test_supersecretvalue",
        "BILLING_DATABASE__URL": "postgresql+psycopg://app:dbpassword@db:5432/billing",
    }
    result = subprocess.run(
        [sys.executable, "-m", "billing.cli", "config", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "sk_test_supersecretvalue" not in result.stdout
    assert "dbpassword" not in result.stdout
    assert "**********" in result.stdout


def test_config_check_fails_on_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\nurl = "mysql://x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "billing.cli", "config", "check"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "BILLING_CONFIG": str(bad)},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 3
    assert "database.url" in result.stderr
    assert "mysql://x" in result.stderr
