"""`billing config check`."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import SecretStr

from billing.cli.common import EXIT_CONFIG, json_option, settings_or_exit
from billing.settings import ConfigError, config_path, write_new_secret


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
@json_option("Print {file, settings} as one JSON object (secrets masked).")
def check(as_json: bool) -> None:
    """Validate config/billing.toml (or BILLING_CONFIG) plus the environment; print the effective settings."""
    settings = settings_or_exit()
    if settings.auth.jwt_secret is None and settings.jwt_secret_path.exists():
        try:
            settings.jwt_secret()
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(EXIT_CONFIG) from exc
    effective = _masked(settings.model_dump(mode="python"))
    effective["database"]["url"] = _mask_url(settings.database.url)
    source = config_path()
    if as_json:
        click.echo(
            json.dumps(
                {"file": str(source) if source else None, "settings": effective}, indent=2, default=str
            )
        )
        return
    click.echo(f"configuration OK (file: {source or 'none, defaults and environment only'})")
    click.echo(json.dumps(effective, indent=2, default=str))


@config_group.command("init")
@click.option(
    "--force", is_flag=True, help="Replace an existing secret file (every issued token stops working)."
)
def init(force: bool) -> None:
    """Generate the access-token secret into data_dir/jwt.secret (mode 600); the secret is never printed.

    Several API processes must share it: copy the file, or set BILLING_AUTH__JWT_SECRET from it.
    """
    settings = settings_or_exit()
    if settings.auth.jwt_secret is not None:
        click.echo("auth.jwt_secret is set in the environment or the config file; nothing to generate.")
        return
    path = settings.jwt_secret_path
    if path.exists() and not force:
        click.echo(f"{path} already exists; keep it, or replace it with --force.", err=True)
        raise SystemExit(1)
    if path.exists():
        path.unlink()
    write_new_secret(path)
    click.echo(f"wrote a new access-token secret to {path} (mode 600)")
