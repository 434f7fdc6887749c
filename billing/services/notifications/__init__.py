"""E-mail notifications to cardholders (docs/notifications.md).

E-mails are queued with the events that cause them (`billing.store.notifications`), sent by the
`Mailer` (`sending.py`) in a worker job of their own, rendered from Jinja2 templates
(`templates.py`); `expiring_cards.py` is the daily card-expiry pass; `client_settings.py` holds a
client's choices and `history.py` what a merchant reads back; `preview.py` renders without sending.
"""

from billing.services.notifications.expiring_cards import run_expiring_cards
from billing.services.notifications.sending import Mailer

__all__ = ["Mailer", "run_expiring_cards"]
