"""GET /metrics: Prometheus text through HTTP, backlog gauges read from the database, the worker's
counters moving when a renewal pass runs, the optional bearer token, multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from billing.processors.sandbox import SandboxProcessor
from billing.services.metrics import METRIC_NAMES, record_pass, tally_of
from billing.services.operations import record_heartbeat
from billing.services.renewals import RenewalSummary
from billing.store.engine import transaction
from billing.store.ids import new_id
from billing.store.models import Charge, Subscription
from billing.worker import run_pass_once
from tests.conftest import test_settings
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series not exported yet counts as 0 (counters start there)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: Any, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
async def metrics_app(settings: Any, clock: Any) -> AsyncIterator[tuple[Any, Any]]:
    app = create_app(settings, clock=clock, processors={"sandbox": SandboxProcessor()})
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as http:
        yield app, http


async def _due_subscriptions(runtime: Any, count: int) -> list[Subscription]:
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        plan = await factory.make_plan(session, client, now=ENROLLED)
        subs = []
        for n in range(count):
            method = await factory.make_method(session, client, f"u{n}", now=ENROLLED)
            subs.append(await factory.enrol(session, client, plan, method, enrolled_at=ENROLLED))
        return subs


async def _open_charge(runtime: Any, client_id: str, state: str, created: datetime) -> None:
    async with transaction(runtime.sessions) as session:
        session.add(
            Charge(
                id=new_id("charge"),
                client_id=client_id,
                kind="on_demand",
                amount_minor=100,
                currency="USD",
                processor="sandbox",
                idempotency_key="metrics-" + new_id("charge"),
                state=state,
                created_at=created,
                updated_at=created,
            )
        )


async def test_renewal_pass_moves_the_gauges_and_counters(metrics_app: tuple[Any, Any], clock: Any) -> None:
    app, http = metrics_app
    runtime = app.state.runtime
    subs = await _due_subscriptions(runtime, 3)
    due_at = subs[0].next_attempt_at
    assert due_at is not None
    # An hour past due: due and overdue (more than one pass late).
    clock.set(due_at + timedelta(hours=1))
    await _open_charge(runtime, subs[0].client_id, "unknown", clock.now() - timedelta(hours=2))
    assert (await http.get("/health")).status_code == 200

    before = await scrape(http)
    assert value(before, "billing_database_up") == 1
    assert value(before, "billing_subscriptions_due") == 3
    assert value(before, "billing_subscriptions_overdue") == 3
    assert value(before, "billing_charges_open", state="unknown", older_than="1h") == 1
    assert value(before, "billing_charges_open", state="unknown", older_than="1d") == 0
    assert value(before, "billing_charges_open", state="pending", older_than="0s") == 0
    assert value(before, "billing_workers_seen") == 0
    assert not [key for key in before if key[0] == "billing_renewals_total"]  # no worker has reported
    health = value(
        before,
        "billing_http_requests_total",
        method="GET",
        path="/health",
        status_code="200",
        app_name="billing",
    )
    assert health >= 1

    worker = f"metrics-test:{uuid.uuid4().hex[:8]}"  # a tally of its own (tallies live per process)
    await run_pass_once(runtime, worker)

    after = await scrape(http)
    assert value(after, "billing_subscriptions_due") == 0
    assert value(after, "billing_subscriptions_overdue") == 0
    # The worker's counters, from its heartbeat row, labelled with its identity.
    assert value(after, "billing_renewals_total", worker=worker, outcome="renewed") == 3
    assert value(after, "billing_renewals_total", worker=worker, outcome="inactive") == 0
    assert value(after, "billing_pass_runs_total", worker=worker, outcome="ok", **{"pass": "renewals"}) == 1
    assert value(after, "billing_pass_duration_seconds_count", worker=worker, **{"pass": "renewals"}) == 1
    assert (
        value(after, "billing_pass_duration_seconds_bucket", worker=worker, le="+Inf", **{"pass": "renewals"})
        == 1
    )
    items = {"pass": "renewals", "result": "renewed"}
    assert value(after, "billing_pass_items_total", worker=worker, **items) == 3
    # The pass wrote its heartbeat: one worker seen, its tick just finished.
    assert value(after, "billing_workers_seen") == 1
    assert value(after, "billing_worker_last_pass_age_seconds", worker=worker) == 0
    # Renewals queue events; nothing dispatched them yet.
    assert value(after, "billing_events_undispatched") >= 3

    # Every series the dashboard may use is exported (the 5xx counter appears with the first 5xx).
    names = {name for name, _ in after}
    for expected in METRIC_NAMES - {"billing_http_requests_error_total"}:
        assert {expected, f"{expected}_count"} & names, expected

    # A second tick with nothing due: the runs counter moves, the renewals stay.
    await run_pass_once(runtime, worker)
    again = await scrape(http)
    assert value(again, "billing_pass_runs_total", worker=worker, outcome="ok", **{"pass": "renewals"}) == 2
    assert value(again, "billing_renewals_total", worker=worker, outcome="renewed") == 3


async def test_metrics_is_not_a_merchant_route_nor_in_the_contract(metrics_app: tuple[Any, Any]) -> None:
    _, http = metrics_app
    assert (await http.get("/metrics")).status_code == 200  # no client token needed
    document = (await http.get("/schema/openapi.json")).json()
    assert "/metrics" not in document["paths"]
    assert "/health" in document["paths"]


async def test_every_workers_counters_show_on_any_api_process(
    metrics_app: tuple[Any, Any], clock: Any
) -> None:
    """Two workers (other processes or hosts in production) report through their heartbeat rows."""
    app, http = metrics_app
    runtime = app.state.runtime
    names = [f"host-{n}:{uuid.uuid4().hex[:6]}" for n in (1, 2)]
    for n, name in enumerate(names, start=1):
        record_pass(name, "renewals", RenewalSummary(claimed=n, renewed=n, lost_leases=n - 1), 0.2 * n)
        tally = tally_of(name)
        await record_heartbeat(runtime, name, started_at=clock.now(), last_pass={}, counters=tally.as_json())
    samples = await scrape(http)
    assert value(samples, "billing_workers_seen") == 2
    for n, name in enumerate(names, start=1):
        assert value(samples, "billing_renewals_total", worker=name, outcome="renewed") == n
        assert value(samples, "billing_lease_losses_total", worker=name, **{"pass": "renewals"}) == n - 1
    # 0.2 s and 0.4 s: both in the 0.5 s bucket, only the first in the 0.25 s one.
    buckets = {"pass": "renewals"}
    assert value(samples, "billing_pass_duration_seconds_bucket", worker=names[0], le="0.25", **buckets) == 1
    assert value(samples, "billing_pass_duration_seconds_bucket", worker=names[1], le="0.25", **buckets) == 0
    assert value(samples, "billing_pass_duration_seconds_bucket", worker=names[1], le="0.5", **buckets) == 1
    assert value(samples, "billing_pass_duration_seconds_sum", worker=names[1], **buckets) == pytest.approx(
        0.4
    )

    # A worker last seen 20 minutes ago is no longer exported.
    clock.advance(timedelta(minutes=20))
    later = await scrape(http)
    assert value(later, "billing_workers_seen") == 0
    assert not [key for key in later if key[0] == "billing_renewals_total"]


async def test_http_series_are_labelled_by_route_template_and_status(metrics_app: tuple[Any, Any]) -> None:
    _, http = metrics_app
    for plan in ("plan_first", "plan_second"):  # no token: refused by the guard, 401
        assert (await http.get(f"/v1/plans/{plan}/client/cli_x/detail")).status_code == 401
    samples = await scrape(http)
    template = "/v1/plans/{plan_id}/client/{client}/detail"
    labels = {"method": "GET", "path": template, "status_code": "401", "app_name": "billing"}
    assert value(samples, "billing_http_requests_total", **labels) >= 2
    assert value(samples, "billing_http_request_duration_seconds_count", **labels) >= 2
    assert not [key for key in samples if any("plan_first" in label for _, label in key[1])]
    assert not [key for key in samples if ("path", "/metrics") in key[1]]  # the scrape itself is not counted


async def test_bearer_token_when_configured(db_url: str, tmp_path: Path, clock: Any) -> None:
    settings = test_settings(db_url, tmp_path, metrics={"bearer_token": "scrape-secret-0123456789"})
    async with AsyncTestClient(app=create_app(settings, clock=clock), raise_server_exceptions=False) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic scrape-secret-0123456789"},
        ):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["code"] == "7600"
            assert "scrape-secret" not in refused.text
        samples = await scrape(http, Authorization="Bearer scrape-secret-0123456789")
        assert value(samples, "billing_database_up") == 1


async def test_disabled_metrics_are_not_served(db_url: str, tmp_path: Path, clock: Any) -> None:
    settings = test_settings(db_url, tmp_path, metrics={"enabled": False})
    async with AsyncTestClient(app=create_app(settings, clock=clock), raise_server_exceptions=False) as http:
        assert (await http.get("/metrics")).status_code == 404


def test_multiprocess_mode_adds_up_every_api_process(db_url: str, tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, the HTTP series of every API process on the host show on
    whichever process is scraped (as with `billing serve --workers N`)."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "BILLING_DATABASE__URL": db_url}
    env["BILLING_AUTH__JWT_SECRET"] = "test-only-multiprocess-0123456789abcdef"
    env["BILLING_DATA_DIR"] = str(tmp_path)
    env["BILLING_LOG_LEVEL"] = "WARNING"
    process = textwrap.dedent(
        """
        import sys
        from litestar.testing import TestClient
        from api.app import create_app
        with TestClient(app=create_app()) as http:
            assert http.get("/health").status_code == 200
            if sys.argv[1] == "scrape":
                response = http.get("/metrics")
                assert response.status_code == 200, response.text
                print(response.text)
        """
    )
    for _ in range(2):  # two API processes, each with its own pid, then a third is scraped
        subprocess.run([sys.executable, "-c", process, "serve"], env=env, cwd=ROOT, check=True, timeout=120)
    scraped = subprocess.run(
        [sys.executable, "-c", process, "scrape"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    samples = parse(scraped.stdout)
    health = {"method": "GET", "path": "/health", "status_code": "200", "app_name": "billing"}
    assert value(samples, "billing_http_requests_total", **health) == 3
    assert value(samples, "billing_database_up") == 1
