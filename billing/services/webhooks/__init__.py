"""Events out: webhook endpoints, signed at-least-once delivery, the event and delivery logs.

Entry points: `endpoints` (register, change, rotate), `delivery.Deliverer` (what a worker runs),
`history` (event log, delivery log, retry, replay).
"""

from billing.services.webhooks import delivery, endpoints, history

__all__ = ["delivery", "endpoints", "history"]
