"""A client generated from the live document runs the merchant flow, and every answer matches the document.

This is what a merchant does first: `openapi-python-client generate --url .../schema/openapi.json`,
then log in, create and update a plan, enrol a cardholder, manage cards, read the history, send
on-demand charges (JSON and CSV), move the sandbox clock and cancel, all through the generated
code. Every HTTP answer on the way is checked against the response schema the document
publishes for its operation, status and media type, and every operation must be seen.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing.domain.signatures import sign
from tests.contract.conftest import LiveEngine, PublishedSchemas
from tests.signing import Signer
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_FILE = ROOT / "api" / "openapi" / "examples.json"
GOOD_CARD = {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvv": "123", "holderName": "Ada"}
SECOND_CARD = {
    "number": "5555555555554444",
    "expMonth": 11,
    "expYear": 2031,
    "cvv": "321",
    "holderName": "Ada",
}


def generate_client(base_url: str, into: Path) -> Any:
    """Run the generator against the live document; fail on any warning; import the package."""
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert tool is not None, "openapi-python-client is not installed (dev extra)"
    package = into / "billing_engine_client"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [
            tool,
            "generate",
            "--url",
            f"{base_url}/schema/openapi.json",
            "--meta",
            "none",
            "--output-path",
            str(package),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "warning" not in output.lower(), output
    assert "error" not in output.lower(), output
    sys.path.insert(0, str(into))
    return importlib.import_module("billing_engine_client")


class AnswerChecker:
    """An httpx response hook: each answer against its operation's published schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.schemas = PublishedSchemas(document)
        self.routes: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        # Literal paths first: DELETE /v1/subscriptions/payment-methods is not /v1/subscriptions/{id}.
        for path, operations in sorted(document["paths"].items(), key=lambda item: item[0].count("{")):
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
            for method, operation in operations.items():
                self.routes.append((method.upper(), pattern, operation))
        self.seen: dict[str, set[int]] = {}
        self.problems: list[str] = []
        self.examples: dict[str, dict[str, Any]] = {}

    def operation(self, method: str, path: str) -> dict[str, Any]:
        for known, pattern, operation in self.routes:
            if known == method and pattern.match(path):
                return operation
        raise AssertionError(f"{method} {path} is not in the published document")

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        operation = self.operation(request.method, request.url.path)
        name = operation["operationId"]
        self.seen.setdefault(name, set()).add(response.status_code)
        media = response.headers.get("content-type", "").split(";")[0].strip()
        try:
            schema = self.schemas.response_schema(operation, response.status_code, media)
        except AssertionError as exc:
            self.problems.append(str(exc))
            return
        if media == "application/json":
            body = response.json()
            if schema is not None:
                for problem in self.schemas.validate(schema, body):
                    self.problems.append(f"{name} {response.status_code}: {problem}")
            if response.is_success and name not in self.examples:
                sent = request.content
                recorded: dict[str, Any] = {"response": body}
                if sent and request.headers.get("content-type", "").startswith("application/json"):
                    recorded["request"] = json.loads(sent)
                self.examples[name] = recorded


def signing_hook(signer: Signer) -> Any:
    def hook(request: httpx.Request) -> None:
        if request.method in {"POST", "PUT", "DELETE"} and request.url.path != "/v1/auth/login":
            target = request.url.raw_path.decode()
            body = request.read()  # multipart bodies are streams until read
            request.headers.update(
                signer.signed_headers(request.method, target, request.headers.get("idempotency-key"), body)
            )

    return hook


def exact(amount: Any) -> Decimal:
    """An amount as the generated client holds it (a float from a JSON number), as a decimal."""
    return Decimal(str(amount))


@pytest.mark.slow
def test_a_generated_client_runs_the_merchant_flow(live_engine: LiveEngine, tmp_path: Path) -> None:
    document = live_engine.document()
    gen = generate_client(live_engine.base_url, tmp_path / "generated")
    api = importlib.import_module("billing_engine_client.api")
    models = importlib.import_module("billing_engine_client.models")
    from billing_engine_client import AuthenticatedClient, Client  # type: ignore[import-not-found]

    del gen, api
    ops = {
        name: importlib.import_module(f"billing_engine_client.api.{tag}.{name}") for tag, name in _OPERATIONS
    }
    client_id, pem = live_engine.create_client("Generated")
    checker = AnswerChecker(document)
    signer = Signer(pem)
    hooks = {"response": [checker], "request": [signing_hook(signer)]}
    anonymous = Client(
        base_url=live_engine.base_url, httpx_args={"event_hooks": hooks}, raise_on_unexpected_status=True
    )

    assert ops["get_health"].sync_detailed(client=anonymous).status_code == 200

    timestamp = int(time.time())
    login = ops["login"].sync(
        client=anonymous,
        body=models.LoginRequest(
            client_id=client_id, timestamp=timestamp, signature=sign(pem, f"{client_id}.{timestamp}".encode())
        ),
    )
    assert isinstance(login, models.TokensEnvelope), login
    refreshed = ops["refresh_tokens"].sync(
        client=anonymous, body=models.RefreshRequest(refresh_token=login.data.refresh_token)
    )
    assert isinstance(refreshed, models.TokensEnvelope), refreshed
    merchant = AuthenticatedClient(
        base_url=live_engine.base_url,
        token=refreshed.data.access_token,
        httpx_args={"event_hooks": hooks},
        raise_on_unexpected_status=True,
    )

    receiver = Receiver().start()
    endpoint = ops["create_webhook_endpoint"].sync(
        client=merchant,
        body=models.EndpointIn(url=receiver.url("/hooks"), description="Bookkeeping"),
    )
    assert isinstance(endpoint, models.EndpointOutEnvelope), endpoint
    receiver.secrets["/hooks"] = [endpoint.data.secret]

    # A request without the token answers 401 in the published error envelope.
    unauthenticated = ops["list_plans"].sync_detailed(client=anonymous)  # type: ignore[arg-type]
    assert unauthenticated.status_code == 401

    plan = ops["create_plan"].sync(
        client=merchant,
        body=models.CreatePlanIn(
            plan=models.PlanIn(
                name="Pro Monthly",
                amount="29.90",
                currency=models.Currency.USD,
                type_=models.PlanInType.INTERVAL,
                frequency=models.FrequencyIn(frequency=30, short_description="Monthly"),
                methods=["sandbox"],
                daily_attempts=3,
                interval_attempt=24,
            ),
            client=client_id,
        ),
    )
    assert isinstance(plan, models.PlanOutEnvelope), plan
    assert exact(plan.data.amount) == Decimal("29.90")
    plan_id = plan.data.id
    updated = ops["update_plan"].sync(
        client=merchant,
        body=models.UpdatePlanIn(plan_id=plan_id, plan=models.PlanFields(amount="34.50"), client=client_id),
    )
    assert isinstance(updated, models.PlanOutEnvelope), updated
    assert exact(updated.data.amount) == Decimal("34.50")
    listed = ops["list_plans"].sync(client=merchant)
    assert isinstance(listed, models.PlanOutListEnvelope)
    assert [p.id for p in listed.data] == [plan_id]
    found = ops["get_plan"].sync(plan_id=plan_id, client_path=client_id, client=merchant)
    assert isinstance(found, models.PlanOutEnvelope), found
    missing = ops["get_plan"].sync(plan_id="pln_unknown", client_path=client_id, client=merchant)
    assert isinstance(missing, models.ErrorEnvelope)
    assert missing.errors[0].code.value == "7040"

    trx = ops["create_transaction"].sync(
        client=merchant,
        body=models.TransactionIn(amount="1.00", currency=models.Currency.USD, user_id="cardholder-42"),
    )
    assert isinstance(trx, models.TransactionOutEnvelope), trx
    enrolled = ops["verify_card"].sync(
        client=merchant,
        body=models.VerifyCardIn(
            uid=trx.data.uid,
            processor="sandbox",
            card_info=models.CardInfoIn.from_dict(GOOD_CARD),
            should_create_subscription=True,
            plan_uid=plan_id,
            notification_email="ada@example.com",
        ),
    )
    assert isinstance(enrolled, models.EnrolmentOutEnvelope), enrolled
    subscription = enrolled.data.subscription
    assert subscription is not None
    assert subscription.status == models.SubscriptionOutStatus.ACTIVE
    sub_id = subscription.id
    first_card = enrolled.data.payment_method.id

    detail = ops["get_subscription"].sync(sub_uid=sub_id, client=merchant)
    assert isinstance(detail, models.SubscriptionOutEnvelope), detail
    mine = ops["list_subscriptions"].sync(client=merchant, user_id="cardholder-42", client_id=client_id)
    assert isinstance(mine, models.SubscriptionOutListEnvelope)
    assert [s.id for s in mine.data] == [sub_id]
    emailed = ops["update_subscription"].sync(
        client=merchant,
        body=models.UpdateSubscriptionIn(subscription_id=sub_id, notification_email="billing@example.com"),
    )
    assert isinstance(emailed, models.SubscriptionOutEnvelope)
    assert emailed.data.notification_email == "billing@example.com"
    notices = ops["get_notification_settings"].sync(client=merchant)
    assert isinstance(notices, models.NotificationSettingsOutEnvelope), notices
    notices = ops["update_notification_settings"].sync(
        client=merchant,
        body=models.NotificationSettingsIn.from_dict(
            {
                "disabled": ["cardExpiring"],
                "locale": "en",
                "senderName": "Acme",
                "replyTo": "help@acme.example",
            }
        ),
    )
    assert isinstance(notices, models.NotificationSettingsOutEnvelope), notices
    assert notices.data.disabled == ["cardExpiring"]
    sent = ops["list_subscription_notifications"].sync(subscription_id=sub_id, client=merchant)
    assert isinstance(sent, models.NotificationOutListEnvelope), sent

    added = ops["add_payment_method"].sync(
        client=merchant,
        body=models.AddPaymentMethodIn(
            tokenize_data=models.TokenizeDataIn(
                user_id="cardholder-42",
                processor_id="sandbox",
                card_info=models.CardInfoIn.from_dict(SECOND_CARD),
                fallback_for=[sub_id],
            )
        ),
    )
    assert isinstance(added, models.PaymentMethodOutEnvelope), added
    defaulted = ops["set_default_payment_method"].sync(
        client=merchant,
        body=models.SetDefaultIn(
            subscription_id=sub_id, payment_method_id=added.data.id, keep_as_fallback=True
        ),
    )
    assert isinstance(defaulted, models.SubscriptionOutEnvelope)
    assert defaulted.data.default_payment_method_id == added.data.id
    assert [card.id for card in defaulted.data.fallback_cards] == [first_card]
    removed = ops["remove_payment_method"].sync(
        client=merchant, body=models.RemovePaymentMethodIn(payment_method_id=first_card)
    )
    assert isinstance(removed, models.PaymentMethodOutEnvelope)
    assert removed.data.status.value == "removed"

    history = ops["get_payment_history"].sync(client=merchant, subscription_id=sub_id)
    assert isinstance(history, models.ChargeOutListEnvelope)
    assert [exact(c.amount) for c in history.data] == [Decimal("34.50")]

    first_charge = enrolled.data.charge
    assert first_charge is not None
    refunded = ops["refund_charge"].sync(
        charge_id=first_charge.id,
        client=merchant,
        body=models.RefundIn(amount="5.00", reason="duplicate seat"),
        idempotency_key="refund-seat-1",
    )
    assert isinstance(refunded, models.RefundResultOutEnvelope), refunded
    assert refunded.data.refund.state.value == "succeeded"
    assert exact(refunded.data.charge.refunded_amount) == Decimal("5.00")
    charge = ops["get_charge"].sync(charge_id=first_charge.id, client=merchant)
    assert isinstance(charge, models.ChargeOutEnvelope), charge
    assert [r.id for r in charge.data.refunds] == [refunded.data.refund.id]

    batch = ops["create_charge_batch"].sync(
        client=merchant,
        body=models.ChargeBatchIn(
            client=client_id,
            data=[{"subscriptionId": sub_id, "amount": "15.00", "metadata": {"order": "A-1"}}],
        ),
        idempotency_key="usage-2026-01",
    )
    assert isinstance(batch, models.BatchReceivedEnvelope), batch
    status = _until_completed(
        lambda: ops["get_charge_batch"].sync(batch_id=batch.data.batch_id, client=merchant)
    )
    assert [(i.state.value, exact(i.amount)) for i in status.data.items] == [("succeeded", Decimal("15.00"))]

    csv_file = models.CsvUploadForm(
        file=importlib.import_module("billing_engine_client.types").File(
            payload=f"subscriptionId,amount,metadata\n{sub_id},2.50,\n".encode(),
            file_name="usage.csv",
            mime_type="text/csv",
        ),
        client_id=client_id,
    )
    upload = ops["upload_charges_csv"].sync(client=merchant, body=csv_file)
    assert isinstance(upload, models.CsvReceived), upload
    report = _until_completed(
        lambda: ops["get_charges_csv_upload"].sync(tracking_id=upload.tracking_id, client=merchant)
    )
    assert [exact(i.amount) for i in report.data.items] == [Decimal("2.50")]
    download = ops["download_charges_csv_results"].sync_detailed(
        tracking_id=upload.tracking_id, client=merchant
    )
    assert download.status_code == 200
    assert download.content.startswith(b"line,subscriptionId,amount")
    # The same file from the status route's ?format=csv, with the client's own HTTP session.
    same = merchant.get_httpx_client().get(
        f"/v1/subscriptions/charges/upload-csv/{upload.tracking_id}", params={"format": "csv"}
    )
    assert same.headers["content-type"].startswith("text/csv")
    assert same.content == download.content

    clock = ops["get_sandbox_clock"].sync(client=merchant)
    assert isinstance(clock, models.ClockOutEnvelope), clock
    moved = ops["advance_sandbox_clock"].sync(
        client=merchant, body=models.AdvanceClockIn(advance_seconds=31 * 86400)
    )
    assert isinstance(moved, models.ClockOutEnvelope)
    assert moved.data.ran is not None
    assert moved.data.ran.renewed == 1

    cancelled = ops["cancel_subscription"].sync(sub_uid=sub_id, client=merchant)
    assert isinstance(cancelled, models.SubscriptionOutEnvelope)
    assert cancelled.data.status == models.SubscriptionOutStatus.CANCELLED

    webhooks_flow(ops, models, merchant, endpoint.data.id, receiver)
    receiver.stop()

    assert not checker.problems, "\n".join(checker.problems)
    published = {op["operationId"] for ops_ in document["paths"].values() for op in ops_.values()}
    assert published - set(checker.seen) == set(), "operations no real answer was checked against"
    if os.environ.get("BILLING_TEST_RECORD_EXAMPLES") == "1" and live_engine.backend == "sqlite":
        EXAMPLES_FILE.write_text(json.dumps(presentable(checker.examples), indent=1, sort_keys=True) + "\n")


EXAMPLE_SECRET = "whsec_" + "RXhhbXBsZSBzZWNyZXQ6IHlvdXJzIGlzIGluIHRoZSBhbnN3ZXI="
EXAMPLE_URL = "https://example.com/billing/webhooks"


def presentable(value: Any) -> Any:
    """Recorded examples without this run's webhook secret and loopback receiver address."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "secret" and isinstance(item, str):
                item = EXAMPLE_SECRET if len(item) > 20 else "whsec_...5Ug="
            elif key == "url" and isinstance(item, str) and "127.0.0.1" in item:
                item = EXAMPLE_URL
            else:
                item = presentable(item)
            out[key] = item
        return out
    if isinstance(value, list):
        return [presentable(item) for item in value]
    return value


def webhooks_flow(ops: Any, models: Any, merchant: Any, endpoint_id: str, receiver: Receiver) -> None:
    """Endpoints, the event log and the delivery log through the generated client."""
    listed = ops["list_webhook_endpoints"].sync(client=merchant)
    assert isinstance(listed, models.EndpointOutListEnvelope), listed
    assert [e.id for e in listed.data] == [endpoint_id]
    found = ops["get_webhook_endpoint"].sync(endpoint_id=endpoint_id, client=merchant)
    assert isinstance(found, models.EndpointOutEnvelope), found
    events = ops["list_events"].sync(client=merchant, limit=100)
    assert isinstance(events, models.EventPageEnvelope), events
    assert events.data.items
    event = ops["get_event"].sync(event_id=events.data.items[0].id, client=merchant)
    assert isinstance(event, models.EventOutEnvelope), event

    deadline = time.monotonic() + 60
    while True:  # the engine's worker delivers to the receiver
        log = ops["list_webhook_deliveries"].sync(endpoint_id=endpoint_id, client=merchant, limit=100)
        assert isinstance(log, models.DeliveryPageEnvelope), log
        done = [d for d in log.data.items if d.status.value == "delivered"]
        if len(done) == len(events.data.items) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(done) == len(events.data.items)
    assert {r.body["eventId"] for r in receiver.on("/hooks")} == {e.id for e in events.data.items}
    assert all(r.verified_with == [0] for r in receiver.on("/hooks"))

    retried = ops["retry_webhook_delivery"].sync(delivery_id=done[0].id, client=merchant)
    assert isinstance(retried, models.DeliveryOutEnvelope), retried
    replayed = ops["replay_webhook_events"].sync(
        endpoint_id=endpoint_id, client=merchant, body=models.ReplayIn(since=events.data.items[0].created_at)
    )
    assert isinstance(replayed, models.ReplayOutEnvelope), replayed
    assert replayed.data.queued == len(events.data.items)
    changed = ops["update_webhook_endpoint"].sync(
        endpoint_id=endpoint_id,
        client=merchant,
        body=models.EndpointUpdateIn.from_dict(
            {"eventTypes": ["charge.succeeded", "subscription.cancelled"]}
        ),
    )
    assert isinstance(changed, models.EndpointOutEnvelope), changed
    rotated = ops["rotate_webhook_secret"].sync(endpoint_id=endpoint_id, client=merchant)
    assert isinstance(rotated, models.EndpointOutEnvelope), rotated
    assert rotated.data.secret.startswith("whsec_")
    deleted = ops["delete_webhook_endpoint"].sync(endpoint_id=endpoint_id, client=merchant)
    assert isinstance(deleted, models.EndpointOutEnvelope), deleted


def _until_completed(read: Any) -> Any:
    """Poll a batch or upload report until the worker has finished it (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        report = read()
        if report.data.status.value == "completed" or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


_OPERATIONS = [
    ("operations", "get_health"),
    ("webhooks", "create_webhook_endpoint"),
    ("webhooks", "list_webhook_endpoints"),
    ("webhooks", "get_webhook_endpoint"),
    ("webhooks", "update_webhook_endpoint"),
    ("webhooks", "delete_webhook_endpoint"),
    ("webhooks", "rotate_webhook_secret"),
    ("webhooks", "list_webhook_deliveries"),
    ("webhooks", "retry_webhook_delivery"),
    ("webhooks", "replay_webhook_events"),
    ("events", "list_events"),
    ("events", "get_event"),
    ("notifications", "get_notification_settings"),
    ("notifications", "update_notification_settings"),
    ("notifications", "list_subscription_notifications"),
    ("auth", "login"),
    ("auth", "refresh_tokens"),
    ("plans", "create_plan"),
    ("plans", "update_plan"),
    ("plans", "list_plans"),
    ("plans", "get_plan"),
    ("transactions", "create_transaction"),
    ("subscriptions", "verify_card"),
    ("subscriptions", "get_subscription"),
    ("subscriptions", "list_subscriptions"),
    ("subscriptions", "update_subscription"),
    ("subscriptions", "cancel_subscription"),
    ("subscriptions", "get_payment_history"),
    ("payment_methods", "add_payment_method"),
    ("payment_methods", "set_default_payment_method"),
    ("payment_methods", "remove_payment_method"),
    ("charges", "create_charge_batch"),
    ("charges", "get_charge_batch"),
    ("charges", "upload_charges_csv"),
    ("charges", "get_charges_csv_upload"),
    ("charges", "download_charges_csv_results"),
    ("charges", "refund_charge"),
    ("charges", "get_charge"),
    ("sandbox", "get_sandbox_clock"),
    ("sandbox", "advance_sandbox_clock"),
]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
