"""The published OpenAPI document: Litestar's paths and parameters, our models' own JSON Schemas.

Litestar derives paths, operations and query/path parameters from the route handlers. Its
schema generator does not know what our annotated wire types accept (a Decimal becomes a
string, response models lose their camelCase aliases), so the request and response bodies are
replaced by the JSON Schema pydantic derives from the very models that validate and render them
(requests in validation mode, responses in serialization mode, aliases as on the wire). Then
what every route shares is added in one place: the Bearer security scheme, the signing and
``Idempotency-Key`` headers, the error answers each kind of route can give, and examples.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from api.auth import SIGNED_METHODS, needs_auth
from api.envelope import ErrorEnvelope, failure
from api.schemas.webhooks import PublishedEvent
from api.schemas.wire import ERROR_TEXT
from billing.domain.errors import spec
from billing.services.idempotency import MAX_KEY_LENGTH

REF = "#/components/schemas/{model}"
_EXAMPLES_FILE = Path(__file__).with_name("examples.json")

BEARER = "bearerAuth"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The accessToken from POST /v1/auth/login (30 minutes); renew it with POST /v1/auth/refresh.",
    }
}

SIGNING_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-Timestamp",
        "in": "header",
        "required": False,
        "description": (
            "Unix time in seconds when the request was signed; within 5 minutes of the server's clock. "
            "Required on every write unless signing is switched off for a sandbox client (7604 without it)."
        ),
        "schema": {"type": "string", "examples": ["1767225600"]},
    },
    {
        "name": "X-Signature",
        "in": "header",
        "required": False,
        "description": (
            "Base64 Ed25519 signature of the signed message by one of the client's keys "
            "(docs/authentication.md). Required together with X-Timestamp."
        ),
        "schema": {
            "type": "string",
            "examples": [
                "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
            ],
        },
    },
    {
        "name": "X-Signature-Version",
        "in": "header",
        "required": False,
        "description": "Signing scheme of X-Signature (docs/authentication.md); absent means the body-only scheme.",
        "schema": {"type": "string", "examples": ["2"]},
    },
]
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Optional; printable ASCII. A retry with the same key and body within 24 hours replays the first answer "
        "(header Idempotent-Replayed: true); the same key with another body answers 409 (7700)."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "examples": ["order-42-attempt-1"],
    },
}
REQUEST_ID_HEADER: dict[str, Any] = {
    "description": "The request's id (yours from X-Request-Id, or ours); quoted in logs and in error answers.",
    "schema": {"type": "string"},
}
ALLOW_HEADER: dict[str, Any] = {
    "description": "The methods the path accepts.",
    "schema": {"type": "string"},
}

# A realistic code for each error status, and per-path 404 codes.
_STATUS_CODES = {
    400: "CHECK_PARAMETERS",
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_FUNDS",
    403: "CLIENT_MISMATCH",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "STATE_CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "CONSULT_WITH_SUPPORT",
    502: "PROCESSOR_ERROR",
    503: "SERVICE_UNAVAILABLE",
}
_NOT_FOUND_BY_PATH = (
    ("/v1/plans", "PLAN_NOT_FOUND"),
    ("/v1/subscriptions/payment-methods", "CARD_NOT_FOUND"),
    ("/v1/subscriptions/charges", "BATCH_NOT_FOUND"),
    ("/v1/subscriptions", "SUBSCRIPTION_NOT_FOUND"),
)
_EXTRA_TEXT = {
    405: "The path does not accept this method (7015); the Allow header lists the ones it does.",
    413: "The body is larger than the server accepts (7017).",
    415: "The body is not in a media type this operation accepts (7021); send Content-Type: application/json.",
    500: "Unexpected failure (7003); nothing internal is shown, quote the requestId.",
}
# Login and refresh have their own, strict budgets (7721); every merchant route the client's (7720).
AUTH_PATHS = frozenset({"/v1/auth/login", "/v1/auth/refresh"})
_RATE_LIMIT_TEXT = {
    True: "Too many login or refresh attempts from this address or for this client (7721); "
    "retry after Retry-After seconds.",
    False: "The client's request budget is spent (7720); retry after Retry-After seconds.",
}
RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before sending the request again.",
    "schema": {"type": "integer", "minimum": 1},
}


def _error_example(status: int, path: str) -> dict[str, Any]:
    name = _STATUS_CODES.get(status, "CHECK_PARAMETERS")
    if status == 429 and path in AUTH_PATHS:
        name = "AUTH_RATE_LIMITED"
    if status == 404:
        name = next((found for prefix, found in _NOT_FOUND_BY_PATH if path.startswith(prefix)), name)
    row = spec(name)
    entry: dict[str, Any] = {"code": row.code, "message": row.message}
    if status == 400:
        entry = {"code": row.code, "message": "plan.amount: must be a number", "field": "plan.amount"}
    return failure(entry["message"], [entry], "req_3f9c2a7b1d4e5f60")


@cache
def recorded_examples() -> dict[str, Any]:
    """Request and answer examples recorded from a real run, by operationId (see tests/contract)."""
    loaded: dict[str, Any] = json.loads(_EXAMPLES_FILE.read_text())
    return loaded


_RENAMES = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _tidy(schema: Any, named: dict[str, Any]) -> Any:
    """Standard JSON Schema keywords for pydantic's leftovers; no per-property titles.

    A schema marked ``x-component: Name`` (a shared enum such as Currency) moves to ``named``
    and is replaced by a reference, so a generated client has one type for it.
    """
    if isinstance(schema, list):
        return [_tidy(item, named) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "x-component" in schema:
        name = schema["x-component"]
        named[name] = {**{k: v for k, v in schema.items() if k != "x-component"}, "title": name}
        return _ref(name)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _drop_title(_tidy(sub, named)) for name, sub in value.items()}
        elif key in ("examples", "default", "const", "enum"):
            out[key] = value
        else:
            out[_RENAMES.get(key) or key] = _tidy(value, named)
    return out


# The edge refuses control characters in paths and queries (api/input_hygiene.py); string
# parameters say so. Body strings say it through the Text type's pattern (api/schemas/wire.py).
NO_CONTROL_PATTERN = "^[^\\x00-\\x1f\\x7f]*$"
# The same, with at least one character that is not a space (required ids and names).
NO_CONTROL_NOT_BLANK_PATTERN = "^[^\\x00-\\x1f\\x7f]*[^\\s\\x00-\\x1f\\x7f][^\\x00-\\x1f\\x7f]*$"


def _drop_title(schema: Any) -> Any:
    if isinstance(schema, dict) and "title" in schema:
        return {k: v for k, v in schema.items() if k != "title"}
    return schema


def _operations(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            for method in sorted(handler.http_methods):
                if method in ("OPTIONS", "HEAD"):
                    continue
                yield route.path_format or "/", method, handler


def _body_model(handler: HTTPRouteHandler) -> type[BaseModel] | None:
    field = handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return None
    annotation = field.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _model_of(response: ResponseSpec) -> type[BaseModel] | None:
    container = response.data_container
    return container if isinstance(container, type) and issubclass(container, BaseModel) else None


class _ContractNames(GenerateJsonSchema):
    """``Envelope[PlanOut]`` is published as ``PlanOutEnvelope``, ``Envelope[list[PlanOut]]`` as ``PlanOutListEnvelope``."""

    def normalize_name(self, name: str) -> str:
        found = _ENVELOPE_NAME.fullmatch(name)
        if found:
            return f"{found.group(2)}{'List' if found.group(1) else ''}Envelope"
        return super().normalize_name(name)


_ENVELOPE_NAME = re.compile(r"Envelope\[(list\[)?(\w+)\]?\]")


def _model_schemas(
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[Any, str], dict[str, Any]]:
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    keys, defs = models_json_schema(ordered, by_alias=True, ref_template=REF, schema_generator=_ContractNames)
    refs = {pair: value["$ref"].rsplit("/", 1)[-1] for pair, value in keys.items()}
    named: dict[str, Any] = {}
    schemas = {
        name: {**_tidy(schema, named), "title": name} for name, schema in defs.get("$defs", {}).items()
    }
    return refs, {**schemas, **named}


def _media(media_type: Any) -> str:
    return str(getattr(media_type, "value", media_type))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _error_response(status: int, path: str, description: str | None = None) -> dict[str, Any]:
    text = description or ERROR_TEXT.get(status) or _EXTRA_TEXT.get(status) or "Error"
    response: dict[str, Any] = {
        "description": text,
        "headers": {"X-Request-Id": REQUEST_ID_HEADER},
        "content": {
            "application/json": {
                "schema": _ref(ErrorEnvelope.__name__),
                "example": _error_example(status, path),
            }
        },
    }
    if status == 405:
        response["headers"]["Allow"] = ALLOW_HEADER
    if status == 429:
        response["description"] = description or _RATE_LIMIT_TEXT[path in AUTH_PATHS]
        response["headers"]["Retry-After"] = RETRY_AFTER_HEADER
    return response


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query or path value is never JSON null: ``oneOf [X, null]`` is published as X."""
    for keyword in ("oneOf", "anyOf"):
        options = [o for o in schema.get(keyword, []) if o.get("type") != "null"]
        if keyword in schema and len(options) == 1:
            rest = {k: v for k, v in schema.items() if k != keyword}
            return {**options[0], **rest}
    return schema


def _parameters(operation: dict[str, Any], extra: list[dict[str, Any]]) -> None:
    present = {(p.get("in"), p.get("name", "").lower()) for p in operation.get("parameters", [])}
    params = operation.setdefault("parameters", [])
    for parameter in extra:
        if (parameter["in"], parameter["name"].lower()) not in present:
            params.append(copy.deepcopy(parameter))


def build_contract(app: Litestar, base: dict[str, Any]) -> dict[str, Any]:
    """The published document for ``app``, from Litestar's ``base`` document."""
    document = copy.deepcopy(base)
    examples = recorded_examples()
    plan: list[tuple[str, str, HTTPRouteHandler, type[BaseModel] | None]] = []
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorEnvelope, "serialization")}
    for path, method, handler in _operations(app):
        body = _body_model(handler)
        if body is not None:
            wanted.add((body, "validation"))
        for response in (handler.responses or {}).values():
            model = _model_of(response)
            if model is not None:
                wanted.add((model, "serialization"))
        plan.append((path, method, handler, body))
    wanted.add((PublishedEvent, "serialization"))
    refs, defs = _model_schemas(wanted)
    # Events are published as the union of their typed shapes (one per type, `data` typed).
    if "EventOut" in defs:
        defs["EventOut"] = {**defs.pop(refs[(PublishedEvent, "serialization")]), "title": "EventOut"}
    components = document.setdefault("components", {})
    components["schemas"] = {**components.get("schemas", {}), **defs}
    components["securitySchemes"] = SECURITY_SCHEMES

    for path, method, handler, body in plan:
        operation = document["paths"][path][method.lower()]
        for parameter in operation.get("parameters", []):
            parameter["schema"] = _not_null(parameter.get("schema", {}))
            schema = parameter["schema"]
            if schema.get("type") == "string" and "enum" not in schema:
                if "pattern" not in schema:
                    schema["pattern"] = NO_CONTROL_PATTERN
                elif schema["pattern"] == "\\S":
                    schema["pattern"] = NO_CONTROL_NOT_BLANK_PATTERN
        operation_id = operation.get("operationId", "")
        recorded = examples.get(operation_id, {})
        merchant = needs_auth(path)
        if body is not None:
            content: dict[str, Any] = {"schema": _ref(refs[(body, "validation")])}
            if "request" in recorded:
                content["example"] = recorded["request"]
            operation["requestBody"] = {"required": True, "content": {"application/json": content}}
        responses: dict[str, Any] = {}
        for status, response in sorted((handler.responses or {}).items()):
            model = _model_of(response)
            if model is ErrorEnvelope:
                responses[str(status)] = _error_response(status, path, response.description)
                continue
            media: dict[str, Any] = {}
            if model is not None:
                media["schema"] = _ref(refs[(model, "serialization")])
            if "response" in recorded:
                media["example"] = recorded["response"]
            responses[str(status)] = {
                "description": response.description,
                "headers": {"X-Request-Id": REQUEST_ID_HEADER},
                "content": {_media(response.media_type): media},
            }
        if handler.opt.get("csv_download"):
            content = responses["200"]["content"]
            if not content.get("application/json"):
                content.pop("application/json", None)
            content["text/csv"] = {
                "schema": {"type": "string"},
                "example": "line,subscriptionId,amount,metadata,chargeId,state,code,message\n"
                "2,sub_01JH3Q9ZC0W5M1V7X8Y2K4N6P8,2.50,,chg_01JH3QA3T9K2M4N6P8R0S2T4V6,succeeded,,\n",
            }
        common = [500, 503]
        if operation.get("requestBody") or operation.get("parameters"):
            common.append(400)
        if operation.get("requestBody"):
            common += [413, 415]
        if merchant or path in AUTH_PATHS:
            common.append(429)
        if merchant:
            common.append(401)
            operation["security"] = [{BEARER: []}]
            if method in SIGNED_METHODS:
                _parameters(operation, SIGNING_HEADERS)
            if method == "POST":
                _parameters(operation, [IDEMPOTENCY_HEADER])
                common.append(409)
        for status in common:
            responses.setdefault(str(status), _error_response(status, path))
        operation["responses"] = dict(sorted(responses.items()))
    _prune(document)
    return document


def _refs_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item.rsplit("/", 1)[-1]
            else:
                yield from _refs_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs_in(item)


def _prune(document: dict[str, Any]) -> None:
    """Drop component schemas nothing refers to (Litestar's own versions of replaced models)."""
    schemas = document["components"]["schemas"]
    reachable: set[str] = set()
    pending = list(_refs_in(document["paths"]))
    while pending:
        name = pending.pop()
        if name in reachable or name not in schemas:
            continue
        reachable.add(name)
        pending.extend(_refs_in(schemas[name]))
    document["components"]["schemas"] = {name: schemas[name] for name in sorted(reachable)}
