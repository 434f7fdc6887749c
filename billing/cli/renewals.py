"""`billing renewals run --once`: one renewal pass, for cron users and operators."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from billing.cli.common import echo_json, json_option, maybe_migrate, settings_or_exit
from billing.domain.clock import SystemClock
from billing.services.renewals import RenewalPass, RenewalSummary, due_now
from billing.services.runtime import build_runtime
from billing.worker import worker_identity


@click.group("renewals")
def renewals_group() -> None:
    """Scheduled renewals, grace retries and fixed-term expiries."""


def _report(summary: RenewalSummary, seconds: float) -> str:
    return (
        f"{summary.claimed} due handled in {seconds:.1f}s: {summary.renewed} renewed "
        f"({summary.recovered} recovered from grace), {summary.payment_failed} entered grace, "
        f"{summary.retries_failed} retries failed, {summary.inactive} inactive, {summary.expired} expired, "
        f"{summary.unknown} waiting for the processor"
    )


@renewals_group.command("run")
@click.option("--once", is_flag=True, hidden=True, help="One pass (the default; kept for older cron lines).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal).")
@json_option("Print the pass summary as JSON.")
def run(once: bool, progress: bool | None, as_json: bool) -> None:
    """Run one pass: renew, retry and expire everything due now, then exit (for cron;
    `billing worker` runs passes continuously).

    Safe next to running workers: subscriptions are claimed with leases, so each is handled
    by exactly one of them.
    """
    settings = settings_or_exit()
    maybe_migrate(settings)
    show = (sys.stderr.isatty() if progress is None else progress) and not as_json

    async def go() -> tuple[RenewalSummary, float]:
        runtime = build_runtime(settings, SystemClock())
        started = time.monotonic()
        try:
            if not show:
                summary = await RenewalPass(runtime, f"{worker_identity()}:cli").run()
                return summary, time.monotonic() - started
            total = await due_now(runtime)
            console = Console(stderr=True)
            columns = (TextColumn("Renewing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("renewals", total=total)
                advance: Callable[[int], None] = lambda n: bar.update(  # noqa: E731
                    task, advance=n, total=max(total, bar.tasks[0].completed + n)
                )
                summary = await RenewalPass(runtime, f"{worker_identity()}:cli", progress=advance).run()
            return summary, time.monotonic() - started
        finally:
            await runtime.aclose()

    summary, seconds = asyncio.run(go())
    if as_json:
        echo_json({**summary.as_dict(), "seconds": round(seconds, 3)})
        return
    click.echo(_report(summary, seconds))
