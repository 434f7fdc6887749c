"""Prometheus metrics: what the worker counts, and the /metrics exposition.

Three kinds of series (docs/operations.md):

- **The workers' counters and pass-duration histograms** (passes run, renewals, retries,
  recoveries, inactivations, on-demand items, lease losses). A worker tallies them in memory
  (`record_pass`, called by billing.worker after each pass) and writes the tally into its
  heartbeat row on every tick; /metrics exports every recently seen worker's tally with a
  `worker` label. So any API process answers for every worker, on any host or container, and
  `billing worker` needs no port of its own.
- **Backlog gauges**, counted from the database at scrape time: due and overdue subscriptions,
  open charges and refunds by age, outboxes, workers seen. Any process answers the same figures.
- **HTTP series of the API process** (Litestar's Prometheus middleware: requests, errors, latency
  by route template and status), in prometheus_client's default registry. With several API
  processes on one host (`billing serve --workers N`) set `PROMETHEUS_MULTIPROC_DIR`, and any
  process's /metrics adds up every process's (multiprocess mode); API processes on several
  hosts are scraped one by one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
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

EXPORT_WITHIN = timedelta(minutes=15)
"""The counters of workers seen this recently are exported (a stopped worker's series end then)."""

BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
"""Upper bounds of the pass-duration histogram, in seconds (+Inf added)."""

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "billing_pass_runs_total": ("Worker passes run, by outcome (ok, failed)", ("pass", "outcome")),
    "billing_pass_items_total": (
        "What the worker's passes did, by pass and the count's name in the pass summary",
        ("pass", "result"),
    ),
    "billing_renewals_total": (
        "Renewal pass outcomes: renewed (charged), payment_failed (first failure, grace starts), "
        "retry_failed, recovered (a grace retry succeeded), inactive, expired",
        ("outcome",),
    ),
    "billing_ondemand_items_total": ("On-demand batch items charged, by outcome", ("outcome",)),
    "billing_lease_losses_total": ("Rows whose lease ran out before the pass wrote the outcome", ("pass",)),
}
DURATION_HISTOGRAM = "billing_pass_duration_seconds"

_RENEWAL_OUTCOMES = {
    "renewed": "renewed",
    "payment_failed": "payment_failed",
    "retries_failed": "retry_failed",
    "recovered": "recovered",
    "inactive": "inactive",
    "expired": "expired",
}
_ONDEMAND_OUTCOMES = ("succeeded", "failed", "not_chargeable")

METRIC_NAMES = frozenset(
    {
        *COUNTERS,
        DURATION_HISTOGRAM,
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


@dataclass
class Tally:
    """One worker's counters and pass-duration histograms since it started (kept in memory,
    written into its heartbeat row)."""

    started_at: datetime | None = None
    counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    durations: dict[str, list[int]] = field(default_factory=dict)  # pass -> count per bucket (+Inf last)
    sums: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Present (at 0) before the first renewal, so rate() sees the first one.
        for outcome in _RENEWAL_OUTCOMES.values():
            self.inc("billing_renewals_total", 0, outcome)
        for outcome in _ONDEMAND_OUTCOMES:
            self.inc("billing_ondemand_items_total", 0, outcome)
        for pass_name in ("renewals", "ondemand"):  # the passes that hold leases while charging
            self.inc("billing_lease_losses_total", 0, pass_name)

    def inc(self, name: str, amount: float, *labels: str) -> None:
        series = self.counters.setdefault(name, {})
        series[labels] = series.get(labels, 0) + amount

    def observe(self, pass_name: str, seconds: float) -> None:
        buckets = self.durations.setdefault(pass_name, [0] * (len(BUCKETS) + 1))
        index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
        buckets[index] += 1
        self.sums[pass_name] = self.sums.get(pass_name, 0.0) + seconds

    def as_json(self) -> dict[str, Any]:
        """What the heartbeat row stores (`counters` column)."""
        return {
            "counters": {
                name: [[list(labels), value] for labels, value in series.items()]
                for name, series in self.counters.items()
            },
            "durations": {
                name: {"buckets": counts, "sum": self.sums[name]} for name, counts in self.durations.items()
            },
        }


_TALLIES: dict[str, Tally] = {}


def tally_of(identity: str) -> Tally:
    """The tally of the worker running under `identity` in this process."""
    return _TALLIES.setdefault(identity, Tally())


def counts_of(result: Any) -> dict[str, int]:
    """A pass's result as counts: a `PassSummary`, a dict of counts, or a single count."""
    if isinstance(result, PassSummary):
        return result.as_dict()
    if isinstance(result, Mapping):
        return {str(k): int(v) for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)}
    if isinstance(result, int) and not isinstance(result, bool):
        return {"items": result}
    return {}


def record_pass(
    identity: str, name: str, result: Any, seconds: float, *, failed: bool = False
) -> dict[str, int]:
    """Count one pass the worker `identity` ran (its duration, outcome and what it did); returns its counts."""
    tally = tally_of(identity)
    tally.observe(name, seconds)
    tally.inc("billing_pass_runs_total", 1, name, "failed" if failed else "ok")
    counts = counts_of(result)
    for key, value in counts.items():
        if value > 0:
            tally.inc("billing_pass_items_total", value, name, key)
    if isinstance(result, RenewalSummary):
        for key, outcome in _RENEWAL_OUTCOMES.items():
            tally.inc("billing_renewals_total", getattr(result, key), outcome)
    if isinstance(result, OnDemandSummary):
        for outcome in _ONDEMAND_OUTCOMES:
            tally.inc("billing_ondemand_items_total", getattr(result, outcome), outcome)
    if lost := counts.get("lost_leases", 0):
        tally.inc("billing_lease_losses_total", lost, name)
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
        recent = [worker for worker in self.workers if worker.seen_at >= backlog.at - SEEN_WITHIN]
        yield GaugeMetricFamily(
            "billing_workers_seen",
            f"Workers whose heartbeat is at most {SEEN_WITHIN.total_seconds():g}s old",
            value=len(recent),
        )
        last = GaugeMetricFamily(
            "billing_worker_last_pass_age_seconds",
            f"Seconds since each worker seen in the last {EXPORT_WITHIN.total_seconds():g}s finished a tick",
            labels=["worker"],
        )
        for worker in self.workers:
            if worker.last_pass_at is not None:
                last.add_metric([worker.id], max(0.0, (backlog.at - worker.last_pass_at).total_seconds()))
        yield last
        yield from worker_series(self.workers)


def worker_series(workers: list[store.Heartbeat]) -> Iterator[Metric]:
    """The workers' counters and pass-duration histograms, from their heartbeat rows, by `worker`."""
    for name, (text, labels) in COUNTERS.items():
        family = CounterMetricFamily(name, text, labels=["worker", *labels])
        for worker in workers:
            for values, value in ((worker.counters or {}).get("counters") or {}).get(name, []):
                family.add_metric([worker.id, *values], value)
        yield family
    histogram = HistogramMetricFamily(
        DURATION_HISTOGRAM,
        "How long one worker pass (or delivery/e-mail round) took",
        labels=["worker", "pass"],
    )
    for worker in workers:
        for pass_name, data in ((worker.counters or {}).get("durations") or {}).items():
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], data["buckets"], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric([worker.id, pass_name], buckets, data["sum"])
    yield histogram


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
            workers = await store.workers_seen_since(session, runtime.clock.now() - EXPORT_WITHIN)
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
