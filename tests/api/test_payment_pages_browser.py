"""The payment page in a real browser: Debian's chromium driven by Playwright, against the engine
served by uvicorn on loopback, on SQLite and PostgreSQL.

Chromium is Debian's (`apt-get install chromium`; .ci/run installs it); Playwright's own browser
download is never used. Without /usr/bin/chromium these tests fail with that instruction rather
than skip: CI must not go green without them. Screenshots are kept under test-artifacts/ (or
$BILLING_TEST_ARTIFACTS); `BILLING_TEST_RECORD_SCREENSHOTS=1` also writes the ones
docs/payment-links.md shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.api.conftest import INSUFFICIENT_FUNDS, create_plan, data_of
from tests.conftest import ROOT, new_merchant, test_settings
from tests.live_engine import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

CHROMIUM = Path(os.environ.get("BILLING_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("BILLING_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "payment-pages"
RECORD = os.environ.get("BILLING_TEST_RECORD_SCREENSHOTS") == "1"


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, port: int) -> Any:
    # The receipt's automatic return waits 10 minutes here, so it never moves the page under a test
    # that is still reading the receipt (its 5-second default is checked over HTTP).
    return test_settings(
        db_url,
        tmp_path,
        server={"public_url": f"http://127.0.0.1:{port}"},
        payment_links={"return_after_seconds": 600},
    )


@pytest.fixture
async def live(app: Any, port: int) -> AsyncIterator[str]:
    """The app served by uvicorn on loopback, in this test's event loop; its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # the server's own error
            pytest.fail("uvicorn stopped before it started")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def shop(live: str, app: Any) -> AsyncIterator[Any]:
    """A sandbox merchant talking to the live server over HTTP."""
    async with httpx.AsyncClient(base_url=live) as http:
        yield await new_merchant(http, app.state.runtime, name="Acme Music")


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh chromium profile; every request the pages make is recorded in `.requests`."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the payment page tests drive Debian's chromium. Install it with "
            "`apt-get install chromium` (.ci/run does), or point BILLING_TEST_CHROMIUM at a chromium binary.",
            pytrace=False,
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
            locale="es-GT",
        )
        requests: list[tuple[str, str]] = []
        context.on("request", lambda request: requests.append((request.method, request.url)))
        context.requests = requests  # type: ignore[attr-defined]
        try:
            yield context
        finally:
            await context.close()


async def payment_link(shop: Any, **fields: Any) -> str:
    plan = await create_plan(shop, name="Premium", amount="49.90", frequency={"frequency": 30})
    body = {"amount": 1, "currency": "USD", "userId": "cardholder-1", "planUid": plan["id"], **fields}
    url: str = data_of(await shop.post("/transactions", json=body), 201)["URL"]
    return url


def png_width(path: Path) -> int:
    """The width in the PNG's header (IHDR)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int(struct.unpack(">I", data[16:20])[0])


async def screenshot(page: Any, width: int, name: str) -> Path:
    """A full-page screenshot at `width` px, after checking the form fits that width."""
    await page.set_viewport_size({"width": width, "height": 900})
    form = page.locator("#card-form")
    assert await form.is_visible()
    box = await form.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width
    assert await page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}-{width}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert png_width(path) == width
    return path


async def test_a_cardholder_subscribes_with_the_keyboard(
    shop: Any, browser: Any, live: str, backend: str
) -> None:
    link = await payment_link(shop, returnUrl=f"{live}/health")
    page = await browser.new_page()

    response = await page.goto(link)

    assert response.status == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    shots = [await screenshot(page, width, f"form-{backend}") for width in (360, 1280)]
    if RECORD and backend == "sqlite":
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        shutil.copyfile(shots[0], ROOT / "docs" / "img" / "payment-link-360.png")
        shutil.copyfile(shots[1], ROOT / "docs" / "img" / "payment-link.png")
    await page.set_viewport_size({"width": 360, "height": 800})
    # Keyboard only: Tab to the first field, type, Tab on, Enter sends.
    for _ in range(10):
        if await page.evaluate("document.activeElement && document.activeElement.id") == "number":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "number"
    for text in ("4242424242424242", "12/30", "123", "Ada Lovelace", "ada@example.com"):
        await page.keyboard.type(text)
        await page.keyboard.press("Tab")
    assert await page.input_value("#number") == "4242 4242 4242 4242"  # grouped as typed
    async with page.expect_navigation():
        await page.keyboard.press("Enter")

    subscription_id = (await page.inner_text("#subscription-id")).strip()
    await page.screenshot(path=str(ARTIFACTS / f"receipt-{backend}-360.png"), full_page=True)
    assert "4242" in await page.inner_text("#card-last4")
    assert await page.inner_text("#next-renewal")
    back = await page.get_attribute("#return", "href")
    assert back is not None
    assert back.startswith(f"{live}/health?")
    assert "status=approved" in back
    assert f"subscriptionId={subscription_id}" in back
    sub = data_of(await shop.get(f"/v1/subscriptions/detail/{subscription_id}"))
    assert (sub["status"], sub["userId"], sub["notificationEmail"]) == (
        "active",
        "cardholder-1",
        "ada@example.com",
    )

    used = await page.goto(link)
    assert used.status == 410
    assert "Este enlace ya fue usado" in await page.inner_text("h1")
    assert ("POST", link) in browser.requests
    assert all(url.startswith(f"{live}/") for _, url in browser.requests), browser.requests


async def test_a_declined_card_and_a_post_without_the_form(shop: Any, browser: Any, live: str) -> None:
    link = await payment_link(shop)
    page = await browser.new_page()
    await page.goto(link)

    # With JavaScript, a mistyped number is caught next to its field before anything is sent.
    await page.fill("#number", "4242 4242 4242 4241")
    await page.click("#submit")
    assert "no es válido" in await page.inner_text("#number-error")
    assert await page.get_attribute("#number", "aria-invalid") == "true"
    assert ("POST", link) not in browser.requests  # nothing was sent

    await page.fill("#number", INSUFFICIENT_FUNDS)
    await page.fill("#expiry", "12/30")
    await page.fill("#cvv", "123")
    await page.fill("#holder_name", "Ada Lovelace")
    await page.fill("#email", "ada@example.com")
    async with page.expect_navigation() as navigation:
        await page.click("#submit")
    declined = await navigation.value

    assert declined.status == 402
    assert "La cuenta no tiene fondos suficientes." in await page.inner_text("#decline")
    assert await page.evaluate("document.activeElement.id") == "decline"  # announced and focused
    assert await page.input_value("#number") == ""  # card fields are never sent back
    assert await page.input_value("#email") == "ada@example.com"
    listed = data_of(
        await shop.get("/v1/subscriptions", params={"userId": "cardholder-1", "clientId": shop.id})
    )
    assert listed == []

    forged = await page.request.post(
        link,
        form={
            "number": "4242424242424242",
            "expiry": "12/30",
            "cvv": "123",
            "holder_name": "A",
            "email": "a@b.co",
        },
    )
    assert forged.status == 403
    listed = data_of(
        await shop.get("/v1/subscriptions", params={"userId": "cardholder-1", "clientId": shop.id})
    )
    assert listed == []
    assert all(url.startswith(f"{live}/") for _, url in browser.requests), browser.requests
