"""`billing settlements`: settlement report rows that were not applied, for the operator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from billing.cli.common import settings_or_exit
from billing.domain.clock import SystemClock
from billing.services.inbound import settlement_mismatches
from billing.services.runtime import build_runtime


@click.group("settlements")
def settlements_group() -> None:
    """Settlement reports received on /webhooks/settlements (docs/settlement.md)."""


@settlements_group.command("mismatches")
@click.option("--limit", default=100, show_default=True, help="Reports to read, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of text lines.")
def mismatches(limit: int, as_json: bool) -> None:
    """Rows of settlement reports that were not applied: unknown charge, amount or currency
    mismatch, or a charge that was not `succeeded`. Nothing was changed for them."""
    settings = settings_or_exit()

    async def go() -> list[dict[str, Any]]:
        runtime = build_runtime(settings, SystemClock(), processors={})
        try:
            return await settlement_mismatches(runtime, limit=limit)
        finally:
            await runtime.aclose()

    rows = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no settlement rows left unapplied")
        return
    for row in rows:
        named = row.get("chargeId") or row.get("processorReference") or "-"
        click.echo(
            f"{row['eventId']}  {row['settlementDate']}  row {row['index']}  {named}  {row['code']}  {row['message']}"
        )
