"""The notification pass: lease due e-mails, render and send them over SMTP, write the outcomes.

It runs as its own worker job, so an SMTP server that is slow, refusing or down only delays e-mails,
never billing. A round leases a batch (the lease outlives the SMTP timeout), sends at most
`notifications.concurrency` at a time, and writes every outcome of the round in one transaction.
A temporary failure (no connection, timeout, 4xx) is retried with exponential backoff and full
jitter until `give_up_after_hours` after the first attempt, then abandoned; a permanent 5xx answer
abandons at once. A worker that dies mid-round leaves leases that run out: those e-mails are sent
again (at least once, as for webhooks).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from billing.domain.notifications import header_safe, mailbox_ok, smtp_permanent
from billing.domain.webhooks import RetrySchedule
from billing.outbound.smtp_mail import MailResult, MailSender, SmtpConfig
from billing.services.notifications.templates import MailRenderer, RenderedMail, TemplateMissing
from billing.services.runtime import Runtime
from billing.settings import Settings
from billing.store import notifications as store
from billing.store.engine import transaction

log = logging.getLogger("billing.notifications")


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The SMTP connection the settings describe, or None when no host is configured."""
    smtp = settings.smtp
    if not smtp.host:
        return None
    return SmtpConfig(
        host=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        starttls=smtp.starttls,
        tls=smtp.tls,
        timeout=smtp.timeout_seconds,
    )


@dataclass(frozen=True, slots=True)
class Sender:
    """Who an e-mail comes from: the operator's address, the client's name and reply-to."""

    address: str
    name: str | None
    reply_to: str | None


def compose(mail: RenderedMail, *, to: str, sender: Sender, message_id: str, date: datetime) -> EmailMessage:
    """The MIME message: text with an HTML alternative. Header values are checked once more here, so a
    value with CR or LF can never split a header even if it got past the API."""
    for value in (to, sender.address, sender.name or "", sender.reply_to or "", mail.subject):
        if not header_safe(value):
            raise ValueError("a header value holds a control character")
    message = EmailMessage()
    message["From"] = formataddr((sender.name or "", sender.address)) if sender.name else sender.address
    message["To"] = to
    if sender.reply_to:
        message["Reply-To"] = sender.reply_to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{message_id}@{sender.address.rpartition('@')[2] or 'billing'}>"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


@dataclass
class MailStats:
    attempts: int = 0
    sent: int = 0
    retried: int = 0
    abandoned: int = 0


class Mailer:
    """One worker process's e-mail sender."""

    def __init__(
        self,
        runtime: Runtime,
        identity: str,
        sender: MailSender | None = None,
        renderer: MailRenderer | None = None,
    ) -> None:
        self.runtime = runtime
        self.identity = identity
        self.settings = runtime.settings.notifications
        config = smtp_config(runtime.settings)
        self.sender = sender or (MailSender(config) if config else None)
        self.renderer = renderer or MailRenderer(self.settings.templates_dir)
        self.schedule = RetrySchedule(
            base=timedelta(seconds=self.settings.backoff_base_seconds),
            max_delay=timedelta(seconds=self.settings.backoff_max_seconds),
            give_up_after=timedelta(hours=self.settings.give_up_after_hours),
        )
        self.stats = MailStats()

    async def round(self) -> int:
        """Send what is due now; returns how many e-mails were attempted (0 without SMTP)."""
        if self.sender is None:
            return 0
        now = self.runtime.clock.now()
        timeout = self.runtime.settings.smtp.timeout_seconds
        lease = timedelta(seconds=timeout * 2 * (1 + self.settings.batch_size // self.settings.concurrency))
        async with transaction(self.runtime.sessions) as session:
            due = await store.claim_due(
                session, owner=self.identity, now=now, lease_until=now + lease, limit=self.settings.batch_size
            )
        if not due:
            return 0
        gate = asyncio.Semaphore(self.settings.concurrency)
        # One recipient's e-mails go one after another, in the order their events happened (a
        # "payment received" never overtakes the "payment failed" before it); recipients in parallel.
        by_recipient: dict[str, list[store.DueNotification]] = {}
        for item in due:
            by_recipient.setdefault(item.to_address, []).append(item)

        async def send_in_order(items: list[store.DueNotification]) -> list[store.SendOutcome]:
            async with gate:
                return [await self._attempt(item) for item in items]

        batches = await asyncio.gather(*(send_in_order(items) for items in by_recipient.values()))
        outcomes = [outcome for batch in batches for outcome in batch]
        async with transaction(self.runtime.sessions) as session:
            await store.record_outcomes(session, self.identity, outcomes)
        return len(due)

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Rounds until nothing is due now (tests, `billing notifications send`)."""
        total = 0
        for _ in range(max_rounds):
            count = await self.round()
            total += count
            if count == 0:
                break
        return total

    async def _attempt(self, item: store.DueNotification) -> store.SendOutcome:
        assert self.sender is not None
        started = self.runtime.clock.now()
        first = item.first_attempt_at or started
        try:
            message = await self._message(item, started)
        except (TemplateMissing, ValueError) as exc:
            # Nothing a retry could change: the row says why it was not sent.
            log.warning("notification not sendable", extra={"notification_id": item.id, "reason": str(exc)})
            return self._outcome(item, "abandoned", started, first, None, f"not sendable: {exc}")
        result = await self.sender.send(message)
        at = self.runtime.clock.now()
        self.stats.attempts += 1
        if result.sent:
            self.stats.sent += 1
            return self._outcome(item, "sent", at, first, None, None)
        return self._failed(item, result, at, first)

    def _failed(
        self, item: store.DueNotification, result: MailResult, at: datetime, first: datetime
    ) -> store.SendOutcome:
        reason = f"{result.code} {result.error}" if result.code else (result.error or "not sent")
        if smtp_permanent(result.code):
            self.stats.abandoned += 1
            return self._outcome(item, "abandoned", at, first, None, reason)
        retry_at = self.schedule.next_attempt(retry=item.attempts + 1, now=at, first_seen=first)
        if retry_at is None:
            self.stats.abandoned += 1
            return self._outcome(item, "abandoned", at, first, None, reason)
        self.stats.retried += 1
        log.info("notification will be retried", extra={"notification_id": item.id, "reason": reason})
        return self._outcome(item, "pending", at, first, retry_at, reason)

    @staticmethod
    def _outcome(
        item: store.DueNotification,
        status: str,
        at: datetime,
        first: datetime,
        retry_at: datetime | None,
        error: str | None,
    ) -> store.SendOutcome:
        return store.SendOutcome(
            id=item.id,
            status=status,
            attempted_at=at,
            first_attempt_at=first,
            next_attempt_at=retry_at,
            error=error,
        )

    async def _message(self, item: store.DueNotification, now: datetime) -> EmailMessage:
        if not mailbox_ok(item.to_address):
            raise ValueError("the recipient is not a single plain e-mail address")
        async with self.runtime.sessions() as session:
            choices = await store.client_settings(session, item.client_id)
        mail = self.renderer.render(
            item.template,
            item.context,
            locale=choices.locale,
            timezone=item.timezone,
            client_name=item.client_name,
        )
        sender = Sender(
            address=self.runtime.settings.smtp.sender,
            name=choices.sender_name or self.runtime.settings.smtp.sender_name or item.client_name,
            reply_to=choices.reply_to,
        )
        return compose(mail, to=item.to_address, sender=sender, message_id=item.id, date=now)


PURGE_BATCH = 500


async def purge_pass(runtime: Runtime, identity: str) -> int:
    """Delete finished e-mails kept as long as events (`webhooks.event_retention_days`); housekeeping."""
    del identity
    before = runtime.clock.now() - timedelta(days=runtime.settings.webhooks.event_retention_days)
    total = 0
    while True:
        async with transaction(runtime.sessions) as session:
            removed = await store.purge_finished(session, before=before, limit=PURGE_BATCH)
        total += removed
        if removed < PURGE_BATCH:
            return total
