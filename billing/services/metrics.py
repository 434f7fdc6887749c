"""Prometheus metrics: what the worker counts, and the /metrics exposition.

Two kinds of series (docs/operations.md):

- **Counters and histograms of a process** (passes run and their duration, renewals, retries,
  recoveries, inactivations, on-demand items, lease losses; the HTTP series of Litestar's
  Prometheus middleware). The worker records them after each pass (`record_pass`). With several
  processes on a host (`billing serve --workers N` runs the worker in the parent and N API
  processes), set `PROMETHEUS_MULTIPROC_DIR`: every process writes its values there and any API
  process's /metrics adds them up (prometheus_client's multiprocess mode).
- **Backlog gauges**, counted from the database at scrape time (`scrape`): due and overdue
  subscriptions, open charges and refunds by age, outboxes, workers seen. Whichever process is
  scraped answers the same figures, so they need no multiprocess support.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from billing.services.ondemand.drain import OnDemandSummary
from billing.services.operations import SEEN_WITHIN, Backlog, read_backlog
from billing.services.pass_control import PassSummary
from billing.services.renewals import RenewalSummary
from billing.services.runtime import Runtime
from billing.store import operations as store
from billing.store.engine import transaction

log = logging.getLogger("billing.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST

PASS_SECONDS = Histogram(
    "billing_pass_duration_seconds",
    "How long one worker pass (or delivery/e-mail round) took",
    ["pass"],
    buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
PASS_RUNS = Counter("billing_pass_runs", "Worker passes run, by outcome (ok, failed)", ["pass", "outcome"])
PASS_ITEMS = Counter(
    "billing_pass_items",
    "What the worker's passes did, by pass and the summary's count name",
    ["pass", "result"],
)
RENEWALS = Counter(
    "billing_renewals",
    "Renewal pass outcomes: renewed (charged), payment_failed (first failure, grace starts), "
    "retry_failed, recovered (a retry succeeded), inactive, expired",
    ["outcome"],
)
ONDEMAND_ITEMS = Counter("billing_ondemand_items", "On-demand batch items charged, by outcome", ["outcome"])
LEASE_LOSSES = Counter(
    "billing_lease_losses", "Rows whose lease ran out before the pass wrote the outcome", ["pass"]
)

_RENEWAL_OUTCOMES = {
    "renewed": "renewed",
    "payment_failed": "payment_failed",
    "retries_failed": "retry_failed",
    "recovered": "recovered",
    "inactive": "inactive",
    "expired": "expired",
}
_ONDEMAND_OUTCOMES = ("succeeded", "failed", "not_chargeable")
for _outcome in _RENEWAL_OUTCOMES.values():
    RENEWALS.labels(_outcome)  # present (at 0) before the first renewal, so rate() sees the first one
for _outcome in _ONDEMAND_OUTCOMES:
    ONDEMAND_ITEMS.labels(_outcome)

METRIC_NAMES = frozenset(
    {
        "billing_pass_duration_seconds",
        "billing_pass_runs_total",
        "billing_pass_items_total",
        "billing_renewals_total",
        "billing_ondemand_items_total",
        "billing_lease_losses_total",
        "billing_http_requests_total",
        "billing_http_request_duration_seconds",
        "billing_http_requests_in_progress",
        "billing_http_requests_error_total",
        "billing_database_up",
        "billing_subscriptions_due",
        "billing_subscriptions_overdue",
        "billing_charges_open",
        "billing_refunds_open",
        "billing_webhook_deliveries_pending",
        "billing_webhook_deliveries_due",
        "billing_emails_pending",
        "billing_emails_due",
        "billing_events_undispatched",
        "billing_ondemand_items_queued",
        "billing_inbound_notifications_deferred",
        "billing_workers_seen",
        "billing_worker_last_pass_age_seconds",
    }
)
"""Every series name /metrics exports (histograms by their base name): the dashboard is checked against it."""


def counts_of(result: Any) -> dict[str, int]:
    """A pass's result as counts: a `PassSummary`, a dict of counts, or a single count."""
    if isinstance(result, PassSummary):
        return result.as_dict()
    if isinstance(result, Mapping):
        return {str(k): int(v) for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)}
    if isinstance(result, int) and not isinstance(result, bool):
        return {"items": result}
    return {}


def record_pass(name: str, result: Any, seconds: float, *, failed: bool = False) -> dict[str, int]:
    """Count one pass the worker ran (its duration, outcome and what it did); returns its counts."""
    PASS_SECONDS.labels(name).observe(seconds)
    PASS_RUNS.labels(name, "failed" if failed else "ok").inc()
    counts = counts_of(result)
    for key, value in counts.items():
        if value > 0:
            PASS_ITEMS.labels(name, key).inc(value)
    if isinstance(result, RenewalSummary):
        for key, outcome in _RENEWAL_OUTCOMES.items():
            if value := getattr(result, key):
                RENEWALS.labels(outcome).inc(value)
    if isinstance(result, OnDemandSummary):
        for outcome in _ONDEMAND_OUTCOMES:
            if value := getattr(result, outcome):
                ONDEMAND_ITEMS.labels(outcome).inc(value)
    if lost := counts.get("lost_leases", 0):
        LEASE_LOSSES.labels(name).inc(lost)
    return counts


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus_client runs in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _ThisProcess:
    """The default registry's series (this process's counters, the process collector)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


@dataclass(eq=False)
class _Snapshot:
    """Gauges read from the database for this scrape."""

    backlog: Backlog | None
    workers: list[store.Heartbeat]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("billing_database_up", "1 when the database answered this scrape's queries")
        up.add_metric([], 1 if self.backlog is not None else 0)
        yield up
        backlog = self.backlog
        if backlog is None:
            return
        yield GaugeMetricFamily(
            "billing_subscriptions_due", "Active subscriptions due now", value=backlog.subscriptions_due
        )
        yield GaugeMetricFamily(
            "billing_subscriptions_overdue",
            f"Active subscriptions due for longer than {backlog.overdue_after_seconds:g}s (about one pass)",
            value=backlog.subscriptions_overdue,
        )
        yield _by_age(
            "billing_charges_open",
            "Charges pending or unknown, created at least older_than ago",
            backlog.charges_open,
        )
        yield _by_age(
            "billing_refunds_open",
            "Refunds pending or unknown, created at least older_than ago",
            backlog.refunds_open,
        )
        for name, key, text in (
            ("billing_webhook_deliveries_pending", "webhook_pending", "Webhook deliveries not yet delivered"),
            ("billing_webhook_deliveries_due", "webhook_due", "Webhook deliveries due now"),
            ("billing_emails_pending", "email_pending", "E-mails not yet sent"),
            ("billing_emails_due", "email_due", "E-mails due now"),
            ("billing_events_undispatched", "events_undispatched", "Events not yet turned into deliveries"),
            ("billing_ondemand_items_queued", "ondemand_queued", "On-demand batch items waiting"),
            (
                "billing_inbound_notifications_deferred",
                "inbound_deferred",
                "Processor notifications waiting for the pass that owns their charge",
            ),
        ):
            yield GaugeMetricFamily(name, text, value=backlog.outbox[key])
        yield GaugeMetricFamily(
            "billing_workers_seen",
            f"Workers whose heartbeat is at most {SEEN_WITHIN.total_seconds():g}s old",
            value=len(self.workers),
        )
        last = GaugeMetricFamily(
            "billing_worker_last_pass_age_seconds",
            "Seconds since each recently seen worker finished a tick",
            labels=["worker"],
        )
        for worker in self.workers:
            if worker.last_pass_at is not None:
                last.add_metric([worker.id], max(0.0, (backlog.at - worker.last_pass_at).total_seconds()))
        yield last


def _by_age(name: str, text: str, values: Mapping[str, Mapping[str, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=["state", "older_than"])
    for state, ages in values.items():
        for age, count in ages.items():
            family.add_metric([state, age], count)
    return family


async def scrape(runtime: Runtime) -> bytes:
    """The /metrics body: this process's (or, in multiprocess mode, this host's) counters and
    histograms, and the backlog gauges read from the database now."""
    try:
        backlog = await read_backlog(runtime)
        async with transaction(runtime.sessions) as session:
            workers = await store.workers_seen_since(session, runtime.clock.now() - SEEN_WITHIN)
    except Exception as exc:  # the process series are still worth serving
        log.warning("metrics: database not readable: %s", type(exc).__name__)
        backlog, workers = None, []
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ThisProcess())
    registry.register(_Snapshot(backlog, workers))
    return generate_latest(registry)
