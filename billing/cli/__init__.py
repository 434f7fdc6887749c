"""The `billing` command.

Subcommands are imported when they run, not when `billing` starts: `billing --version` or
`billing sign` does not load the API, the store or the processors.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

# name -> "module:attribute" of each subcommand, loaded on first use.
COMMANDS = {
    "serve": "billing.cli.serve:serve",
    "worker": "billing.cli.worker:worker",
    "migrate": "billing.cli.database:migrate",
    "config": "billing.cli.config:config_group",
    "clients": "billing.cli.clients:clients_group",
    "charges": "billing.cli.charges:charges_group",
    "sign": "billing.cli.signing:sign",
    "renewals": "billing.cli.renewals:renewals_group",
    "policy": "billing.cli.policy:policy_group",
    "sandbox": "billing.cli.sandbox:sandbox_group",
    "settlements": "billing.cli.settlements:settlements_group",
    "webhooks": "billing.cli.webhooks:webhooks_group",
    "notifications": "billing.cli.notifications:notifications_group",
    "status": "billing.cli.status:status",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (or listed by --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not type(exc).__module__.startswith("sqlalchemy"):
                raise
            # A database that cannot be opened or refuses a statement: the driver's class names the
            # cause; its text may quote SQL or values, so it is not printed.
            cause = type(getattr(exc, "orig", None) or exc).__name__
            click.echo(
                f"error: the database could not be used ({cause}); check database.url and that it is "
                "reachable and migrated (`billing migrate`, `billing config check`)",
                err=True,
            )
            raise SystemExit(1) from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="billing-engine")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (else BILLING_CONFIG, ./config/billing.toml, /etc/billing/billing.toml).",
)
def cli(config_file: Path | None) -> None:
    """billing-engine: subscription billing with on-demand charging.

    Exit codes: 0 done, 1 failed, 2 usage error, 3 configuration error.
    """
    if config_file is not None:
        # Every command, and the API processes `serve --workers N` starts, read it from there.
        os.environ["BILLING_CONFIG"] = str(config_file.absolute())


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
