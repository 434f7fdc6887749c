"""`/pay/{reference}`: the hosted enrolment page a transaction's `URL` points at.

Server-rendered HTML for cardholders, not part of the merchant API: no token, left out of the
OpenAPI document. GET shows the plan and the card form; POST sends the card through the payment
link service (`billing.services.payment_links`), which enrols through verify-card itself.

Every answer carries a strict Content-Security-Policy (this host only, no inline script or style,
no framing), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.
The form carries a CSRF token (Litestar's CSRF middleware: a signed double-submit cookie scoped to
`/pay`); a POST without it answers 403 before any card is read. Card fields are never logged,
never written back into the page and never stored: they go to the processor and are forgotten.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from functools import cache
from importlib.resources import files
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import FromPath
from litestar.response import Template
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from billing.domain.errors import BillingError
from billing.domain.payment_links import CardForm, cardholder_message
from billing.services import payment_links
from billing.services.runtime import Runtime

PATH = "/pay"
ASSETS = f"{PATH}/assets"
_TEMPLATES = "payment_links"
FORM_MAX_BYTES = 16 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)

_ASSET_TYPES = {"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"}

# The page each catalog error shows (the rest: a refused card, shown on the form itself).
_GONE_REASONS = {
    "7801": "not_found",
    "7802": "used",
    "7803": "expired",
    "7804": "locked",
    "7805": "too_many",
    "7806": "form",
    "7807": "in_progress",
}


@cache
def texts() -> dict[str, dict[str, str]]:
    """The pages' texts by locale (api/templates/payment_links/text.toml)."""
    raw = files("api").joinpath("templates", _TEMPLATES, "text.toml").read_text(encoding="utf-8")
    return tomllib.loads(raw)


def _context(locale: str, merchant: str | None, **values: Any) -> dict[str, Any]:
    t = texts().get(locale) or texts()["es"]
    return {"t": t, "merchant": merchant or t["the_merchant"], "assets": ASSETS, **values}


def _gone(exc: BillingError) -> Template:
    locale = str(exc.data.get("locale", "es"))
    decline = exc.data.get("decline")
    return Template(
        template_name=f"{_TEMPLATES}/gone.html",
        context=_context(
            locale,
            exc.data.get("merchant"),
            reason=_GONE_REASONS.get(exc.code, "error"),
            decline=cardholder_message(str(decline), locale) if decline else None,
        ),
        status_code=exc.status if exc.code in _GONE_REASONS else 500,
    )


def _form(page: payment_links.PaymentPage, **values: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"problems": {}, "decline": None, "email": ""}
    return _context(
        page.locale, page.merchant_name, page=page, action=f"{PATH}/{page.reference}", **(defaults | values)
    )


@get("/{reference:str}", name="payment_link")
async def show_link(runtime: NamedDependency[Runtime], reference: FromPath[str]) -> Template:
    """The card form of an open link, or a page saying why it does not open (404/409/410)."""
    try:
        page = await payment_links.open_link(runtime, reference)
    except BillingError as exc:
        return _gone(exc)
    return Template(template_name=f"{_TEMPLATES}/form.html", context=_form(page))


def _card_form(form: Any) -> CardForm:
    def value(name: str) -> str:
        found = form.get(name)
        return found if isinstance(found, str) else ""

    return CardForm(
        number=value("number"),
        expiry=value("expiry"),
        cvv=value("cvv"),
        holder_name=value("holder_name"),
        email=value("email"),
    )


@post("/{reference:str}", status_code=200, request_max_body_size=FORM_MAX_BYTES)
async def submit_link(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], reference: FromPath[str]
) -> Template:
    """Send the card: the receipt (200), the form again with what to fix (400) or the decline's
    message (402), or the page of a link that no longer takes a card (403/404/409/410/429)."""
    form = _card_form(await request.form())
    address = request.client.host if request.client else "unknown"
    try:
        receipt = await payment_links.submit_card(runtime, reference=reference, form=form, address=address)
    except BillingError as exc:
        if exc.code in _GONE_REASONS or exc.name == "PROCESSOR_NOT_FOUND":
            return _gone(exc)
        # A refused card or a typing mistake: the form again, its card fields empty.
        try:
            page = await payment_links.open_link(runtime, reference)
        except BillingError as gone:  # used or locked meanwhile by another tab
            return _gone(gone)
        email = form.email.strip()
        fields = exc.data.get("fields")
        if isinstance(fields, dict):
            return Template(
                template_name=f"{_TEMPLATES}/form.html",
                context=_form(page, problems=fields, email=email),
                status_code=400,
            )
        return Template(
            template_name=f"{_TEMPLATES}/form.html",
            context=_form(page, decline=cardholder_message(exc.code, page.locale), email=email),
            status_code=exc.status,
        )
    after = runtime.settings.payment_links.return_after_seconds
    return Template(
        template_name=f"{_TEMPLATES}/receipt.html",
        context=_context(receipt.locale, receipt.merchant_name, receipt=receipt, return_after=after),
    )


@get("/assets/{name:str}", sync_to_thread=False, exclude_from_csrf=True, cache=3600)
def page_asset(name: FromPath[str]) -> Response[bytes]:
    """The page's style sheet and script (this host only: the policy allows nothing else)."""
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFoundException()
    content = files("api").joinpath("templates", _TEMPLATES, "assets", name).read_bytes()
    return Response(content, media_type=media_type)


def security_headers(app: ASGIApp) -> ASGIApp:
    """Add the page's security headers (and `no-store` to everything but the assets)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers") or []
                    if k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ]
                headers.extend(SECURITY_HEADERS)
                if not str(scope.get("path", "")).startswith(ASSETS + "/"):
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware


def csrf_secret(token_secret: str) -> str:
    """The CSRF key: derived from the engine's token secret, so every API process agrees on it."""
    return hmac.new(token_secret.encode(), b"payment-page-csrf", hashlib.sha256).hexdigest()


def csrf_protection(app: ASGIApp) -> ASGIApp:
    """Litestar's CSRF middleware, keyed once the runtime (and so the token secret) exists."""
    protected: list[CSRFMiddleware] = []

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if not protected:
            runtime: Runtime = scope["litestar_app"].state.runtime
            config = CSRFConfig(
                secret=csrf_secret(runtime.settings.jwt_secret()),
                cookie_name="paylink_csrf",
                cookie_path=PATH,
                cookie_httponly=True,
                cookie_samesite="strict",
                cookie_secure=runtime.settings.public_url.startswith("https://"),
            )
            protected.append(CSRFMiddleware(app, config))
        await protected[0](scope, receive, send)

    return middleware


def _forbidden(_: Request[Any, Any, Any], __: PermissionDeniedException) -> Template:
    """A POST without the form's CSRF token (403): a page asking to open the link again."""
    return _gone(BillingError("PAYMENT_LINK_FORM_EXPIRED"))


PAYMENT_PAGES = Router(
    path=PATH,
    route_handlers=[show_link, submit_link, page_asset],
    middleware=[security_headers, csrf_protection],
    include_in_schema=False,
    exception_handlers={PermissionDeniedException: _forbidden},
)
