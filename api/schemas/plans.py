"""Wire shapes of the plan routes (Migo's names: planUid, autoRenewal, dailyAttempts, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from api.schemas.wire import Amount, Currency, Flag, Integer, Money, Number, OutModel, Text, WireModel
from billing.domain.errors import BillingError
from billing.domain.money import from_minor
from billing.services import plans as rules
from billing.services.plans import PlanTerms
from billing.store.models import Plan

PlanTypeOut = Literal["interval", "fixedDay", "anniversary"]


def _plan_type(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "must be a string")
    text = value.strip()
    if text == "automatic":
        raise PydanticCustomError(
            "plan_type",
            "'automatic' is not supported: no installed processor schedules charges itself. "
            "Use interval, fixedDay or anniversary.",
        )
    return text


PlanType = Annotated[
    PlanTypeOut,
    BeforeValidator(_plan_type),
    Field(description="interval | fixedDay | anniversary ('automatic' is refused: 7000)."),
]


class FrequencyIn(WireModel):
    """When the plan charges. `frequency`: days (interval) or months (anniversary, default 1);
    `day`: day of the month (fixedDay, 1..31). The other field of each type is ignored."""

    frequency: Integer | None = Field(
        None,
        ge=0,
        le=rules.MAX_INTERVAL_DAYS,
        description=f"Days between charges (interval, 1..{rules.MAX_INTERVAL_DAYS}) or months "
        f"(anniversary, 1..{rules.MAX_ANNIVERSARY_MONTHS}, default 1); ignored for fixedDay.",
        examples=[30],
    )
    day: Integer | None = Field(None, ge=1, le=31, description="Day of the month, 1..31 (fixedDay).")
    short_description: Text | None = Field(None, max_length=200)
    long_description: Text | None = Field(None, max_length=2000)


class PlanFields(WireModel):
    """Every plan field; on PUT all are optional and only those sent change."""

    # Sent or not, never null: a plan always has these four.
    name: Text = Field(None, max_length=200, description="Shown on cardholder statements.")  # type: ignore[assignment]
    amount: Money = None  # type: ignore[assignment]
    currency: Currency = None  # type: ignore[assignment]
    type: PlanType = None  # type: ignore[assignment]
    frequency: FrequencyIn | None = None
    methods: list[Text] | None = Field(None, description="Processor slugs allowed; empty = any installed.")
    installments: list[Annotated[Integer, Field(ge=1, le=120)]] | None = None
    auto_renewal: Flag | None = Field(None, description="false means a single paid cycle.")
    cycles: Integer | None = Field(
        None, ge=1, le=rules.MAX_CYCLES, description="Paid cycles of a fixed term; null = until cancelled."
    )
    trial_days: Integer | None = Field(
        None, ge=0, le=rules.MAX_TRIAL_DAYS, description="Days before the first charge (0 = charge at once)."
    )
    daily_attempts: Integer | None = Field(
        None,
        ge=1,
        le=rules.MAX_DAILY_ATTEMPTS,
        description="Charge attempts in a grace episode, the first included.",
    )
    interval_attempt: Number | None = Field(
        None,
        gt=0,
        le=rules.MAX_INTERVAL_ATTEMPT_HOURS,
        description="Hours between attempts (default from config).",
        examples=[24],
    )
    grace_days: Integer | None = Field(
        None, ge=0, le=rules.MAX_GRACE_DAYS, description="Days in grace after the first failure."
    )
    grace_policy: Text | None = Field(None, description="A named policy from config/billing.toml.")
    days_notify_expiring_card: Integer | None = Field(None, ge=0, le=rules.MAX_NOTIFY_DAYS)
    minimum_first_period_days: Number | None = Field(
        None,
        ge=0,
        description="The least time the enrolment charge pays for, in days: when the first renewal would "
        "come sooner, the first period runs on to the following one. At most half the plan's shortest "
        "period; null = that half (e.g. 0.5 for a daily plan, 14 for a monthly one).",
        examples=[0.5],
    )


class PlanIn(PlanFields):
    """A new plan: name, amount, currency and type are required."""

    name: Text = Field(
        max_length=200, description="Shown on cardholder statements.", examples=["Pro Monthly"]
    )
    amount: Money
    currency: Currency
    type: PlanType


class CreatePlanIn(WireModel):
    """`POST /v1/plans`."""

    plan: PlanIn
    client: Text | None = Field(None, description="Your client id; must match the token when sent.")


class UpdatePlanIn(WireModel):
    """`PUT /v1/plans`: the plan's id and the fields to change."""

    plan_id: Text | None = Field(None, description="The plan to update (alias: planUid, or plan.id).")
    plan_uid: Text | None = None
    plan: PlanFields
    client: Text | None = Field(None, description="Your client id; must match the token when sent.")


class FrequencyOut(OutModel):
    frequency: int | None
    day: int | None
    short_description: str | None
    long_description: str | None


class PlanOut(OutModel):
    """A plan as the API shows it; `amount` is a JSON number with the currency's precision."""

    id: str
    client_id: str
    name: str
    amount: Amount
    currency: str
    type: PlanTypeOut
    frequency: FrequencyOut
    methods: list[str]
    installments: list[int]
    auto_renewal: bool
    cycles: int | None
    trial_days: int
    daily_attempts: int | None
    interval_attempt: float | None = Field(description="Hours between attempts.")
    grace_days: int | None
    grace_policy: str | None
    days_notify_expiring_card: int | None
    minimum_first_period_days: float | None = Field(description="null: half the plan's shortest period.")
    status: Literal["active"] = Field(description="active (plans are never deleted)")
    created_at: datetime
    updated_at: datetime


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(
        id=plan.id,
        client_id=plan.client_id,
        name=plan.name,
        amount=from_minor(plan.amount_minor, plan.currency),
        currency=plan.currency,
        type=plan.type,
        frequency=FrequencyOut(
            frequency=plan.frequency,
            day=plan.frequency_day,
            short_description=plan.short_description,
            long_description=plan.long_description,
        ),
        methods=list(plan.methods),
        installments=list(plan.installments),
        auto_renewal=plan.auto_renewal,
        cycles=plan.cycles,
        trial_days=plan.trial_days,
        daily_attempts=plan.daily_attempts,
        interval_attempt=plan.interval_attempt_hours,
        grace_days=plan.grace_days,
        grace_policy=plan.grace_policy,
        days_notify_expiring_card=plan.days_notify_expiring_card,
        minimum_first_period_days=None
        if plan.minimum_first_period_hours is None
        else round(plan.minimum_first_period_hours / 24, 6),
        status=plan.status,
        created_at=plan.created_at,
        updated_at=plan.updated_at,
    )


def plan_terms(plan: PlanIn) -> PlanTerms:
    """A new plan's terms for the service."""
    changes = plan_changes(plan)
    return PlanTerms(**changes)


def plan_changes(plan: PlanFields) -> dict[str, Any]:
    """The PlanTerms fields the merchant actually sent (null included: it clears optional fields)."""
    sent = plan.model_fields_set
    out: dict[str, Any] = {}
    simple = {
        "name": "name",
        "amount": "amount",
        "currency": "currency",
        "type": "type",
        "auto_renewal": "auto_renewal",
        "cycles": "cycles",
        "trial_days": "trial_days",
        "daily_attempts": "daily_attempts",
        "interval_attempt": "interval_attempt",
        "grace_days": "grace_days",
        "grace_policy": "grace_policy",
        "days_notify_expiring_card": "days_notify_expiring_card",
        "minimum_first_period_days": "minimum_first_period_days",
    }
    for attr, term in simple.items():
        if attr in sent:
            out[term] = getattr(plan, attr)
    if "methods" in sent:
        out["methods"] = tuple(plan.methods or ())
    if "installments" in sent:
        out["installments"] = tuple(plan.installments or ())
    if "frequency" in sent and plan.frequency is not None:
        frequency = plan.frequency
        for attr, term in (
            ("frequency", "frequency"),
            ("day", "day"),
            ("short_description", "short_description"),
            ("long_description", "long_description"),
        ):
            if attr in frequency.model_fields_set:
                out[term] = getattr(frequency, attr)
    for term in ("name", "amount", "currency", "type"):
        if term in out and out[term] is None:
            raise BillingError(
                "CHECK_PARAMETERS", message=f"plan.{term} cannot be null.", field=f"plan.{term}"
            )
    # Required-with-default fields: null means "back to the default".
    for term, default in (("auto_renewal", True), ("trial_days", 0)):
        if term in out and out[term] is None:
            out[term] = default
    return out
