"""A client's e-mail choices: which notifications it turns off (many merchants send their own), the
locale, a failed-retry e-mail for every attempt, the sender name and the reply-to address."""

from __future__ import annotations

from dataclasses import replace

from billing.domain.errors import BillingError
from billing.domain.notifications import LOCALES, TEMPLATES, header_safe, mailbox_ok
from billing.services.runtime import Runtime
from billing.store import notifications as store
from billing.store.engine import transaction
from billing.store.notifications import ClientNotificationSettings

UNSET = object()


async def read_settings(runtime: Runtime, client_id: str) -> ClientNotificationSettings:
    async with runtime.sessions() as session:
        return await store.client_settings(session, client_id)


async def update_settings(
    runtime: Runtime,
    client_id: str,
    *,
    disabled: list[str] | None = None,
    locale: str | None = None,
    each_attempt: bool | None = None,
    sender_name: object = UNSET,
    reply_to: object = UNSET,
) -> ClientNotificationSettings:
    """Change the fields given (None or UNSET: unchanged; sender_name/reply_to None clears them).

    Errors: 7000 naming the field (an unknown notification type or locale, a sender name with a
    control character, a reply-to that is not one plain e-mail address).
    """
    if disabled is not None:
        unknown = [name for name in disabled if name not in TEMPLATES]
        if unknown:
            raise BillingError(
                "CHECK_PARAMETERS",
                message=f"disabled: '{unknown[0]}' is not a notification. Known: {', '.join(TEMPLATES)}.",
                field="disabled",
            )
    if locale is not None and locale not in LOCALES:
        raise BillingError(
            "CHECK_PARAMETERS", message=f"locale must be one of {', '.join(LOCALES)}.", field="locale"
        )
    if isinstance(sender_name, str) and not header_safe(sender_name):
        raise BillingError(
            "CHECK_PARAMETERS", message="senderName must be one line of text.", field="senderName"
        )
    if isinstance(reply_to, str) and not mailbox_ok(reply_to):
        raise BillingError(
            "CHECK_PARAMETERS",
            message="replyTo must be one e-mail address (name@example.com).",
            field="replyTo",
        )
    async with transaction(runtime.sessions) as session:
        current = await store.client_settings(session, client_id)
        changed = replace(
            current,
            disabled=tuple(dict.fromkeys(disabled)) if disabled is not None else current.disabled,
            locale=locale or current.locale,
            each_attempt=current.each_attempt if each_attempt is None else each_attempt,
            sender_name=current.sender_name if sender_name is UNSET else sender_name,  # type: ignore[arg-type]
            reply_to=current.reply_to if reply_to is UNSET else reply_to,  # type: ignore[arg-type]
        )
        await store.save_client_settings(session, changed, runtime.clock.now())
    return await read_settings(runtime, client_id)
