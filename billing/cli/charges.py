"""`billing charges upload FILE --client ID`: on-demand charges from a CSV, for operators;
`billing charges refund CHARGE_ID [--amount]`: give money back (see the `refund` command).

The file goes through the same intake as ``POST /v1/subscriptions/charges/upload-csv`` (same
columns, same 10 MB limit, same per-row validation). By default the command then charges the
upload's items itself, in this process, with the worker's on-demand pass restricted to this
batch, and follows it to the end with a progress bar. It is safe next to running workers:
items are claimed with leases, so each is charged once whoever gets to it. With
``--no-drain`` it leaves the charging to the running workers and only follows the progress.
"""

from __future__ import annotations

import asyncio
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from billing.cli.common import EXIT_FAILURE, echo_json, json_option, maybe_migrate, settings_or_exit
from billing.domain.clock import SystemClock
from billing.domain.errors import BillingError
from billing.domain.money import from_minor
from billing.services import ondemand, refunds
from billing.services.client_clock import load_client, merchant_clock
from billing.services.ondemand import OnDemandPass
from billing.services.runtime import Runtime, build_runtime
from billing.store.engine import transaction
from billing.store.models import Batch, Charge
from billing.worker import worker_identity

# How often the progress bar reads the batch totals, and how long to wait before looking
# again when nothing was claimable (items whose outcome is still unknown, or leased elsewhere).
_POLL_SECONDS = 0.25
_IDLE_SECONDS = 1.0
_DECIMAL = re.compile(r"\d+(\.\d+)?")


@click.group("charges")
def charges_group() -> None:
    """On-demand charges (JSON batches and CSV uploads) and refunds."""


async def _batch(runtime: Runtime, batch_id: str, client_id: str) -> Batch:
    async with runtime.sessions() as session:
        return await ondemand.find_batch(session, client_id, batch_id)


def _print_rejections(receipt: ondemand.BatchReceipt) -> None:
    for rejection in receipt.errors_sample:
        click.echo(f"  line {rejection.index}: {rejection.code} {rejection.message}", err=True)
    more = receipt.batch.rejected - len(receipt.errors_sample)
    if more > 0:
        click.echo(f"  ... and {more} more rejected rows (see the results)", err=True)


async def _follow(runtime: Runtime, batch: Batch, *, drain: bool) -> Batch:
    """Charge (or wait for) the batch's items, updating a progress bar until it completes."""
    identity = f"{worker_identity()}:cli"
    done = asyncio.Event()

    async def charge() -> None:
        while not done.is_set():
            claimed = (await OnDemandPass(runtime, identity, batch_id=batch.id).run()).claimed
            if claimed == 0:
                await asyncio.sleep(_IDLE_SECONDS)

    worker = asyncio.create_task(charge()) if drain else None
    current = batch
    try:
        with click.progressbar(length=batch.accepted, label="Charging", file=sys.stderr) as bar:
            shown = 0
            while True:
                current = await _batch(runtime, batch.id, batch.client_id)
                finished = current.succeeded + current.failed
                bar.update(finished - shown)
                shown = finished
                if current.status == "completed":
                    break
                if worker is not None and worker.done():
                    worker.result()  # re-raise what stopped the charging
                await asyncio.sleep(_POLL_SECONDS)
    finally:
        done.set()
        if worker is not None:
            await worker
    return current


async def _write_results(runtime: Runtime, batch: Batch, path: Path) -> None:
    async with runtime.sessions() as session:
        with path.open("w", encoding="utf-8", newline="") as out:
            first = True
            async for page in ondemand.outcome_pages(session, batch):
                out.write(ondemand.results_csv(page, header=first))
                first = False
            if first:
                out.write(ondemand.results_csv([], header=True))


@charges_group.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--client", "client_id", required=True, help="The client (merchant) id the charges belong to.")
@click.option(
    "--drain/--no-drain",
    default=True,
    help="Charge the items in this process (default), or leave them to running workers.",
)
@click.option(
    "--wait/--no-wait", default=True, help="Follow processing to the end (default) or exit at once."
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the per-row results CSV here once processing completes.",
)
@json_option("Print the batch, its totals and its rejected rows as one JSON object at the end.")
def upload(
    file: Path, client_id: str, drain: bool, wait: bool, results_path: Path | None, as_json: bool
) -> None:
    """Queue the charges of a CSV (subscriptionId,amount[,metadata]; at most 10 MB) and follow them."""
    settings = settings_or_exit()
    maybe_migrate(settings)
    if file.stat().st_size > ondemand.CSV_MAX_BYTES:
        click.echo(
            f"error: {file} is larger than the 10 MB ({ondemand.CSV_MAX_BYTES} bytes) limit.", err=True
        )
        raise SystemExit(1)
    content = file.read_bytes()
    rejections: list[Any] = []

    async def go() -> Batch:
        runtime = build_runtime(settings, SystemClock())
        try:
            async with transaction(runtime.sessions) as session:
                await load_client(session, client_id)
                receipt = await ondemand.receive_csv(
                    session,
                    runtime.clock,
                    client_id=client_id,
                    content=content,
                    filename=file.name,
                    max_rows=settings.ondemand.csv_max_rows,
                )
            batch = receipt.batch
            rejections.extend(receipt.errors_sample)
            if not as_json:
                click.echo(
                    f"Batch {batch.id} (tracking id {batch.tracking_id}): {batch.total} rows, "
                    f"{batch.accepted} accepted, {batch.rejected} rejected."
                )
                _print_rejections(receipt)
            if wait and batch.status != "completed":
                batch = await _follow(runtime, batch, drain=drain)
            if results_path is not None and batch.status == "completed":
                await _write_results(runtime, batch, results_path)
            return batch
        finally:
            await runtime.aclose()

    try:
        batch = asyncio.run(go())
    except BillingError as exc:
        click.echo(f"error: {exc.code} {exc.detail}", err=True)
        raise SystemExit(1) from exc
    except DBAPIError as exc:
        click.echo(
            f"error: the database refused the operation ({type(exc.orig).__name__}); "
            "is it migrated (`billing migrate`)?",
            err=True,
        )
        raise SystemExit(1) from exc
    totals: dict[str, Any] = ondemand.totals_of(batch)
    if as_json:
        echo_json(
            {
                "batchId": batch.id,
                "trackingId": batch.tracking_id,
                "status": batch.status,
                "totals": totals,
                "rejectedSample": [
                    {"line": r.index, "code": r.code, "message": r.message} for r in rejections
                ],
                "results": str(results_path)
                if results_path is not None and batch.status == "completed"
                else None,
            }
        )
        return
    click.echo(
        f"{batch.status}: {totals['succeeded']} succeeded, {totals['failed']} failed, "
        f"{totals['rejected']} rejected, {totals['inProgress']} in progress (of {totals['received']} rows)."
    )
    if results_path is not None and batch.status == "completed":
        click.echo(f"results written to {results_path}")
    elif batch.status != "completed":
        click.echo(
            f"follow it with GET /v1/subscriptions/charges/upload-csv/{batch.tracking_id} "
            "or the results with ?format=csv"
        )


@charges_group.command("refund")
@click.argument("charge_id")
@click.option("--amount", help="How much to give back, e.g. 10.50 (default: all that remains refundable).")
@click.option("--reason", help="A note kept with the refund and in its events.")
@json_option("Print the refund and the charge's refund totals as JSON.")
def refund(charge_id: str, amount: str | None, reason: str | None, as_json: bool) -> None:
    """Refund a succeeded or settled charge (a void before settlement when it is the whole amount).

    Same rules as POST /v1/charges/{chargeId}/refund: never more than the charge in total, the
    pending refund is recorded before the processor is called, and a lost answer is left
    `unknown` for the worker to reconcile by its key.
    """
    settings = settings_or_exit()

    async def go() -> refunds.RefundResult:
        runtime = build_runtime(settings, SystemClock())
        try:
            async with runtime.sessions() as session:
                charge = await session.get(Charge, charge_id)
                if charge is None:
                    raise BillingError("CHARGE_NOT_FOUND", field="chargeId")
                client = await load_client(session, charge.client_id)
            return await refunds.refund_charge(
                runtime,
                client_id=charge.client_id,
                charge_id=charge_id,
                amount=Decimal(amount) if amount is not None else None,
                reason=reason,
                clock=merchant_clock(runtime.clock, client.clock_offset_seconds),
            )
        finally:
            await runtime.aclose()

    try:
        if amount is not None and not _DECIMAL.fullmatch(amount.strip()):
            raise BillingError("INVALID_FORMAT_AMOUNT", field="amount")
        result = asyncio.run(go())
    except BillingError as exc:
        click.echo(f"error: {exc.code} {exc.detail}", err=True)
        raise SystemExit(1) from exc
    made, view = result.refund, result.view
    if as_json:
        echo_json(
            {
                "refundId": made.id,
                "chargeId": view.charge.id,
                "method": made.method,
                "state": made.state,
                "amount": str(from_minor(made.amount_minor, made.currency)),
                "currency": made.currency,
                "failureCode": made.failure_code,
                "failureMessage": made.failure_message,
                "refundedAmount": str(from_minor(view.refunded_minor, made.currency)),
                "refundableAmount": str(from_minor(view.refundable_minor, made.currency)),
            }
        )
    else:
        _print_refund(made, view)
    if made.state != "succeeded":
        # failed, or unknown: the worker reconciles it by its key (see the output's state)
        raise SystemExit(EXIT_FAILURE)


def _print_refund(made: Any, view: Any) -> None:
    click.echo(
        f"Refund {made.id} ({made.method}) of {from_minor(made.amount_minor, made.currency)} {made.currency}: "
        f"{made.state}{f' ({made.failure_code} {made.failure_message})' if made.state == 'failed' else ''}."
    )
    click.echo(
        f"Charge {view.charge.id}: {from_minor(view.refunded_minor, made.currency)} refunded, "
        f"{from_minor(view.refundable_minor, made.currency)} still refundable."
    )
