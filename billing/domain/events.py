"""Event payloads: one pydantic model per event type, the contract webhooks will publish.

Every writer of the event outbox builds one of these models; `EventPayload.to_json()` is what
is stored. Field names are Migo's camelCase on the wire. Amounts are decimal strings with the
currency's precision ("29.90") plus `amountMinor`, because a float would lose the exact amount.
Instants are ISO 8601 with their UTC offset. Optional context fields (declared with a default)
appear only when the writer sets them; fields without a default are always present, possibly
`null`. `docs/events.md` is generated from these models (`events_markdown`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel


def _iso(instant: datetime) -> str:
    return instant.isoformat()


Instant = Annotated[datetime, PlainSerializer(_iso, return_type=str)]

EventType = Literal[
    "subscription.created",
    "subscription.cancelled",
    "subscription.renewed",
    "subscription.expired",
    "subscription.payment_failed",
    "subscription.recovered",
    "subscription.inactive",
    "subscription.periods_skipped",
    "charge.succeeded",
    "charge.failed",
    "charge.unknown",
    "charge.refunded",
    "charge.refund_failed",
    "charge.settled",
    "charge.disputed_outcome",
    "batch.completed",
    "payment_method.expiring",
]


class EventPayload(BaseModel):
    """What one event carries. Subclasses name their `type`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    type: ClassVar[EventType]

    def to_json(self) -> dict[str, Any]:
        """The stored payload: camelCase keys, optional context only when set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class SubscriptionSnapshot(EventPayload):
    """A subscription as it is after the change the event reports."""

    subscription_id: str
    client_id: str
    user_id: str
    plan_uid: str
    trx_uid: str | None
    currency: str
    status: str
    renewal_status: str
    current_period_start: Instant | None
    current_period_end: Instant | None
    trial_ends_at: Instant | None
    cycles_paid: int
    default_payment_method_id: str | None
    cancelled_at: Instant | None


class SubscriptionCreated(SubscriptionSnapshot):
    """A subscription was created by verify-card (paid first charge, or a trial)."""

    type: ClassVar[EventType] = "subscription.created"


class SubscriptionCancelled(SubscriptionSnapshot):
    """The merchant cancelled a subscription."""

    type: ClassVar[EventType] = "subscription.cancelled"


class GraceEpisode(BaseModel):
    """The grace episode a subscription is in: when it started, retries made, what comes next."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    started_at: Instant
    attempts_made: int
    next_retry_at: Instant | None
    window_ends_at: Instant | None
    policy: dict[str, Any]


class RenewalSnapshot(SubscriptionSnapshot):
    """A subscription after a renewal step, with what the step charged (when it charged)."""

    next_attempt_at: Instant | None
    ended_at: Instant | None
    grace: GraceEpisode | None
    attempt: int | None = None
    period_start: Instant | None = None
    charge_id: str | None = None
    decline_code: str | None = None
    hard_decline: bool | None = None


class SubscriptionRenewed(RenewalSnapshot):
    """A renewal charge succeeded and a new period started."""

    type: ClassVar[EventType] = "subscription.renewed"


class SubscriptionExpired(RenewalSnapshot):
    """A plan with a fixed number of cycles reached the end of its term (`lastCycleUnpaid` when the
    last cycle's charge was still failing at the term's end)."""

    type: ClassVar[EventType] = "subscription.expired"
    last_cycle_unpaid: bool | None = None


class SubscriptionPaymentFailed(RenewalSnapshot):
    """A renewal charge failed and the subscription entered its grace episode."""

    type: ClassVar[EventType] = "subscription.payment_failed"


class SubscriptionRecovered(RenewalSnapshot):
    """A retry during grace succeeded."""

    type: ClassVar[EventType] = "subscription.recovered"


class SubscriptionInactive(RenewalSnapshot):
    """The grace episode ended without a successful charge."""

    type: ClassVar[EventType] = "subscription.inactive"


class ChargeSnapshot(EventPayload):
    """A charge that reached a final state (or stayed `unknown` after its look-ups)."""

    charge_id: str
    subscription_id: str | None
    kind: str
    state: str
    amount: str
    amount_minor: int
    currency: str
    payment_method_id: str | None
    processor: str
    attempt: int | None
    period_start: Instant | None
    decline_code: str | None
    decline_message: str | None
    processor_reference: str | None
    method_index: int | None = None
    hard_decline: bool | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    trx_uid: str | None = None
    user_id: str | None = None
    expected_settlement_date: date | None = None


class ChargeSucceeded(ChargeSnapshot):
    """A charge succeeded."""

    type: ClassVar[EventType] = "charge.succeeded"


class ChargeFailed(ChargeSnapshot):
    """A charge was declined or refused."""

    type: ClassVar[EventType] = "charge.failed"


class ChargeUnknown(ChargeSnapshot):
    """The processor did not tell the outcome yet; a later pass settles it."""

    type: ClassVar[EventType] = "charge.unknown"


class RefundSnapshot(EventPayload):
    """A refund (or void) of a charge that reached its final state; the subscription is unchanged."""

    refund_id: str
    charge_id: str
    subscription_id: str | None
    state: str
    method: str
    amount: str
    amount_minor: int
    currency: str
    reason: str | None
    processor: str
    processor_reference: str | None
    failure_code: str | None
    failure_message: str | None
    charge_amount_minor: int
    refunded_amount_minor: int


class ChargeRefunded(RefundSnapshot):
    """A refund or void succeeded: the money goes back to the cardholder."""

    type: ClassVar[EventType] = "charge.refunded"


class ChargeRefundFailed(RefundSnapshot):
    """The processor refused a refund; nothing was given back and the amount is refundable again."""

    type: ClassVar[EventType] = "charge.refund_failed"


class ChargeSettled(ChargeSnapshot):
    """A settlement report says the succeeded charge reached the merchant's account."""

    type: ClassVar[EventType] = "charge.settled"

    settlement_date: date
    settlement_report_id: str


class ChargeDisputedOutcome(EventPayload):
    """A processor notification contradicts the charge's final state; nothing was changed.

    The charge keeps its state: an operator compares it with the processor's records.
    """

    type: ClassVar[EventType] = "charge.disputed_outcome"

    charge_id: str
    subscription_id: str | None
    state: str
    notified_state: str
    source: str
    notification_id: str
    processor_reference: str | None
    decline_code: str | None


class BatchCompleted(EventPayload):
    """Every item of an on-demand batch reached a final state."""

    type: ClassVar[EventType] = "batch.completed"

    batch_id: str
    tracking_id: str | None
    source: str
    totals: dict[str, int]
    completed_at: Instant


class SubscriptionPeriodsSkipped(RenewalSnapshot):
    """A late payment recovered a period whose successor was already over: the overdue periods were
    skipped, not charged, and the subscription resumes at `nextAttemptAt` (setting `grace.catch_up`)."""

    type: ClassVar[EventType] = "subscription.periods_skipped"
    skipped_periods: int
    skipped_from: Instant


class PaymentMethodExpiring(EventPayload):
    """A subscription's default card expires within its plan's `daysNotifyExpiringCard` days (once per card)."""

    type: ClassVar[EventType] = "payment_method.expiring"

    payment_method_id: str
    subscription_id: str
    user_id: str
    brand: str | None
    last4: str | None
    exp_month: int
    exp_year: int
    expires_at: Instant


RENEWAL_EVENTS: dict[str, type[RenewalSnapshot]] = {
    model.type: model
    for model in (
        SubscriptionRenewed,
        SubscriptionExpired,
        SubscriptionPaymentFailed,
        SubscriptionRecovered,
        SubscriptionInactive,
        SubscriptionPeriodsSkipped,
    )
}
CHARGE_EVENTS: dict[str, type[ChargeSnapshot]] = {
    model.type: model for model in (ChargeSucceeded, ChargeFailed, ChargeUnknown)
}
EVENT_MODELS: tuple[type[EventPayload], ...] = (
    SubscriptionCreated,
    SubscriptionCancelled,
    *RENEWAL_EVENTS.values(),
    *CHARGE_EVENTS.values(),
    ChargeRefunded,
    ChargeRefundFailed,
    ChargeSettled,
    ChargeDisputedOutcome,
    BatchCompleted,
    PaymentMethodExpiring,
)


def events_markdown() -> str:
    """The event types and their fields as the Markdown published in docs/events.md."""
    lines: list[str] = []
    for model in EVENT_MODELS:
        schema = model.model_json_schema(mode="serialization", by_alias=True)
        lines += [f"### `{model.type}`", "", (model.__doc__ or "").strip(), ""]
        lines += ["| field | type | present |", "|---|---|---|"]
        for name, info in model.model_fields.items():
            alias = info.alias or name
            kind = _kind(schema["properties"][alias], "datetime" in str(info.annotation))
            lines.append(f"| `{alias}` | {kind} | {'always' if info.is_required() else 'when set'} |")
        lines.append("")
    return "\n".join(lines)


def _kind(prop: dict[str, Any], instant: bool) -> str:
    options = prop.get("anyOf", [prop])
    names = []
    for option in options:
        if "$ref" in option:
            names.append("object (" + option["$ref"].rsplit("/", 1)[-1] + ")")
        elif option.get("type") == "null":
            continue
        elif instant:
            names.append("string (ISO 8601 instant)")
        else:
            names.append(str(option.get("type", "any")))
    text = " or ".join(names) or "any"
    return text + " or null" if any(o.get("type") == "null" for o in options) else text
