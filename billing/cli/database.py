"""`billing migrate`."""

from __future__ import annotations

import click

from billing.cli.common import announce_new_database, echo_json, json_option, settings_or_exit
from billing.store.migrations import upgrade


@click.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@json_option()
def migrate(revision: str, as_json: bool) -> None:
    """Migrate the configured database (BILLING_DATABASE__URL) to the latest schema."""
    settings = settings_or_exit()
    announce_new_database(settings)
    upgrade(settings.database.sync_url, revision)
    if as_json:
        echo_json({"migratedTo": revision})
        return
    click.echo(f"database migrated to {revision}")
