"""Sending one e-mail over SMTP with aiosmtplib: STARTTLS or implicit TLS, AUTH, bounded by a timeout.

The answer is reduced to what the notification pass needs: sent, or the SMTP code (when the server
gave one) and a short reason. The password goes to the server only; it is never part of a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    tls: bool
    timeout: float


@dataclass(frozen=True, slots=True)
class MailResult:
    sent: bool
    code: int | None = None
    error: str | None = None


class MailSender:
    """One SMTP session per message (mail volume is small; a pooled session would go stale)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, message: EmailMessage) -> MailResult:
        config = self.config
        try:
            errors, _ = await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.tls,
                start_tls=config.starttls if not config.tls else False,
                timeout=config.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            return MailResult(False, max(codes) if codes else None, self._reason(exc))
        except aiosmtplib.SMTPAuthenticationError as exc:
            # A wrong password is the operator's to fix, not the message's fault: keep retrying.
            return MailResult(False, None, f"authentication refused ({exc.code})")
        except aiosmtplib.SMTPResponseException as exc:
            return MailResult(False, exc.code, self._reason(exc))
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            return MailResult(False, None, self._reason(exc) or exc.__class__.__name__)
        if errors:
            refusal = next(iter(errors.values()))
            return MailResult(False, refusal.code, refusal.message[:300])
        return MailResult(True)

    def _reason(self, exc: BaseException) -> str:
        text = f"{exc.__class__.__name__}: {exc}"[:300]
        secret = self.config.password
        return text.replace(secret, "***") if secret else text
