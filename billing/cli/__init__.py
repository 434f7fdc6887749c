"""The `billing` command."""

from __future__ import annotations

import sys

import click

from billing.cli.charges import charges_group
from billing.cli.clients import clients_group
from billing.cli.config import config_group
from billing.cli.database import migrate
from billing.cli.policy import policy_group
from billing.cli.renewals import renewals_group
from billing.cli.sandbox import sandbox_group
from billing.cli.serve import serve, worker
from billing.cli.settlements import settlements_group
from billing.cli.signing import sign
from billing.cli.webhooks import webhooks_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="billing-engine")
def cli() -> None:
    """billing-engine: subscription billing with on-demand charging."""


cli.add_command(serve)
cli.add_command(worker)
cli.add_command(migrate)
cli.add_command(config_group)
cli.add_command(clients_group)
cli.add_command(charges_group)
cli.add_command(sign)
cli.add_command(renewals_group)
cli.add_command(policy_group)
cli.add_command(sandbox_group)
cli.add_command(webhooks_group)
cli.add_command(settlements_group)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))
