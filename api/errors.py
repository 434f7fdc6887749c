"""Every failure leaves in the envelope with a catalog code; nothing internal leaks out."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.enums import ParamType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import ParameterKwarg

from api.envelope import failure
from billing.domain.errors import BillingError, ErrorItem, spec
from billing.store.engine import database_unavailable

log = logging.getLogger("billing.api")


def request_id_of(request: Request[Any, Any, Any]) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    message: str,
    items: list[ErrorItem],
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body = failure(message, [item.as_dict() for item in items], request_id_of(request))
    return Response(body, status_code=status, headers=headers)


def on_billing_error(request: Request[Any, Any, Any], exc: BillingError) -> Response[dict[str, Any]]:
    # A rate limit says when to come back (api/rate_limits.py); the value is whole seconds.
    retry_after = exc.data.get("retry_after_seconds")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error_response(request, exc.status, exc.detail, exc.items(), headers)


# Pydantic names the model class when a value is not an object; the merchant sent JSON, not a class.
_NOT_AN_OBJECT = re.compile(r"Input should be a valid dictionary or instance of \w+")
# Pydantic appends the union member tried (`timestamp.int`) or a validator tag to the location.
_LOCATION_TAGS = re.compile(r"(\.(int|str|float|bool|decimal|list\[.*?\]|dict\[.*?\]|function-\w+\[.*?\]))+$")


_MISSING_PARAMETER = re.compile(r"Missing required (\w+) parameter '([^']+)'")


def _missing_query_parameters(request: Request[Any, Any, Any]) -> list[str]:
    """Every required query parameter the request lacks, in the handler's declared order.

    The framework stops at the first missing one it happens to check, which is not a stable
    order; listing them all in declaration order gives the same answer on every run.
    """
    names: list[str] = []
    handler = request.route_handler
    dependencies = handler.resolve_dependencies()
    for field in handler.parsed_fn_signature.parameters.values():
        kwarg = field.kwarg_definition
        if field.name in dependencies or not isinstance(kwarg, ParameterKwarg):
            continue
        if kwarg.param_type is not ParamType.QUERY:
            continue
        if not field.is_required:
            continue
        alias = kwarg.name or kwarg.query or field.name
        if alias not in request.query_params:
            names.append(alias)
    return names


def _merchant_field(request: Request[Any, Any, Any], key: str) -> str:
    """The name the merchant sent: the query/header name of a parameter, not its Python name."""
    key = _LOCATION_TAGS.sub("", key)
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except Exception:
        parameter = None
    definition = getattr(parameter, "kwarg_definition", None)
    for alias in ("query", "header", "cookie", "name"):
        name = getattr(definition, alias, None)
        if isinstance(name, str) and name:
            return name
    return key


def _merchant_message(message: str) -> str:
    return _NOT_AN_OBJECT.sub("must be a JSON object", message)


def _validation_items(request: Request[Any, Any, Any], exc: ValidationException) -> list[ErrorItem]:
    row = spec("CHECK_PARAMETERS")
    items: list[ErrorItem] = []
    seen: set[str] = set()
    extra = exc.extra if isinstance(exc.extra, list) else []
    for entry in extra:
        if not isinstance(entry, dict):
            continue
        key = _merchant_field(request, str(entry.get("key") or ""))
        if key in seen:  # one entry per field: the union members it failed add nothing
            continue
        seen.add(key)
        message = _merchant_message(str(entry.get("message") or row.message))
        if not key and message == "must be a JSON object":
            message = "The request body must be a JSON object."
        if key == "data" and entry.get("message") == "'data'":  # no body at all
            key, message = "", "The request body is empty: send a JSON object."
        where = f"{key}: " if key else ""
        items.append(ErrorItem(row.code, f"{where}{message}", key or None))
    if not items and (missing := _MISSING_PARAMETER.match(exc.detail or "")):
        names = (missing.group(1) == "query" and _missing_query_parameters(request)) or [missing.group(2)]
        items.extend(ErrorItem(row.code, f"{name} is required.", name) for name in names)
    if not items:
        detail = exc.detail if exc.detail and exc.detail != "Bad Request" else row.message
        items.append(ErrorItem(row.code, detail))
    return items


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if isinstance(exc, ValidationException) or status == 400:
        items = _validation_items(request, exc) if isinstance(exc, ValidationException) else []
        if not items:
            detail = (
                exc.detail if exc.detail and exc.detail != "Bad Request" else spec("CHECK_PARAMETERS").message
            )
            if "JSON" in detail or "json" in detail or "decode" in detail.lower():
                detail = "The request body is not valid JSON."
            items = [ErrorItem("7000", detail)]
        return error_response(request, 400, items[0].message, items)
    name = {
        401: "UNAUTHORIZED",
        403: "CLIENT_MISMATCH",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        413: "PAYLOAD_TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
        503: "SERVICE_UNAVAILABLE",
    }.get(status)
    if name is None:
        if status >= 500:
            return on_unexpected(request, exc)
        row = spec("CHECK_PARAMETERS")
        return error_response(request, status, exc.detail or row.message, [ErrorItem(row.code, exc.detail)])
    row = spec(name)
    message = row.message
    # 405 says which methods the path takes (RFC 9110); Litestar puts them on the exception.
    allow = {"Allow": exc.headers["allow"]} if exc.headers and "allow" in exc.headers else None
    return error_response(request, row.status, message, [ErrorItem(row.code, message)], allow)


RETRY_AFTER_SECONDS = 5


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    rid = request_id_of(request)
    if database_unavailable(exc):
        # Nothing is wrong with the request: the merchant should retry (the same Idempotency-Key
        # is safe to reuse, a 5xx released it).
        log.warning(
            "database unavailable request_id=%s method=%s path=%s",
            rid,
            request.method,
            request.url.path,
            exc_info=exc,
        )
        row = spec("SERVICE_UNAVAILABLE")
        message = f"The database is unavailable; retry in a few seconds. Request id {rid}."
        response = error_response(request, row.status, message, [ErrorItem(row.code, message)])
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    log.error(
        "unhandled error request_id=%s method=%s path=%s",
        rid,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    row = spec("CONSULT_WITH_SUPPORT")
    message = f"{row.message} Quote request id {rid}." if rid else row.message
    return error_response(request, 500, message, [ErrorItem(row.code, message)])


EXCEPTION_HANDLERS: dict[Any, Any] = {
    BillingError: on_billing_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
