"""What every command needs: settings that fail clearly, and logging."""

from __future__ import annotations

from typing import Any

import click

from billing.logs import configure_logging
from billing.settings import ConfigError, Settings, load_settings


def settings_or_exit(**overrides: Any) -> Settings:
    """Load settings; on a bad configuration print the operator message and exit 2."""
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


def secret_or_exit(settings: Settings) -> None:
    """The access-token secret must be usable before the API serves (a weak one exits 2)."""
    try:
        settings.jwt_secret()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
