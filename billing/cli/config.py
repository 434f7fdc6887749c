"""`billing config check`."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import SecretStr

from billing.cli.common import settings_or_exit
from billing.settings import _config_path


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    return value


def _mask_url(url: str) -> str:
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:****@{host}" if ":" in creds else url
    return url


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
def check() -> None:
    """Validate config/billing.toml (or BILLING_CONFIG) plus the environment; print the effective settings."""
    settings = settings_or_exit()
    effective = _masked(settings.model_dump(mode="python"))
    effective["database"]["url"] = _mask_url(settings.database.url)
    source = _config_path()
    click.echo(f"configuration OK (file: {source or 'none, defaults and environment only'})")
    click.echo(json.dumps(effective, indent=2, default=str))
