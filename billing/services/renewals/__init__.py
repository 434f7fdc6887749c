"""Renewals: the renewal pass (`renewal_pass.py`: due subscriptions charged, grace retries) and the
reconciliation pass for renewal charges whose pass died before recording an outcome
(`reconciliation.py`)."""

from billing.services.renewals.reconciliation import run_reconciliation
from billing.services.renewals.renewal_pass import RenewalPass, RenewalSummary, due_now, run_renewals

__all__ = ["RenewalPass", "RenewalSummary", "due_now", "run_reconciliation", "run_renewals"]
