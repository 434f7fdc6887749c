"""Tenant isolation, swept over the routes the app actually serves.

The routes are found by introspection (``app.routes`` for path parameters, the OpenAPI document for
query and body fields), so a route added later is covered the day it lands, or the sweep FAILS and
names it: a route whose ids this module cannot create yet, or whose request it cannot build, is
listed in the failure, never skipped. Routes and fields that name no tenant resource are on the
commented allowlists below.

Two clients, A and B, each get one of every resource through the public API. Then:

1. B using A's ids (in the path, the query or the body) gets the same 404 as for an id that does
   not exist, and A's resources are untouched; A reaching the same routes with its ids is not 404.
2. B naming A as the client (``client``/``clientId`` in the path, query or body) gets 403 7605.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from billing.services.webhooks.delivery import dispatch_all
from billing.store.ids import ulid

pytestmark = pytest.mark.anyio

CARD = {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvv": "123", "holderName": "Ada"}
CSV_UPLOAD = "/v1/subscriptions/charges/upload-csv"

# Routes with {parameters} that are not tenant resource ids (with the reason).
NO_RESOURCE_ID_ROUTES = {
    "/schema/{path:str}": "OpenAPI documentation assets: public, no tenant data",
    "/schema/assets/{name:str}": "Swagger UI files from the installed package: public, no tenant data",
    "/pay/{reference:str}": "a cardholder's payment link: public by design, its reference is the capability "
    "(tests/api/test_payment_pages.py)",
    "/pay/assets/{name:str}": "the payment page's style sheet and script: public, no tenant data",
}

# Names that carry the tenant itself: filled with the requester's own id in the 404 sweep and
# with the other client's id in the 7605 sweep.
TENANT_FIELDS = {"client", "clientId", "client_id"}

# Path parameter name -> the resource kind it names (see Tenant.ids).
PATH_PARAM_KINDS = {
    "plan_id": "plan",
    "plan_uid": "plan",
    "sub_uid": "subscription",
    "subscription_id": "subscription",
    "batch_id": "batch",
    "tracking_id": "upload",
    "trx_uid": "transaction",
    "payment_method_id": "payment_method",
    "endpoint_id": "webhook_endpoint",
    "delivery_id": "webhook_delivery",
    "event_id": "event",
    "charge_id": "charge",
}

ID_LIKE = re.compile(r"(Id|Uid|_id|_uid)$|^uid$")

# Query/body fields that look like ids but name no engine resource of a tenant (with the reason).
NOT_RESOURCE_FIELDS = {
    "externalId": "the merchant's own reference for a transaction (unique per client, tested with transactions)",
    "processorId": "a processor slug (sandbox, stripe), the same for every client",
    "cardId": "a token from the merchant's own processor account, not an engine id; answers never show it",
    "userId": "the merchant's own cardholder reference: B's 'u1' and A's 'u1' are different cardholders "
    "(listing by another client's userId is tested below)",
}


@dataclass
class Tenant:
    """A logged-in client and one resource of every kind, created through the API."""

    merchant: Any
    ids: dict[str, str] = field(default_factory=dict)
    user: str = "cardholder-1"

    @property
    def id(self) -> str:
        return str(self.merchant.id)


def data_of(response: Any, status: int, what: str) -> Any:
    assert response.status_code == status, f"creating {what}: {response.status_code} {response.text}"
    return response.json()


async def open_tenant(merchant: Any) -> Tenant:
    """Create a plan, a subscription (verify-card) with its first charge, its card, a spare transaction,
    a batch and a CSV upload."""
    tenant = Tenant(merchant)
    tenant.ids["webhook_endpoint"] = data_of(
        await merchant.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hooks"}),
        201,
        "a webhook endpoint",
    )["data"]["id"]
    plan = {
        "name": "Pro",
        "amount": 10,
        "currency": "USD",
        "type": "interval",
        "frequency": {"frequency": 30},
    }
    tenant.ids["plan"] = data_of(await merchant.post("/v1/plans", json={"plan": plan}), 201, "a plan")[
        "data"
    ]["id"]
    trx_body = {"amount": 1, "currency": "USD", "userId": tenant.user}
    enrol_trx = data_of(await merchant.post("/transactions", json=trx_body), 201, "a transaction")["data"][
        "uid"
    ]
    enrolled = data_of(
        await merchant.post(
            "/v1/subscriptions/verify-card",
            json={
                "uid": enrol_trx,
                "processor": "sandbox",
                "cardInfo": CARD,
                "shouldCreateSubscription": True,
                "planUid": tenant.ids["plan"],
            },
        ),
        200,
        "a subscription (verify-card)",
    )["data"]
    tenant.ids["subscription"] = enrolled["subscription"]["id"]
    tenant.ids["payment_method"] = enrolled["paymentMethod"]["id"]
    tenant.ids["charge"] = enrolled["charge"]["id"]
    tenant.ids["transaction"] = data_of(
        await merchant.post("/transactions", json=trx_body), 201, "a spare transaction"
    )["data"]["uid"]
    tenant.ids["batch"] = data_of(
        await merchant.post(
            "/v1/subscriptions/charges",
            json={"client": tenant.id, "data": [{"subscriptionId": tenant.ids["subscription"], "amount": 1}]},
        ),
        202,
        "an on-demand batch",
    )["data"]["batchId"]
    csv = f"subscriptionId,amount\n{tenant.ids['subscription']},1.00\n".encode()
    tenant.ids["upload"] = data_of(
        await merchant.post(
            CSV_UPLOAD, files={"file": ("c.csv", csv, "text/csv")}, data={"clientId": tenant.id}
        ),
        202,
        "a CSV upload",
    )["trackingId"]
    await dispatch_all(merchant.runtime)  # the worker's step that turns events into deliveries
    tenant.ids["event"] = data_of(await merchant.get("/v1/events"), 200, "events")["data"]["items"][0]["id"]
    deliveries = await merchant.get(f"/v1/webhooks/endpoints/{tenant.ids['webhook_endpoint']}/deliveries")
    tenant.ids["webhook_delivery"] = data_of(deliveries, 200, "deliveries")["data"]["items"][0]["id"]
    return tenant


@pytest.fixture
async def tenants(merchant_factory: Any) -> tuple[Tenant, Tenant]:
    """(A, B): two sandbox clients with one resource of every kind each."""
    a = await open_tenant(await merchant_factory(name="Tenant A"))
    b = await open_tenant(await merchant_factory(name="Tenant B"))
    return a, b


def missing_like(real: str) -> str:
    """An id of the same shape that names nothing."""
    prefix, _, _ = real.rpartition("_")
    return f"{prefix}_{ulid()}" if prefix else ulid().lower()[: len(real)]


def code_of(response: Any) -> str | None:
    try:
        errors = response.json().get("errors")
    except ValueError:
        return None
    return str(errors[0]["code"]) if errors else None


def answer(response: Any) -> str:
    return f"{response.status_code} {code_of(response)}"


# ---- 1. ids in the path -----------------------------------------------------------------------------

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def id_routes(app: Any) -> Iterator[tuple[str, str, list[str]]]:
    """(method, path template, parameter names) of every route with a path parameter."""
    for route in app.routes:
        if "{" not in route.path or route.path in NO_RESOURCE_ID_ROUTES:
            continue
        for method in sorted(set(getattr(route, "methods", set())) - {"OPTIONS", "HEAD"}):
            yield method, route.path, _PARAM.findall(route.path)


def fill(template: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda match: values[match.group(1)], template)


async def test_another_clients_ids_in_paths_answer_404_like_missing_ids(
    app: Any, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    swept: list[str] = []
    uncovered: list[str] = []
    failures: list[str] = []
    controls: list[tuple[str, str]] = []
    for method, template, params in id_routes(app):
        kinds = {p: PATH_PARAM_KINDS.get(p) for p in params if p not in TENANT_FIELDS}
        if not all(kind in a.ids for kind in kinds.values()):
            uncovered.append(f"{method} {template} (parameters {params}; known: {sorted(PATH_PARAM_KINDS)})")
            continue
        own = {p: b.id for p in params if p in TENANT_FIELDS}
        theirs = fill(template, {**own, **{p: a.ids[k] for p, k in kinds.items() if k}})
        missing = fill(template, {**own, **{p: missing_like(a.ids[k]) for p, k in kinds.items() if k}})
        body = {
            k: v
            for k, v in (SAMPLES.get((method, _PARAM.sub(r"{\1}", template)), lambda me: {})(b)).items()
            if k != "path"
        }
        got = await b.merchant.request(method, theirs, **body)
        expected = await b.merchant.request(method, missing, **body)
        if got.status_code != 404 or answer(got) != answer(expected):
            failures.append(
                f"{method} {template}: B with A's ids -> {answer(got)}; missing ids -> {answer(expected)}"
            )
        controls.append(
            (
                method,
                fill(template, {**{p: a.id for p in own}, **{p: a.ids[k] for p, k in kinds.items() if k}}),
                {
                    k: v
                    for k, v in (
                        SAMPLES.get((method, _PARAM.sub(r"{\1}", template)), lambda me: {})(a)
                    ).items()
                    if k != "path"
                },
            )
        )
        swept.append(f"{method} {template}")

    # A still reaches its own resources by the same routes (reads first, writes last).
    for method, path, own_body in sorted(controls, key=lambda item: (item[0] == "DELETE", item[0] != "GET")):
        response = await a.merchant.request(method, path, **own_body)
        if response.status_code >= 400:
            failures.append(f"{method} {path}: A on its own resource -> {answer(response)} (control)")

    assert not uncovered, (
        "routes with ids this sweep cannot create yet (extend open_tenant/PATH_PARAM_KINDS):\n"
        + "\n".join(uncovered)
    )
    assert not failures, "\n".join(failures)
    for route in (
        "GET /v1/plans/{plan_id:str}/client/{client:str}/detail",
        "GET /v1/subscriptions/detail/{sub_uid:str}",
        "DELETE /v1/subscriptions/{sub_uid:str}",
        "GET /v1/subscriptions/charges/batches/{batch_id:str}",
        "GET /v1/subscriptions/charges/upload-csv/{tracking_id:str}",
        "GET /v1/charges/{charge_id:str}",
        "POST /v1/charges/{charge_id:str}/refund",
    ):
        assert route in swept, f"{route} was not swept: {swept}"


async def test_b_cannot_cancel_as_side_effect_of_a_404(tenants: tuple[Tenant, Tenant]) -> None:
    """A refused write by B leaves A's subscription as it was."""
    a, b = tenants
    sub = a.ids["subscription"]
    assert (await b.merchant.delete(f"/v1/subscriptions/{sub}")).status_code == 404
    detail = await a.merchant.get(f"/v1/subscriptions/detail/{sub}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["data"]["status"] == "active"


# ---- OpenAPI introspection ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiField:
    method: str
    path: str
    location: str  # path | query | body | form
    name: str  # dotted; "[]" marks list items, e.g. "data[].subscriptionId"

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1].removesuffix("[]")

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.location}:{self.name}"


def _body_fields(
    schema: dict[str, Any], components: dict[str, Any], prefix: str = "", seen: tuple[str, ...] = ()
) -> Iterator[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from _body_fields(components[name], components, prefix, (*seen, name))
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from _body_fields(option, components, prefix, seen)
    if "items" in schema:
        yield from _body_fields(schema["items"], components, prefix + "[]", seen)
    for name, sub in schema.get("properties", {}).items():
        dotted = f"{prefix}.{name}" if prefix else name
        yield dotted
        yield from _body_fields(sub, components, dotted, seen)


def api_fields(app: Any) -> list[ApiField]:
    """Every path, query and body field of every merchant operation in the OpenAPI document."""
    document = app.openapi_schema.to_schema()
    components = document.get("components", {}).get("schemas", {})
    found: list[ApiField] = []
    for path, operations in document["paths"].items():
        if path.startswith(("/v1/auth/", "/schema", "/health")):
            continue
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            for parameter in operation.get("parameters", []):
                found.append(ApiField(method.upper(), path, parameter["in"], parameter["name"]))
            for content_type, content in (operation.get("requestBody") or {}).get("content", {}).items():
                location = "form" if "form" in content_type else "body"
                for name in dict.fromkeys(_body_fields(content.get("schema", {}), components)):
                    found.append(ApiField(method.upper(), path, location, name))
    return found


# ---- request samples: otherwise-valid requests of B, into which one field is injected --------------

Sample = Callable[[Tenant], dict[str, Any]]


def _verify_card(me: Tenant) -> dict[str, Any]:
    return {
        "json": {
            "uid": me.ids["transaction"],
            "processor": "sandbox",
            "cardInfo": CARD,
            "shouldCreateSubscription": False,
        }
    }


SAMPLES: dict[tuple[str, str], Sample] = {
    ("POST", "/v1/plans"): lambda me: {
        "json": {
            "plan": {
                "name": "P",
                "amount": 5,
                "currency": "USD",
                "type": "interval",
                "frequency": {"frequency": 7},
            }
        }
    },
    ("PUT", "/v1/plans"): lambda me: {"json": {"planId": me.ids["plan"], "plan": {"name": "Renamed"}}},
    ("GET", "/v1/plans/list"): lambda me: {},
    ("GET", "/v1/plans/{plan_id}/client/{client}/detail"): lambda me: {
        "path": {"plan_id": me.ids["plan"], "client": me.id}
    },
    ("POST", "/transactions"): lambda me: {"json": {"amount": 1, "currency": "USD", "userId": me.user}},
    ("POST", "/v1/subscriptions/verify-card"): _verify_card,
    ("GET", "/v1/subscriptions"): lambda me: {"params": {"userId": me.user, "clientId": me.id}},
    ("GET", "/v1/subscriptions/detail/{sub_uid}"): lambda me: {"path": {"sub_uid": me.ids["subscription"]}},
    ("PUT", "/v1/subscriptions"): lambda me: {
        "json": {"subscriptionId": me.ids["subscription"], "notificationEmail": "ops@example.com"}
    },
    ("DELETE", "/v1/subscriptions/{sub_uid}"): lambda me: {"path": {"sub_uid": me.ids["subscription"]}},
    ("GET", "/v1/subscriptions/payment-history"): lambda me: {
        "params": {"subscriptionId": me.ids["subscription"]}
    },
    ("POST", "/v1/subscriptions/payment-methods"): lambda me: {
        "json": {"tokenizeData": {"userId": me.user, "processorId": "sandbox", "cardInfo": CARD}}
    },
    ("DELETE", "/v1/subscriptions/payment-methods"): lambda me: {
        "json": {"paymentMethodId": me.ids["payment_method"]}
    },
    ("PUT", "/v1/subscriptions/payment-methods/set-default"): lambda me: {
        "json": {"subscriptionId": me.ids["subscription"], "paymentMethodId": me.ids["payment_method"]}
    },
    ("POST", "/v1/subscriptions/charges"): lambda me: {
        "json": {"client": me.id, "data": [{"subscriptionId": me.ids["subscription"], "amount": 1}]}
    },
    ("GET", "/v1/subscriptions/charges/batches/{batch_id}"): lambda me: {
        "path": {"batch_id": me.ids["batch"]}
    },
    ("POST", CSV_UPLOAD): lambda me: {
        "files": {
            "file": ("c.csv", f"subscriptionId,amount\n{me.ids['subscription']},1.00\n".encode(), "text/csv")
        },
        "data": {"clientId": me.id},
    },
    ("GET", CSV_UPLOAD + "/{tracking_id}"): lambda me: {"path": {"tracking_id": me.ids["upload"]}},
    ("PUT", "/v1/webhooks/endpoints/{endpoint_id}"): lambda me: {"json": {"description": "Renamed"}},
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/replay"): lambda me: {
        "json": {"since": "2020-01-01T00:00:00Z"}
    },
    ("GET", "/v1/events"): lambda me: {},
    ("POST", "/v1/charges/{charge_id}/refund"): lambda me: {
        "json": {"amount": "1.00", "reason": "duplicate"}
    },
}


# Requests for one field where the operation's sample does not fit (aliases, flags the field needs).
FIELD_SAMPLES: dict[tuple[str, str, str], Sample] = {
    ("PUT", "/v1/plans", "planUid"): lambda me: {"json": {"plan": {"name": "Renamed"}}},
    ("POST", "/v1/subscriptions/verify-card", "transactionUid"): lambda me: {
        "json": {"processor": "sandbox", "cardInfo": CARD, "shouldCreateSubscription": False}
    },
    ("POST", "/v1/subscriptions/verify-card", "planUid"): lambda me: {
        "json": {
            "uid": me.ids["transaction"],
            "processor": "sandbox",
            "cardInfo": CARD,
            "shouldCreateSubscription": True,
        }
    },
}


def sample_for(target: ApiField) -> Sample | None:
    return FIELD_SAMPLES.get((target.method, target.path, target.name)) or SAMPLES.get(
        (target.method, target.path)
    )


def _put(container: dict[str, Any], dotted: str, value: str) -> None:
    """Set ``a.b`` or ``data[].subscriptionId`` (every item) in a JSON body."""
    head, _, rest = dotted.partition(".")
    if head.endswith("[]"):
        for item in container.setdefault(head[:-2], [{}]):
            _put(item, rest, value)
    elif rest:
        _put(container.setdefault(head, {}), rest, value)
    else:
        container[head] = value


def build(sample: dict[str, Any], target: ApiField, value: str) -> tuple[str, dict[str, Any]]:
    """(path, request kwargs) of ``sample`` with ``target`` set to ``value``."""
    request = copy.deepcopy(sample)
    path_values = request.pop("path", {})
    if target.location == "path":
        path_values[target.name] = value
    elif target.location == "query":
        request.setdefault("params", {})[target.name] = value
    elif target.location == "form":
        request.setdefault("data", {})[target.name] = value
    else:
        _put(request.setdefault("json", {}), target.name, value)
    path = re.sub(r"\{(\w+)\}", lambda match: path_values[match.group(1)], target.path)
    return path, request


# ---- 1b. ids in the query and the body ------------------------------------------------------------

# Resource kind each id-like query/body field names.
FIELD_KINDS = {
    "planId": "plan",
    "planUid": "plan",
    "subscriptionId": "subscription",
    "uid": "transaction",
    "transactionUid": "transaction",
    "paymentMethodId": "payment_method",
    "batchId": "batch",
    "trackingId": "upload",
}


def id_fields(app: Any) -> list[ApiField]:
    return [
        f
        for f in api_fields(app)
        if f.location != "path"
        and ID_LIKE.search(f.leaf)
        and f.leaf not in TENANT_FIELDS
        and f.leaf not in NOT_RESOURCE_FIELDS
    ]


async def test_another_clients_ids_in_queries_and_bodies_are_not_found(
    app: Any, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    uncovered: list[str] = []
    failures: list[str] = []
    for target in id_fields(app):
        kind = FIELD_KINDS.get(target.leaf)
        sample = sample_for(target)
        if kind is None or kind not in a.ids or sample is None:
            uncovered.append(f"{target} (kind {kind}, sample {'yes' if sample else 'missing'})")
            continue
        path, theirs = build(sample(b), target, a.ids[kind])
        _, missing = build(sample(b), target, missing_like(a.ids[kind]))
        got = await b.merchant.request(target.method, path, **theirs)
        expected = await b.merchant.request(target.method, path, **missing)
        if target.name.startswith("data[]"):
            # A batch answers 202 and rejects the item itself, with the code a missing id gets.
            if (
                got.status_code != 202
                or _item_codes(got) != _item_codes(expected)
                or _item_codes(got) == [None]
            ):
                failures.append(
                    f"{target}: B's item with A's id -> {got.text}; missing id -> {expected.text}"
                )
            elif got.json()["data"]["totals"]["accepted"] != 0:
                failures.append(f"{target}: an item naming A's subscription was accepted")
        elif got.status_code != 404 or answer(got) != answer(expected):
            failures.append(f"{target}: B with A's id -> {answer(got)}; missing id -> {answer(expected)}")
    assert not uncovered, (
        "id fields this sweep cannot exercise yet (extend FIELD_KINDS/SAMPLES):\n" + "\n".join(uncovered)
    )
    assert not failures, "\n".join(failures)


def _item_codes(response: Any) -> list[str | None]:
    sample = response.json().get("data", {}).get("errorsSample") or [{}]
    return [item.get("code") for item in sample]


async def test_listing_by_another_clients_cardholder_shows_nothing(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    assert a.user == b.user  # the same merchant reference on both sides names different cardholders
    mine = await b.merchant.get("/v1/subscriptions", params={"userId": a.user, "clientId": b.id})
    assert mine.status_code == 200, mine.text
    listed = {s["id"] for s in mine.json()["data"]}
    assert listed == {b.ids["subscription"]}
    plans = await b.merchant.get("/v1/plans/list")
    assert {p["id"] for p in plans.json()["data"]} == {b.ids["plan"]}


async def test_a_csv_row_naming_another_clients_subscription_is_rejected(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    rows = (
        f"subscriptionId,amount\n{a.ids['subscription']},1.00\n{missing_like(a.ids['subscription'])},1.00\n"
    )
    response = await b.merchant.post(
        CSV_UPLOAD, files={"file": ("c.csv", rows.encode(), "text/csv")}, data={"clientId": b.id}
    )
    assert response.status_code == 202, response.text
    tracking = response.json()["trackingId"]
    report = await b.merchant.get(f"{CSV_UPLOAD}/{tracking}")
    assert report.status_code == 200, report.text
    items = report.json()["data"]["items"]
    assert [item["state"] for item in items] == ["rejected", "rejected"]
    assert items[0]["code"] == items[1]["code"] == "7041"


# ---- 2. naming another client ---------------------------------------------------------------------


def tenant_fields(app: Any) -> list[ApiField]:
    return [f for f in api_fields(app) if f.leaf in TENANT_FIELDS]


async def test_naming_another_client_is_7605_wherever_a_client_is_named(
    app: Any, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    found = tenant_fields(app)
    uncovered = [str(f) for f in found if sample_for(f) is None]
    failures: list[str] = []
    for target in found:
        sample = sample_for(target)
        if sample is None:
            continue
        path, theirs = build(sample(b), target, a.id)
        got = await b.merchant.request(target.method, path, **theirs)
        if (got.status_code, code_of(got)) != (403, "7605"):
            failures.append(f"{target}: naming A -> {got.status_code} {got.text[:300]}")
            continue
        # Control: naming itself passes the check (whatever the request's own outcome).
        path, own = build(sample(b), target, b.id)
        itself = await b.merchant.request(target.method, path, **own)
        if code_of(itself) == "7605":
            failures.append(f"{target}: naming itself -> 7605 {itself.text[:300]}")
    assert not uncovered, (
        "operations naming a client that this sweep cannot build a request for (add to SAMPLES):\n"
        + "\n".join(uncovered)
    )
    assert not failures, "\n".join(failures)
    assert len(found) >= 10, [str(f) for f in found]
