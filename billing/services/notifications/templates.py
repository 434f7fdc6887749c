"""Rendering an e-mail from its stored context with Jinja2: subject, text and HTML, in the client's locale.

Templates are looked up in the operator's `notifications.templates_dir` first, then in the built-in
set (`billing/services/notifications/templates/`):

- `{locale}/{template}.txt`: the first line is the subject, the rest (after one blank line) the text body;
- `{locale}/{template}.html`: the HTML body, when present; otherwise `layout.html` renders the text
  body's paragraphs, HTML-escaped.

Templates see ready-made strings (`amount` in the currency's precision, dates in the client's time
zone, spelled in the locale) and the raw context as `ctx`; the filters `money` and `localdate` are
there for templates that want other fields. Values from merchants and cardholders are escaped in
HTML; the subject is reduced to one line.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, TemplateNotFound, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from billing.domain.notifications import LOCALES, amount_text, local_date, spoken_date

BUILT_IN = Path(__file__).with_name("templates")


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class TemplateMissing(LookupError):
    """Neither the operator's directory nor the built-in set has this template."""


class MailRenderer:
    """Renders notification templates; one per process (Jinja2 caches compiled templates)."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(templates_dir))] if templates_dir else []
        loaders.append(FileSystemLoader(str(BUILT_IN)))
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            keep_trailing_newline=True,
        )
        self.env.filters["money"] = amount_text
        self.env.filters["localdate"] = local_date

    def render(
        self, template: str, context: dict[str, Any], *, locale: str, timezone: str, client_name: str
    ) -> RenderedMail:
        locale = locale if locale in LOCALES else "es"
        values = _values(context, locale=locale, timezone=timezone, client_name=client_name)
        try:
            text_template = self.env.get_template(f"{locale}/{template}.txt")
        except TemplateNotFound as exc:
            raise TemplateMissing(f"{locale}/{template}.txt") from exc
        head, _, body = text_template.render(values).partition("\n")
        subject = " ".join(head.split())
        text = body.lstrip("\n").rstrip() + "\n"
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        html_values = {**values, "subject": subject, "paragraphs": paragraphs, "text": text}
        try:
            html_template = self.env.get_template(f"{locale}/{template}.html")
        except TemplateNotFound:
            html_template = self.env.get_template("layout.html")
        return RenderedMail(subject=subject, text=text, html=html_template.render(html_values))


def _values(context: dict[str, Any], *, locale: str, timezone: str, client_name: str) -> dict[str, Any]:
    def day(key: str) -> str:
        return local_date(context.get(key), timezone, locale)

    brand = context.get("brand") or ("card" if locale == "en" else "tarjeta")
    last4 = context.get("last4")
    if last4:
        card = f"{brand} ending in {last4}" if locale == "en" else f"{brand} terminada en {last4}"
    else:
        card = ""
    return {
        "ctx": context,
        "locale": locale,
        "timezone": timezone,
        "client": client_name,
        "user_id": context.get("userId", ""),
        "plan": context.get("planName", ""),
        "amount": amount_text(context.get("amountMinor"), context.get("currency")),
        "card": card,
        "last4": last4 or "",
        "attempt": context.get("attempt"),
        "occurred_date": day("occurredAt"),
        "next_retry_date": day("nextRetryAt"),
        "grace_end_date": day("graceEndsAt"),
        "next_renewal_date": day("nextRenewalDate"),
        "ended_date": day("endedAt"),
        "expires_date": _expiry_day(context, locale),
    }


def _expiry_day(context: dict[str, Any], locale: str) -> str:
    """The card's last valid day (the end of its expiry month), as printed on the card's own terms."""
    month, year = context.get("expMonth"), context.get("expYear")
    if not isinstance(month, int) or not isinstance(year, int):
        return ""
    return spoken_date(date(year, month, monthrange(year, month)[1]), locale)
