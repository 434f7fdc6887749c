"""The `billing` command.

Subcommands are imported when they run, not when `billing` starts: `billing --version` or
`billing sign` does not load the API, the store or the processors.
"""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute" of each subcommand, loaded on first use.
COMMANDS = {
    "serve": "billing.cli.serve:serve",
    "worker": "billing.cli.serve:worker",
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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="billing-engine")
def cli() -> None:
    """billing-engine: subscription billing with on-demand charging."""


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
