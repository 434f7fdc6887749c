"""What every command needs: settings that fail clearly, and logging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from billing.logs import configure_logging
from billing.settings import ConfigError, Settings, load_settings

# Exit codes of every command (docs/operations.md): 0 done, 1 failed (the database refused, a
# catalog error, an unhealthy check), 2 usage (click's own), 3 configuration.
EXIT_FAILURE = 1
EXIT_CONFIG = 3


def json_option(help_text: str = "Print JSON instead of text.") -> Any:
    """`--json` (as `as_json`), the same on every command that prints results."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def settings_or_exit(**overrides: Any) -> Settings:
    """Load settings; on a bad configuration print the operator message and exit 3."""
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


def maybe_migrate(settings: Settings) -> None:
    """Migrate at start when `database.auto_migrate` says so (default: only SQLite)."""
    auto = settings.database.auto_migrate
    if auto is None:
        auto = settings.database.is_sqlite
    if auto:
        from billing.store.migrations import upgrade

        announce_new_database(settings)
        upgrade(settings.database.sync_url)


def announce_new_database(settings: Settings) -> None:
    """Say on stderr when a command is about to create a new, empty SQLite database: a command run
    with another configuration or data directory than the server's would otherwise work on an
    empty database without a word."""
    if not settings.database.is_sqlite:
        return
    path = settings.database.url.split(":///", 1)[-1]
    if path in ("", ":memory:") or Path(path).exists():
        return
    click.echo(
        f"note: no database at {path}; creating a new, empty one "
        "(set --config, BILLING_DATABASE__URL or BILLING_DATA_DIR to use an existing one)",
        err=True,
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def secret_or_exit(settings: Settings) -> None:
    """The access-token secret must be usable before the API serves (a weak one exits 3)."""
    try:
        settings.jwt_secret()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from exc
