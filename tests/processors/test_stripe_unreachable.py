"""When Stripe cannot answer: 5xx from a real local HTTP server, timeouts and resets via MockTransport.

A charge whose answer is lost is `unknown` (never an exception, never a decline); everything else
raises PROCESSOR_ERROR. The secret key must not show up in any error text or log line meanwhile.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from billing.domain.errors import BillingError
from billing.processors import CardInfo, Outcome, StripeProcessor

pytestmark = pytest.mark.anyio

KEY = "sk_test_must_never_leak_7f3a9c"
TOKEN = "cus_A1:pm_B2"
CARD = CardInfo(number="4242424242424242", exp_month=12, exp_year=2030, cvv="123", holder_name="Ada")


class FailingStripe(BaseHTTPRequestHandler):
    """Answers every request with the status in the server's `status` attribute."""

    def _fail(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"error": {"type": "api_error", "message": "Something went wrong on our end."}}'
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _fail

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture(params=[500, 502, 503])
def failing_stripe_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailingStripe)
    server.status = request.param  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def failing_stripe(failing_stripe_url: str) -> AsyncIterator[StripeProcessor]:
    processor = StripeProcessor(KEY, base_url=failing_stripe_url)
    yield processor
    await processor.aclose()


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert KEY[8:] not in text


def full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


# --- 5xx from a real server ------------------------------------------------------------------------


async def test_5xx_on_charge_is_unknown(
    failing_stripe: StripeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert await failing_stripe.charge(TOKEN, 1500, "USD", idempotency_key="k") == Outcome.unknown()
    assert "answered HTTP 5" in caplog.text
    assert_no_secret(caplog.text)


async def test_5xx_on_everything_else_is_a_processor_error(
    failing_stripe: StripeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    calls = [
        failing_stripe.tokenize(CARD, customer_ref="u"),
        failing_stripe.authorize(TOKEN, 100, "USD", idempotency_key="k"),
        failing_stripe.void("pi_123"),
        failing_stripe.lookup("k"),
    ]
    for call in calls:
        with pytest.raises(BillingError) as caught:
            await call
        assert (caught.value.name, caught.value.status) == ("PROCESSOR_ERROR", 502)
        assert_no_secret(str(caught.value), full_text(caught.value))
        assert CARD.number not in full_text(caught.value)
    assert_no_secret(caplog.text)
    assert CARD.number not in caplog.text


# --- timeouts and resets ---------------------------------------------------------------------------


def raising(error: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return handler


@pytest.fixture(
    params=[httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.RemoteProtocolError]
)
async def unreachable_stripe(request: pytest.FixtureRequest) -> AsyncIterator[StripeProcessor]:
    processor = StripeProcessor(KEY, transport=httpx.MockTransport(raising(request.param)))
    yield processor
    await processor.aclose()


async def test_a_charge_without_an_answer_is_unknown(
    unreachable_stripe: StripeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await unreachable_stripe.charge(TOKEN, 1500, "USD", idempotency_key="k", description="Pro")
    assert outcome == Outcome.unknown()
    assert "no answer" in caplog.text
    assert_no_secret(caplog.text)


async def test_localstripe_mode_charge_without_an_answer_is_unknown_too() -> None:
    """The pre-check listing intents can fail as well; that must not turn into an exception."""
    processor = StripeProcessor(
        KEY, localstripe=True, transport=httpx.MockTransport(raising(httpx.ReadTimeout))
    )
    try:
        assert await processor.charge(TOKEN, 1500, "USD", idempotency_key="k") == Outcome.unknown()
    finally:
        await processor.aclose()


async def test_authorize_and_lookup_without_an_answer_raise(unreachable_stripe: StripeProcessor) -> None:
    for call in (
        unreachable_stripe.authorize(TOKEN, 100, "USD", idempotency_key="k"),
        unreachable_stripe.lookup("k"),
        unreachable_stripe.tokenize(CARD, customer_ref="u"),
    ):
        with pytest.raises(BillingError) as caught:
            await call
        assert caught.value.name == "PROCESSOR_ERROR"
        assert_no_secret(full_text(caught.value))


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(429, json={"error": {"type": "rate_limit_error"}}),
        httpx.Response(409, json={"error": {"type": "idempotency_error", "code": "idempotency_key_in_use"}}),
        httpx.Response(401, json={"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}),
        httpx.Response(200, text="<html>proxy says hi</html>"),
    ],
)
async def test_answers_that_say_nothing_about_the_charge_are_unknown(answer: httpx.Response) -> None:
    """Throttled, still in flight, our credentials, or garbage: the card is not to blame."""
    processor = StripeProcessor(KEY, transport=httpx.MockTransport(lambda request: answer))
    try:
        assert await processor.charge(TOKEN, 1500, "USD", idempotency_key="k") == Outcome.unknown()
    finally:
        await processor.aclose()


async def test_the_processor_repr_hides_the_key() -> None:
    processor = StripeProcessor(KEY)
    try:
        assert_no_secret(repr(processor), repr(processor.__dict__), str(vars(processor)))
    finally:
        await processor.aclose()
