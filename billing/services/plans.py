"""Plans: what a subscription charges and when, validated against the currency, the calendar,
the installed processors and the configured grace policies.

Error fields are named as the merchant sent them (`plan.amount`, `plan.frequency.day`, ...).
A plan's currency, type and schedule (`frequency.frequency`, `frequency.day`) never change after
creation: every subscription's renewal dates are computed from them, so changing them would
move the dates of subscriptions already running. Everything else can be updated; the new amount
applies to new subscriptions and to future renewals of existing ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, cast

from billing.domain.calendar import Schedule, ScheduleKind, default_minimum_first_period, term_cycles
from billing.domain.errors import BillingError
from billing.domain.grace import PlanGraceFields, resolve_policy
from billing.domain.money import from_minor, normalize_currency, to_minor
from billing.services.grace_policies import configured_policy
from billing.settings import GraceSettings
from billing.store import plans as store
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Plan

PLAN_TYPES: Final = ("interval", "fixedDay", "anniversary")
IMMUTABLE: Final = ("currency", "type", "frequency", "day")

# Upper bounds keep nonsense out (a 40-year interval is a typo, not a plan).
MAX_INTERVAL_DAYS: Final = 3660
MAX_ANNIVERSARY_MONTHS: Final = 120
MAX_TRIAL_DAYS: Final = 730
MAX_DAILY_ATTEMPTS: Final = 100
MAX_INTERVAL_ATTEMPT_HOURS: Final = 24 * 31
MAX_GRACE_DAYS: Final = 366
MAX_NOTIFY_DAYS: Final = 365
MAX_CYCLES: Final = 10_000


@dataclass(frozen=True)
class PlanTerms:
    """A plan as the merchant describes it (Migo's fields, Python names)."""

    name: str
    amount: Decimal | int
    currency: str
    type: str
    frequency: int | None = None  # days (interval) or months (anniversary, default 1)
    day: int | None = None  # day of month (fixedDay)
    short_description: str | None = None
    long_description: str | None = None
    methods: Sequence[str] = ()  # processor slugs; empty = any installed processor
    installments: Sequence[int] = ()
    auto_renewal: bool = True
    cycles: int | None = None
    trial_days: int = 0
    daily_attempts: int | None = None
    interval_attempt: Decimal | int | None = None  # hours
    grace_days: int | None = None
    grace_policy: str | None = None
    days_notify_expiring_card: int | None = None
    minimum_first_period_days: Decimal | int | None = None


TERM_NAMES: Final = frozenset(f.name for f in fields(PlanTerms))


@dataclass(frozen=True)
class PlanRules:
    """What plan validation checks against: the installed processors and the grace config."""

    processors: frozenset[str]
    grace: GraceSettings

    @classmethod
    def of(cls, processors: Collection[str], grace: GraceSettings) -> PlanRules:
        return cls(frozenset(processors), grace)


def _bad(field: str, message: str) -> BillingError:
    return BillingError("CHECK_PARAMETERS", message=f"{field} {message}", field=field)


def _bounded(field: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise _bad(field, f"must be an integer from {low} to {high}.")


def _relabel(exc: BillingError, field: str) -> BillingError:
    return BillingError(exc.name, message=exc.message, field=field)


def _hours(value: Decimal | int | None) -> float | None:
    if value is None:
        return None
    hours = float(value)
    if not 0 < hours <= MAX_INTERVAL_ATTEMPT_HOURS:
        raise _bad(
            "plan.intervalAttempt", f"must be a number of hours > 0 and <= {MAX_INTERVAL_ATTEMPT_HOURS}."
        )
    return hours


def _minimum_first_period_hours(terms: PlanTerms, frequency: int | None) -> float | None:
    """The plan's minimum first period in hours: at most half its shortest period (None = that default)."""
    if terms.minimum_first_period_days is None:
        return None
    kind = cast(ScheduleKind, terms.type)
    longest = default_minimum_first_period(kind, frequency or 1) / timedelta(days=1)
    days = float(terms.minimum_first_period_days)
    if not 0 <= days <= longest:
        raise _bad(
            "plan.minimumFirstPeriodDays",
            f"must be a number of days from 0 to {longest:g} (half of this plan's shortest period).",
        )
    return round(days * 24, 6)


def minimum_first_period(plan: Plan) -> timedelta:
    """The least time a subscription's enrolment charge pays for (see `enrolment_anchor`)."""
    if plan.minimum_first_period_hours is not None:
        return timedelta(hours=plan.minimum_first_period_hours)
    every = 1 if plan.type == "fixedDay" else plan.frequency or 1
    return default_minimum_first_period(cast(ScheduleKind, plan.type), every)


def _schedule_fields(terms: PlanTerms) -> tuple[int | None, int | None]:
    """(frequency, day) as stored: fixedDay keeps only the day, the others only the frequency."""
    if terms.type == "automatic":
        raise _bad(
            "plan.type",
            "'automatic' is not supported: no installed processor schedules charges itself. "
            "Use interval, fixedDay or anniversary.",
        )
    if terms.type not in PLAN_TYPES:
        raise _bad("plan.type", f"must be one of {', '.join(PLAN_TYPES)}.")
    if terms.type == "fixedDay":
        # Migo sends frequency.frequency = 0 (or anything) with fixedDay plans: it is ignored.
        if terms.day is None:
            raise _bad("plan.frequency.day", "is required for fixedDay plans (a day of the month, 1 to 31).")
        _bounded("plan.frequency.day", terms.day, 1, 31)
        return None, terms.day
    if terms.type == "interval":
        if terms.frequency is None:
            raise _bad("plan.frequency.frequency", "is required for interval plans (days between charges).")
        _bounded("plan.frequency.frequency", terms.frequency, 1, MAX_INTERVAL_DAYS)
        return terms.frequency, None
    months = 1 if terms.frequency is None else terms.frequency
    _bounded("plan.frequency.frequency", months, 1, MAX_ANNIVERSARY_MONTHS)
    return months, None


def _methods(terms: PlanTerms, rules: PlanRules) -> list[str]:
    chosen: list[str] = []
    for slug in terms.methods:
        if slug not in rules.processors:
            installed = ", ".join(sorted(rules.processors)) or "none"
            raise BillingError(
                "PROCESSOR_NOT_FOUND",
                message=f"plan.methods names {slug!r}, which is not installed (installed: {installed}).",
                field="plan.methods",
            )
        if slug not in chosen:
            chosen.append(slug)
    return chosen


def _check_grace(terms: PlanTerms, rules: PlanRules) -> None:
    _bounded("plan.dailyAttempts", terms.daily_attempts, 1, MAX_DAILY_ATTEMPTS)
    _bounded("plan.graceDays", terms.grace_days, 0, MAX_GRACE_DAYS)
    named = None
    if terms.grace_policy is not None:
        configured = rules.grace.policies.get(terms.grace_policy)
        if configured is None:
            known = ", ".join(sorted(rules.grace.policies)) or "none configured"
            raise _bad("plan.gracePolicy", f"names no configured grace policy (known: {known}).")
        named = configured_policy(configured)
    hours = _hours(terms.interval_attempt)
    try:
        resolve_policy(
            PlanGraceFields(terms.daily_attempts, hours, terms.grace_days),
            named,
            configured_policy(rules.grace.default),
        )
    except BillingError as exc:
        raise _relabel(exc, f"plan.{exc.field}") from exc


def _validated(terms: PlanTerms, rules: PlanRules) -> dict[str, Any]:
    """Check every rule and return the Plan column values."""
    name = terms.name.strip()
    if not name:
        raise _bad("plan.name", "must not be empty.")
    currency = normalize_currency(terms.currency, field="plan.currency")
    amount_minor = to_minor(terms.amount, currency, field="plan.amount")
    frequency, day = _schedule_fields(terms)
    methods = _methods(terms, rules)
    for count in terms.installments:
        _bounded("plan.installments", count, 1, 120)
    try:
        cycles = term_cycles(terms.cycles, terms.auto_renewal)
    except BillingError as exc:
        raise _relabel(exc, "plan.cycles") from exc
    _bounded("plan.cycles", cycles, 1, MAX_CYCLES)
    _bounded("plan.trialDays", terms.trial_days, 0, MAX_TRIAL_DAYS)
    _bounded("plan.daysNotifyExpiringCard", terms.days_notify_expiring_card, 0, MAX_NOTIFY_DAYS)
    _check_grace(terms, rules)
    return {
        "name": name,
        "amount_minor": amount_minor,
        "currency": currency,
        "type": terms.type,
        "frequency": frequency,
        "frequency_day": day,
        "short_description": terms.short_description,
        "long_description": terms.long_description,
        "methods": methods,
        "installments": list(terms.installments),
        "auto_renewal": terms.auto_renewal,
        "cycles": cycles,
        "trial_days": terms.trial_days,
        "daily_attempts": terms.daily_attempts,
        "interval_attempt_hours": _hours(terms.interval_attempt),
        "grace_days": terms.grace_days,
        "grace_policy": terms.grace_policy,
        "days_notify_expiring_card": terms.days_notify_expiring_card,
        "minimum_first_period_hours": _minimum_first_period_hours(
            terms, None if terms.type == "fixedDay" else frequency
        ),
    }


def terms_of(plan: Plan) -> PlanTerms:
    """A stored plan as terms (amount back in major units), the base of a partial update."""
    return PlanTerms(
        name=plan.name,
        amount=from_minor(plan.amount_minor, plan.currency),
        currency=plan.currency,
        type=plan.type,
        frequency=plan.frequency,
        day=plan.frequency_day,
        short_description=plan.short_description,
        long_description=plan.long_description,
        methods=tuple(plan.methods),
        installments=tuple(plan.installments),
        auto_renewal=plan.auto_renewal,
        cycles=plan.cycles,
        trial_days=plan.trial_days,
        daily_attempts=plan.daily_attempts,
        interval_attempt=None
        if plan.interval_attempt_hours is None
        else Decimal(str(plan.interval_attempt_hours)),
        grace_days=plan.grace_days,
        grace_policy=plan.grace_policy,
        days_notify_expiring_card=plan.days_notify_expiring_card,
        minimum_first_period_days=None
        if plan.minimum_first_period_hours is None
        else Decimal(str(plan.minimum_first_period_hours / 24)),
    )


async def create_plan(
    session: Session, *, client_id: str, terms: PlanTerms, rules: PlanRules, now: datetime
) -> Plan:
    """Validate `terms` and store a new plan for the client."""
    values = _validated(terms, rules)
    plan = Plan(id=new_id("plan"), client_id=client_id, created_at=now, updated_at=now, **values)
    return await store.add_plan(session, plan)


async def get_plan(session: Session, *, client_id: str, plan_id: str, field: str = "planId") -> Plan:
    """The client's plan, or 7040 PLAN_NOT_FOUND naming `field` (also for another client's plan)."""
    plan = await store.get_plan(session, client_id, plan_id)
    if plan is None:
        raise BillingError("PLAN_NOT_FOUND", field=field)
    return plan


async def list_plans(session: Session, *, client_id: str) -> Sequence[Plan]:
    """The client's plans, newest first."""
    return await store.list_plans(session, client_id)


async def update_plan(
    session: Session,
    *,
    client_id: str,
    plan_id: str,
    changes: Mapping[str, Any],
    rules: PlanRules,
    now: datetime,
) -> Plan:
    """Apply `changes` (PlanTerms field names; only the fields the merchant sent) and revalidate.

    Sending an immutable field with its current value is fine (a full-object PUT); a different
    value is refused with 7000 naming the field.
    """
    unknown = set(changes) - TERM_NAMES
    if unknown:
        raise ValueError(f"not plan terms: {sorted(unknown)}")
    plan = await get_plan(session, client_id=client_id, plan_id=plan_id)
    current = terms_of(plan)
    merged = replace(current, **changes)
    values = _validated(merged, rules)
    stored = {
        "currency": plan.currency,
        "type": plan.type,
        "frequency": plan.frequency,
        "day": plan.frequency_day,
    }
    proposed = {
        "currency": values["currency"],
        "type": values["type"],
        "frequency": values["frequency"],
        "day": values["frequency_day"],
    }
    wire = {
        "currency": "plan.currency",
        "type": "plan.type",
        "frequency": "plan.frequency.frequency",
        "day": "plan.frequency.day",
    }
    for key in IMMUTABLE:
        if proposed[key] != stored[key]:
            raise _bad(
                wire[key],
                "cannot change once the plan exists (renewal dates depend on it); create a new plan.",
            )
    for column, value in values.items():
        setattr(plan, column, value)
    plan.updated_at = now
    await session.flush()
    return plan


def plan_schedule(plan: Plan, anchor: date, timezone: str) -> Schedule:
    """The renewal schedule of a subscription to `plan` anchored on local date `anchor` in `timezone`.

    fixedDay plans renew monthly on their day; anniversary plans every `frequency` months (default 1);
    interval plans every `frequency` days.
    """
    kind = cast(ScheduleKind, plan.type)
    if plan.type == "fixedDay":
        return Schedule(kind, 1, anchor, timezone, day=plan.frequency_day)
    if plan.type == "anniversary":
        return Schedule(kind, plan.frequency or 1, anchor, timezone)
    if plan.frequency is None:
        raise ValueError(f"interval plan {plan.id} has no frequency")
    return Schedule(kind, plan.frequency, anchor, timezone)
