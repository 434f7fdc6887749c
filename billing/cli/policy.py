"""`billing policy show`: the grace policy a plan's episodes follow, as a dated timeline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from billing.cli.common import echo_json, json_option, settings_or_exit
from billing.domain.clock import SystemClock
from billing.domain.errors import BillingError
from billing.domain.grace import GracePolicy, timeline
from billing.services.grace_policies import PlanPolicy, configured_policy, policy_of_plan
from billing.services.runtime import build_runtime


@click.group("policy")
def policy_group() -> None:
    """Grace policies (config/billing.toml [grace.*] and the plans' own retry fields)."""


def _describe(policy: GracePolicy) -> str:
    grace = "none" if policy.grace_days is None else f"{policy.grace_days} days after the first failure"
    return (
        f"attempts: {policy.attempts} (the failed renewal included), every {policy.interval_hours:g} h; "
        f"grace window: {grace}; stop on hard decline: {'yes' if policy.stop_on_hard_decline else 'no'}"
    )


def _policy_view(policy: GracePolicy) -> dict[str, object]:
    return {
        "attempts": policy.attempts,
        "intervalHours": policy.interval_hours,
        "graceDays": policy.grace_days,
        "stopOnHardDecline": policy.stop_on_hard_decline,
    }


def _timeline_view(policy: GracePolicy, first_failure: datetime, tz: str) -> list[dict[str, str]]:
    zone = ZoneInfo(tz)
    return [
        {
            "at": step.at.astimezone(UTC).isoformat(),
            "local": step.at.astimezone(zone).isoformat(),
            "step": step.label,
        }
        for step in timeline(policy, first_failure, tz)
    ]


def _print_timeline(policy: GracePolicy, first_failure: datetime, tz: str) -> None:
    zone = ZoneInfo(tz)
    click.echo(
        f"Timeline of an episode whose first failure is at {first_failure.astimezone(zone):%Y-%m-%d %H:%M} ({tz}):"
    )
    for step in timeline(policy, first_failure, tz):
        local = step.at.astimezone(zone)
        click.echo(
            f"  {local:%Y-%m-%d %H:%M %z}  ({step.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)  {step.label}"
        )


@policy_group.command("show")
@click.option("--plan", "plan_id", help="A plan id: its fields, then its named policy, then the default.")
@click.option(
    "--name", "policy_name", help="A configured policy instead: `default` or a [grace.policies.NAME]."
)
@click.option(
    "--from",
    "first_failure",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"]),
    help="When the first renewal fails (default: now); a date alone means its start in UTC.",
)
@json_option("Print the policy and its timeline as JSON.")
def show(plan_id: str | None, policy_name: str | None, first_failure: datetime | None, as_json: bool) -> None:
    """Print the policy in force and the dated timeline an episode would follow if every attempt failed."""
    if (plan_id is None) == (policy_name is None):
        raise click.UsageError("name exactly one of --plan ID and --name NAME")
    settings = settings_or_exit()
    start = first_failure or datetime.now(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if policy_name is not None:
        if policy_name == "default":
            policy = configured_policy(settings.grace.default)
        elif policy_name in settings.grace.policies:
            policy = configured_policy(settings.grace.policies[policy_name])
        else:
            known = ", ".join(["default", *sorted(settings.grace.policies)])
            raise click.UsageError(f"no grace policy {policy_name!r} in the configuration (known: {known})")
        if as_json:
            echo_json(
                {
                    "policy": policy_name,
                    **_policy_view(policy),
                    "timeline": _timeline_view(policy, start, "UTC"),
                }
            )
            return
        click.echo(f"Policy {policy_name}: {_describe(policy)}")
        _print_timeline(policy, start, "UTC")
        return

    async def load() -> PlanPolicy:
        runtime = build_runtime(settings, SystemClock(), processors={})
        try:
            return await policy_of_plan(runtime, plan_id or "")
        finally:
            await runtime.aclose()

    try:
        found = asyncio.run(load())
    except BillingError as exc:
        click.echo(f"error: {exc.code} {exc.detail}", err=True)
        raise SystemExit(1) from exc
    resolved = found.resolved
    if as_json:
        echo_json(
            {
                "planId": found.plan.id,
                "clientId": found.plan.client_id,
                "timezone": found.timezone,
                "base": resolved.base,
                "planOverrides": list(resolved.plan_overrides),
                **_policy_view(resolved.policy),
                "timeline": _timeline_view(resolved.policy, start, found.timezone),
            }
        )
        return
    click.echo(
        f"Plan {found.plan.id} ({found.plan.name}), client {found.plan.client_id}, time zone {found.timezone}"
    )
    overrides = (
        f", overridden by the plan's {', '.join(resolved.plan_overrides)}" if resolved.plan_overrides else ""
    )
    click.echo(f"Policy ([grace.{resolved.base}]{overrides}): {_describe(resolved.policy)}")
    _print_timeline(resolved.policy, start, found.timezone)
