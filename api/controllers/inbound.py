"""`POST /webhooks/volcan`, `/webhooks/stripe`, `/webhooks/settlements`: notifications in.

Senders are processors and the settlement feed, not merchants: no token, no merchant signature,
no Idempotency-Key. Each route checks, in this order: the body size (413; 1 MB, settlement
reports 10 MB), the sender's HMAC signature (401 7070, the same answer whatever was wrong), the
body (400 naming the field). A redelivered notification (same source and event id) answers 200
and changes nothing. The routes are left out of the OpenAPI document: it describes the merchant
API, and these bodies are signed by their senders (docs/processors.md, docs/settlement.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from litestar import Request, post
from litestar.di import NamedDependency
from pydantic import BaseModel, ValidationError

from api.envelope import ok
from api.requests import decode_json_body
from api.schemas.inbound import (
    NoticeOut,
    SettlementOut,
    SettlementReportIn,
    SettlementRowOut,
    StripeEventIn,
    VolcanNotificationIn,
)
from api.schemas.wire import render
from billing.domain.errors import BillingError
from billing.domain.money import to_minor
from billing.services.inbound import (
    NoticeReceipt,
    SettlementReport,
    SettlementRow,
    inbound_identity,
    receive_processor_notice,
    receive_settlement_report,
)
from billing.services.inbound.notices import ProcessorNotice, stripe_notice, volcan_outcome
from billing.services.inbound.settlement import MAX_ROWS
from billing.services.inbound.signatures import (
    SIGNATURE_HEADER,
    STRIPE_HEADER,
    TIMESTAMP_HEADER,
    verify_notification,
    verify_stripe,
)
from billing.services.runtime import Runtime

M = TypeVar("M", bound=BaseModel)

NOTICE_MAX_BYTES = 1024 * 1024
SETTLEMENT_MAX_BYTES = 10 * 1024 * 1024


async def _body(request: Request[Any, Any, Any], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BillingError("PAYLOAD_TOO_LARGE", message=f"The body may hold at most {limit} bytes.")
    body = await request.body()
    if len(body) > limit:
        raise BillingError("PAYLOAD_TOO_LARGE", message=f"The body may hold at most {limit} bytes.")
    return body


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse(model: type[M], body: bytes) -> M:
    data = decode_json_body(body)
    if not isinstance(data, dict):
        raise BillingError("CHECK_PARAMETERS", message="The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field(tuple(first["loc"])) or None
        message = f"{field}: {first['msg']}" if field else str(first["msg"])
        raise BillingError("CHECK_PARAMETERS", message=message, field=field) from exc


def _notice_out(receipt: NoticeReceipt) -> dict[str, Any]:
    message = "Duplicate notification: already received" if receipt.duplicate else "Notification received"
    return render(
        NoticeOut(
            event_id=receipt.event_id,
            duplicate=receipt.duplicate,
            resolution=receipt.resolution,
            charge_id=receipt.charge_id,
            charge_state=receipt.charge_state,
        ),
        message,
    )


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


async def _signed_body(request: Request[Any, Any, Any], runtime: Runtime, limit: int, secret: Any) -> bytes:
    """The raw body, once its size and the sender's signature (engine scheme) are checked."""
    body = await _body(request, limit)
    verify_notification(
        secret=_secret(secret),
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        signature=request.headers.get(SIGNATURE_HEADER),
        body=body,
        now=runtime.clock.now(),
        tolerance_seconds=runtime.settings.inbound.tolerance_seconds,
    )
    return body


@post("/webhooks/volcan", operation_id="ReceiveVolcanNotification", status_code=200, include_in_schema=False)
async def receive_volcan(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> dict[str, Any]:
    """A processor notification in the sandbox processor's format: resolves an open charge."""
    body = await _signed_body(request, runtime, NOTICE_MAX_BYTES, runtime.settings.inbound.volcan_secret)
    data = _parse(VolcanNotificationIn, body)
    notice = ProcessorNotice(
        source="volcan",
        processor="sandbox",
        event_id=data.event_id,
        type=data.type,
        idempotency_key=data.idempotency_key,
        reference=data.processor_reference,
        amount_minor=to_minor(data.amount, data.currency),
        currency=data.currency,
        occurred_at=data.occurred_at,
        outcome=volcan_outcome(data.type, data.processor_reference, data.decline_code),
    )
    return _notice_out(await receive_processor_notice(runtime, notice, inbound_identity()))


@post("/webhooks/stripe", operation_id="ReceiveStripeEvent", status_code=200, include_in_schema=False)
async def receive_stripe(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> dict[str, Any]:
    """A Stripe event (`payment_intent.succeeded`, `payment_intent.payment_failed`,
    `charge.refunded`); other types are acknowledged and ignored."""
    body = await _body(request, NOTICE_MAX_BYTES)
    inbound = runtime.settings.inbound
    verify_stripe(
        secret=_secret(inbound.stripe_endpoint_secret),
        header=request.headers.get(STRIPE_HEADER),
        body=body,
        now=runtime.clock.now(),
        tolerance_seconds=inbound.tolerance_seconds,
    )
    envelope = _parse(StripeEventIn, body)
    created = datetime.fromtimestamp(envelope.created, UTC) if envelope.created is not None else None
    try:
        notice = stripe_notice(decode_json_body(body), created)
    except (ValueError, KeyError) as exc:
        raise BillingError(
            "CHECK_PARAMETERS", message="data.object is missing.", field="data.object"
        ) from exc
    if notice is None:
        return ok(
            {"eventId": envelope.id, "duplicate": False, "resolution": "ignored"}, "Event type not used"
        )
    return _notice_out(await receive_processor_notice(runtime, notice, inbound_identity()))


@post(
    "/webhooks/settlements", operation_id="ReceiveSettlementReport", status_code=200, include_in_schema=False
)
async def receive_settlements(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> dict[str, Any]:
    """A settlement report: `succeeded` charges become `settled`; other rows are answered per row."""
    body = await _signed_body(
        request, runtime, SETTLEMENT_MAX_BYTES, runtime.settings.inbound.settlements_secret
    )
    raw = decode_json_body(body)
    if isinstance(raw, dict) and isinstance(raw.get("charges"), list) and len(raw["charges"]) > MAX_ROWS:
        raise BillingError("SETTLEMENT_TOO_MANY_ROWS", field="charges")
    data = _parse(SettlementReportIn, body)
    rows = tuple(
        SettlementRow(
            index=index,
            charge_id=row.charge_id,
            processor_reference=row.processor_reference,
            amount_minor=to_minor(row.amount, row.currency, field=f"charges[{index}].amount"),
            currency=row.currency,
        )
        for index, row in enumerate(data.charges)
    )
    receipt = await receive_settlement_report(
        runtime, SettlementReport(data.event_id, data.settlement_date, rows)
    )
    out = SettlementOut(
        event_id=receipt.event_id,
        duplicate=receipt.duplicate,
        settled=receipt.settled,
        refused=receipt.refused,
        rows=[
            SettlementRowOut(
                index=r.index,
                status=r.status,
                charge_id=r.charge_id,
                processor_reference=r.processor_reference,
                code=r.code,
                message=r.message,
            )
            for r in receipt.rows
        ],
    )
    message = "Duplicate report: already received" if receipt.duplicate else "Settlement report applied"
    return render(out, message)


INBOUND_ROUTES = [receive_volcan, receive_stripe, receive_settlements]
