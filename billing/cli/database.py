"""`billing migrate`."""

from __future__ import annotations

import click

from billing.cli.common import settings_or_exit
from billing.store.migrations import upgrade


@click.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
def migrate(revision: str) -> None:
    """Migrate the configured database (BILLING_DATABASE__URL) to the latest schema."""
    settings = settings_or_exit()
    upgrade(settings.database.sync_url, revision)
    click.echo(f"database migrated to {revision}")
