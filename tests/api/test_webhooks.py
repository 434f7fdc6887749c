"""Webhooks through HTTP against a real receiver on loopback that verifies every signature with
`standardwebhooks`: registration rules, signed ordered delivery, retries, 410, a receiver down for
days, a hanging receiver next to a healthy one, secret rotation, the event and delivery logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from billing.services.webhooks.delivery import Deliverer
from tests.api.conftest import create_plan, data_of, enrol, error_of
from tests.conftest import test_settings
from tests.webhook_receiver import Receiver, free_port

pytestmark = pytest.mark.anyio

ALL_TYPES = [
    "subscription.created",
    "subscription.cancelled",
    "charge.succeeded",
]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    return test_settings(
        db_url, tmp_path, webhooks={"timeout_seconds": 2.0, "circuit_failures": 5, "circuit_seconds": 60.0}
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


async def register(merchant: Any, receiver: Receiver, path: str, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = data_of(
        await merchant.post("/v1/webhooks/endpoints", json={"url": receiver.url(path), **body}), 201
    )
    receiver.secrets.setdefault(path, []).append(created["secret"])
    return created


async def events_of(merchant: Any, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params, limit=2)
        if cursor:
            query["startingAfter"] = cursor
        page = data_of(await merchant.get("/v1/events", params=query))
        items += page["items"]
        if not page["hasMore"]:
            return items
        cursor = page["nextStartingAfter"]


async def activity(merchant: Any, users: int = 2) -> list[str]:
    """Enrol `users` cardholders and cancel the first: subscription and charge events."""
    plan = await create_plan(merchant)
    subs = [(await enrol(merchant, plan["id"], user=f"user-{n}"))["subscription"]["id"] for n in range(users)]
    data_of(await merchant.delete(f"/v1/subscriptions/{subs[0]}"))
    return subs


def first_receipts(received: list[Any]) -> list[Any]:
    seen: set[str] = set()
    firsts = []
    for item in received:
        if item.status == 200 and item.body["eventId"] not in seen:
            seen.add(item.body["eventId"])
            firsts.append(item)
    return firsts


def assert_in_subscription_order(received: list[Any], events: list[dict[str, Any]]) -> None:
    sequence = {e["id"]: (e["subscriptionId"], e["sequence"]) for e in events}
    last: dict[str, int] = {}
    for item in received:
        sub, seq = sequence[item.body["eventId"]]
        if sub is None:
            continue
        assert seq > last.get(sub, 0), f"{item.body['type']} #{seq} of {sub} after #{last.get(sub)}"
        last[sub] = seq


async def test_registration_rules(merchant: Any, merchant_factory: Any, receiver: Receiver) -> None:
    created = await register(merchant, receiver, "/a", eventTypes=["charge.succeeded"], description="books")
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) > 40
    assert created["eventTypes"] == ["charge.succeeded"]
    assert created["status"] == "enabled"

    listed = data_of(await merchant.get("/v1/webhooks/endpoints"))
    assert [e["id"] for e in listed] == [created["id"]]
    assert listed[0]["secret"] != created["secret"]
    assert listed[0]["secret"].endswith(created["secret"][-4:])
    one = data_of(await merchant.get(f"/v1/webhooks/endpoints/{created['id']}"))
    assert one["secret"] == listed[0]["secret"]

    unknown = error_of(
        await merchant.post(
            "/v1/webhooks/endpoints", json={"url": receiver.url("/b"), "eventTypes": ["charge.teleported"]}
        ),
        400,
        "7000",
        "eventTypes",
    )
    assert "charge.teleported" in unknown["message"]
    error_of(
        await merchant.post("/v1/webhooks/endpoints", json={"url": "ftp://example.com/x"}), 400, "7000", "url"
    )
    error_of(
        await merchant.post("/v1/webhooks/endpoints", json={"url": "https://user:pw@example.com/x"}),
        400,
        "7000",
        "url",
    )

    production = await merchant_factory(name="Live", environment="production")
    error_of(
        await production.post("/v1/webhooks/endpoints", json={"url": "http://example.com/hook"}),
        400,
        "7000",
        "url",
    )
    error_of(
        await production.post("/v1/webhooks/endpoints", json={"url": "https://127.0.0.1/hook"}),
        400,
        "7000",
        "url",
    )
    data_of(await production.post("/v1/webhooks/endpoints", json={"url": "https://example.com/hook"}), 201)

    for n in range(15):
        data_of(await merchant.post("/v1/webhooks/endpoints", json={"url": receiver.url(f"/n{n}")}), 201)
    error_of(await merchant.post("/v1/webhooks/endpoints", json={"url": receiver.url("/17")}), 409, "7054")

    # Another client's endpoint does not exist for this one.
    error_of(await production.get(f"/v1/webhooks/endpoints/{created['id']}"), 404, "7045")
    error_of(await production.delete(f"/v1/webhooks/endpoints/{created['id']}"), 404, "7045")
    error_of(await production.get(f"/v1/webhooks/endpoints/{created['id']}/deliveries"), 404, "7045")

    updated = data_of(
        await merchant.put(
            f"/v1/webhooks/endpoints/{created['id']}", json={"eventTypes": [], "description": "all"}
        )
    )
    assert updated["eventTypes"] == []
    assert updated["description"] == "all"
    deleted = data_of(await merchant.delete(f"/v1/webhooks/endpoints/{created['id']}"))
    assert deleted["id"] == created["id"]
    error_of(await merchant.get(f"/v1/webhooks/endpoints/{created['id']}"), 404, "7045")


async def test_every_event_delivered_signed_once_in_order(
    merchant: Any, merchant_factory: Any, runtime: Any, receiver: Receiver
) -> None:
    everything = await register(merchant, receiver, "/all")
    charges_only = await register(merchant, receiver, "/charges", eventTypes=["charge.succeeded"])
    await activity(merchant, users=3)

    deliverer = Deliverer(runtime, "test-worker")
    try:
        await deliverer.run_until_idle()
    finally:
        await deliverer.aclose()

    events = await events_of(merchant)
    assert {e["type"] for e in events} >= set(ALL_TYPES)
    got = receiver.on("/all")
    assert sorted(r.body["eventId"] for r in got) == sorted(e["id"] for e in events)
    assert all(r.verified_with == [0] for r in receiver.received)
    assert all(r.headers["webhook-id"] == r.body["eventId"] for r in receiver.received)
    assert_in_subscription_order(got, events)
    by_id = {e["id"]: e for e in events}
    for item in got:
        event = by_id[item.body["eventId"]]
        assert item.body == {
            "eventId": event["id"],
            "type": event["type"],
            "createdAt": item.body["createdAt"],
            "clientId": merchant.id,
            "data": event["data"],
        }
    assert sorted(r.body["eventId"] for r in receiver.on("/charges")) == sorted(
        e["id"] for e in events if e["type"] == "charge.succeeded"
    )

    log = data_of(
        await merchant.get(f"/v1/webhooks/endpoints/{everything['id']}/deliveries", params={"limit": 100})
    )
    assert len(log["items"]) == len(events)
    assert all(d["status"] == "delivered" and d["lastStatusCode"] == 200 for d in log["items"])
    assert all(d["attempts"] == 1 and d["lastLatencyMs"] is not None for d in log["items"])
    assert log["items"][0]["lastResponse"].startswith("answer 200")
    assert charges_only["id"] != everything["id"]

    one = data_of(await merchant.get(f"/v1/events/{events[0]['id']}"))
    assert one == events[0]
    other = await merchant_factory(name="Other")
    error_of(await other.get(f"/v1/events/{events[0]['id']}"), 404, "7047")
    assert data_of(await other.get("/v1/events"))["items"] == []
    error_of(await other.post(f"/v1/webhooks/deliveries/{log['items'][0]['id']}/retry"), 404, "7048")

    # Filters.
    sub_id = events[0]["subscriptionId"]
    mine = await events_of(merchant, subscriptionId=sub_id)
    assert mine
    assert all(e["subscriptionId"] == sub_id for e in mine)
    assert [e["sequence"] for e in mine] == sorted(e["sequence"] for e in mine)
    charges = await events_of(merchant, type="charge.succeeded")
    assert charges
    assert all(e["type"] == "charge.succeeded" for e in charges)
    error_of(await merchant.get("/v1/events", params={"type": "charge.nope"}), 400, "7000", "type")
    error_of(await merchant.get("/v1/events", params={"createdGte": "yesterday"}), 400, "7000", "createdGte")
    later = (runtime.clock.now() + timedelta(seconds=1)).isoformat()
    assert data_of(await merchant.get("/v1/events", params={"createdGte": later}))["items"] == []


async def test_failed_delivery_is_retried_and_410_disables(
    merchant: Any, runtime: Any, clock: Any, receiver: Receiver
) -> None:
    receiver.behaviours["/flaky"] = [500, 200]
    receiver.behaviours["/gone"] = [410]
    flaky = await register(merchant, receiver, "/flaky", eventTypes=["subscription.created"])
    gone = await register(merchant, receiver, "/gone")
    await activity(merchant, users=1)

    deliverer = Deliverer(runtime, "test-worker")
    try:
        await deliverer.run_until_idle()
        log = data_of(await merchant.get(f"/v1/webhooks/endpoints/{flaky['id']}/deliveries"))["items"]
        assert [(d["status"], d["lastStatusCode"], d["attempts"]) for d in log] == [("pending", 500, 1)]
        assert log[0]["nextAttemptAt"] is not None

        ended = data_of(await merchant.get(f"/v1/webhooks/endpoints/{gone['id']}"))
        assert ended["status"] == "disabled"
        assert "410" in ended["disabledReason"]
        gone_log = data_of(await merchant.get(f"/v1/webhooks/endpoints/{gone['id']}/deliveries"))["items"]
        assert {d["status"] for d in gone_log} == {"abandoned"}
        assert len(receiver.on("/gone")) == 1  # the first answer stopped every other delivery

        clock.advance(timedelta(seconds=settings_base(runtime)))
        await deliverer.run_until_idle()
        log = data_of(await merchant.get(f"/v1/webhooks/endpoints/{flaky['id']}/deliveries"))["items"]
        assert [(d["status"], d["lastStatusCode"], d["attempts"]) for d in log] == [("delivered", 200, 2)]
        assert [r.status for r in receiver.on("/flaky")] == [500, 200]

        # A disabled endpoint takes no retry or replay until enabled again.
        error_of(await merchant.post(f"/v1/webhooks/deliveries/{gone_log[0]['id']}/retry"), 409, "7050")
        receiver.behaviours["/gone"] = [200]
        enabled = data_of(await merchant.put(f"/v1/webhooks/endpoints/{gone['id']}", json={"enabled": True}))
        assert enabled["status"] == "enabled"
        assert enabled["disabledReason"] is None
        since = (clock.now() - timedelta(days=1)).isoformat()
        queued = data_of(
            await merchant.post(f"/v1/webhooks/endpoints/{gone['id']}/replay", json={"since": since})
        )
        assert queued["queued"] == len(gone_log)
        await deliverer.run_until_idle()
        assert {r.body["eventId"] for r in receiver.on("/gone") if r.status == 200} == {
            d["eventId"] for d in gone_log
        }

        # Replay of an endpoint that had everything: each event again, same webhook-id.
        before = len(receiver.on("/flaky"))
        data_of(await merchant.post(f"/v1/webhooks/endpoints/{flaky['id']}/replay", json={"since": since}))
        retried = data_of(await merchant.post(f"/v1/webhooks/deliveries/{log[0]['id']}/retry"))
        assert retried["status"] == "pending"
        await deliverer.run_until_idle()
        again = receiver.on("/flaky")[before:]
        assert [r.body["eventId"] for r in again] == [log[0]["eventId"]]
        future = (clock.now() + timedelta(days=1)).isoformat()
        nothing = data_of(
            await merchant.post(f"/v1/webhooks/endpoints/{flaky['id']}/replay", json={"since": future})
        )
        assert nothing["queued"] == 0
        error_of(
            await merchant.post(f"/v1/webhooks/endpoints/{flaky['id']}/replay", json={"since": "1700000000"}),
            400,
            "7000",
            "since",
        )
    finally:
        await deliverer.aclose()


def settings_base(runtime: Any) -> float:
    return float(runtime.settings.webhooks.backoff_base_seconds) + 1


async def test_receiver_down_for_three_days_then_back_gets_everything_once_in_order(
    merchant: Any, runtime: Any, clock: Any
) -> None:
    port = free_port()
    receiver = Receiver(port=port)  # not started: connections are refused
    endpoint = await register(merchant, receiver, "/down")
    await activity(merchant, users=3)

    deliverer = Deliverer(runtime, "test-worker")
    try:
        attempts_while_down = 0
        for _ in range(72):  # three days, a round every simulated hour
            attempts_while_down += await deliverer.run_until_idle()
            clock.advance(timedelta(hours=1))
        await merchant.login()  # the access token expired while the clock ran
        state = data_of(await merchant.get(f"/v1/webhooks/endpoints/{endpoint['id']}"))
        assert state["consecutiveFailures"] >= 5
        assert state["status"] == "enabled"
        log = data_of(
            await merchant.get(f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries", params={"limit": 100})
        )
        assert {d["status"] for d in log["items"]} == {"pending"}
        assert all(d["lastError"].startswith("connection failed") for d in log["items"] if d["attempts"])

        receiver.start()
        for _ in range(48):  # back: within a day (at most one backoff ceiling) everything arrives
            await deliverer.run_until_idle()
            clock.advance(timedelta(minutes=30))
        await deliverer.run_until_idle()
    finally:
        await deliverer.aclose()
        receiver.stop()
    await merchant.login()

    events = await events_of(merchant)
    firsts = first_receipts(receiver.on("/down"))
    assert sorted(r.body["eventId"] for r in firsts) == sorted(e["id"] for e in events)
    assert_in_subscription_order(firsts, events)
    log = data_of(
        await merchant.get(f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries", params={"limit": 100})
    )
    assert {d["status"] for d in log["items"]} == {"delivered"}
    # The circuit kept the dead endpoint's attempts far below one per event per hour.
    assert attempts_while_down < len(events) * 72 / 4
    print(f"attempts while down: {attempts_while_down} for {len(events)} events over 72 h")


async def test_hanging_receiver_does_not_hold_up_another_endpoint(
    merchant: Any, runtime: Any, receiver: Receiver
) -> None:
    receiver.behaviours["/hang"] = [("hang", 5.0)]
    await register(merchant, receiver, "/hang")
    await register(merchant, receiver, "/fast")
    await activity(merchant, users=2)
    total = len(await events_of(merchant))

    deliverer = Deliverer(runtime, "test-worker")
    started = time.monotonic()
    try:
        await deliverer.round()
        while len(receiver.on("/fast")) < total and time.monotonic() - started < 30:
            await deliverer.round()
            await asyncio.sleep(0.05)
        fast_done = time.monotonic() - started
        hanging = len(receiver.on("/hang"))
        assert len(receiver.on("/fast")) == total
        assert hanging == 0  # the fast endpoint finished while the hanging one still held every call
        await deliverer.drain()
        hang_done = time.monotonic() - started
    finally:
        await deliverer.aclose()
    log = [d for d in (await deliveries_all(merchant)) if d["lastError"]]
    assert log
    assert all("no answer within 2 s" in d["lastError"] for d in log)
    print(
        f"fast endpoint: {total} deliveries in {fast_done:.2f} s; hanging endpoint timed out after {hang_done:.2f} s"
    )


async def deliveries_all(merchant: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for endpoint in data_of(await merchant.get("/v1/webhooks/endpoints")):
        page = data_of(
            await merchant.get(f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries", params={"limit": 100})
        )
        found += page["items"]
    return found


async def test_rotation_signs_with_both_secrets_for_the_overlap(
    merchant: Any, runtime: Any, clock: Any, receiver: Receiver
) -> None:
    endpoint = await register(merchant, receiver, "/rot")
    rotated = data_of(await merchant.post(f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret"))
    assert rotated["secret"] != endpoint["secret"]
    assert rotated["secret"].startswith("whsec_")
    assert rotated["previousSecretUntil"] is not None
    receiver.secrets["/rot"] = [endpoint["secret"], rotated["secret"]]

    deliverer = Deliverer(runtime, "test-worker")
    try:
        plan = await create_plan(merchant)
        await enrol(merchant, plan["id"], user="during")
        await deliverer.run_until_idle()
        during = list(receiver.on("/rot"))
        assert during
        assert all(r.verified_with == [0, 1] for r in during)
        assert all(len(r.headers["webhook-signature"].split(" ")) == 2 for r in during)

        clock.advance(timedelta(hours=24, seconds=1))
        await merchant.login()
        await enrol(merchant, plan["id"], user="after")
        await deliverer.run_until_idle()
        after = receiver.on("/rot")[len(during) :]
        assert after
        assert all(r.verified_with == [1] for r in after)
    finally:
        await deliverer.aclose()


async def test_a_backlog_keeps_flowing_between_the_worker_rounds(
    merchant: Any, runtime: Any, receiver: Receiver
) -> None:
    """One periodic round with 4 slots starts 4 sends; as they end, the deliverer claims the next
    ones itself, so the whole backlog goes out before the worker's next round would come."""
    await register(merchant, receiver, "/all")
    await activity(merchant, users=6)
    total = len(await events_of(merchant))
    assert total > 8

    deliverer = Deliverer(runtime, "test-worker")
    deliverer.settings = runtime.settings.webhooks.model_copy(
        update={"in_flight": 4, "in_flight_per_endpoint": 4}
    )
    try:
        assert await deliverer.round() == 4
        started = time.monotonic()
        while len(receiver.on("/all")) < total and time.monotonic() - started < 15:
            await asyncio.sleep(0.05)
        assert len(receiver.on("/all")) == total
    finally:
        await deliverer.aclose()
    assert sorted(r.body["eventId"] for r in receiver.on("/all")) == sorted(
        e["id"] for e in await events_of(merchant)
    )


async def test_a_closing_deliverer_starts_no_new_sends(
    merchant: Any, runtime: Any, receiver: Receiver
) -> None:
    await register(merchant, receiver, "/all")
    await activity(merchant, users=6)
    deliverer = Deliverer(runtime, "test-worker")
    deliverer.settings = runtime.settings.webhooks.model_copy(
        update={"in_flight": 4, "in_flight_per_endpoint": 4}
    )
    assert await deliverer.round() == 4
    await deliverer.aclose()
    await asyncio.sleep(0.3)
    assert len(receiver.on("/all")) == 4
