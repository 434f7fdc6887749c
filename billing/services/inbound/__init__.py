"""Inbound notifications: processor notices (volcan, Stripe) and settlement reports.

Entry points: `receive_processor_notice` (resolution.py), `receive_settlement_report` and
`settlement_mismatches` (settlement.py), `run_deferred_notifications` (the worker's pass);
signatures in signatures.py, wire formats in notices.py.
"""

from __future__ import annotations

import os
import socket

from billing.services.inbound.resolution import (
    NoticeReceipt,
    receive_processor_notice,
    run_deferred_notifications,
)
from billing.services.inbound.settlement import (
    SettlementReceipt,
    SettlementReport,
    SettlementRow,
    receive_settlement_report,
    settlement_mismatches,
)


def inbound_identity() -> str:
    """The lease owner name of an API process applying a notification."""
    return f"inbound:{socket.gethostname()}:{os.getpid()}"


__all__ = [
    "NoticeReceipt",
    "SettlementReceipt",
    "SettlementReport",
    "SettlementRow",
    "inbound_identity",
    "receive_processor_notice",
    "receive_settlement_report",
    "run_deferred_notifications",
    "settlement_mismatches",
]
