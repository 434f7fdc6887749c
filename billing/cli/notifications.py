"""`billing notifications`: preview an e-mail, or send what is due once (for cron users)."""

from __future__ import annotations

import asyncio

import click

from billing.cli.common import EXIT_CONFIG, echo_json, json_option, settings_or_exit
from billing.domain.clock import SystemClock
from billing.domain.errors import BillingError
from billing.domain.notifications import TEMPLATES
from billing.services.notifications import Mailer, run_expiring_cards
from billing.services.notifications.preview import Preview, preview
from billing.services.runtime import build_runtime


@click.group("notifications")
def notifications_group() -> None:
    """E-mail notifications to cardholders (docs/notifications.md)."""


@notifications_group.command("preview")
@click.argument("template", type=click.Choice(TEMPLATES))
@click.option("--subscription", "subscription_id", required=True, help="The subscription to render it for.")
@click.option("--html/--no-html", default=True, help="Print the HTML part too (default: yes).")
@json_option("Print {from, to, replyTo, subject, text, html} as JSON.")
def preview_command(template: str, subscription_id: str, html: bool, as_json: bool) -> None:
    """Print the e-mail TEMPLATE would send for a subscription (headers, text, HTML), without sending it."""
    settings = settings_or_exit()

    async def render() -> Preview:
        runtime = build_runtime(settings, SystemClock(), processors={})
        try:
            return await preview(runtime, template, subscription_id)
        finally:
            await runtime.aclose()

    try:
        shown = asyncio.run(render())
    except BillingError as exc:
        click.echo(f"error: {exc.code} {exc.detail}", err=True)
        raise SystemExit(1) from exc
    sender = shown.sender
    if as_json:
        echo_json(
            {
                "from": {"name": sender.name, "address": sender.address},
                "to": shown.to,
                "replyTo": sender.reply_to,
                "subject": shown.mail.subject,
                "text": shown.mail.text,
                "html": shown.mail.html if html else None,
            }
        )
        return
    click.echo(f"From: {sender.name} <{sender.address}>" if sender.name else f"From: {sender.address}")
    click.echo(f"To: {shown.to or '(no notificationEmail: nothing would be sent)'}")
    if sender.reply_to:
        click.echo(f"Reply-To: {sender.reply_to}")
    click.echo(f"Subject: {shown.mail.subject}")
    click.echo("")
    click.echo(shown.mail.text)
    if html:
        click.echo("--- HTML ---")
        click.echo(shown.mail.html)


@notifications_group.command("send")
@json_option()
def send_command(as_json: bool) -> None:
    """Queue due card-expiry notices, then send every e-mail that is due now, once."""
    settings = settings_or_exit()

    async def run() -> int:
        runtime = build_runtime(settings, SystemClock(), processors={})
        try:
            await run_expiring_cards(runtime, "cli")
            return await Mailer(runtime, "cli").run_until_idle()
        finally:
            await runtime.aclose()

    if not settings.smtp.host:
        click.echo("error: smtp.host is not set; nothing can be sent", err=True)
        raise SystemExit(EXIT_CONFIG)
    attempted = asyncio.run(run())
    if as_json:
        echo_json({"attempted": attempted})
        return
    click.echo(f"attempted: {attempted}")
