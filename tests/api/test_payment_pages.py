"""`/pay/{reference}`: the hosted enrolment page, over HTTP (the browser tests are in
test_payment_pages_browser.py). Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from api.controllers.payment_pages import CONTENT_SECURITY_POLICY
from tests.api.conftest import GOOD_CARD, INSUFFICIENT_FUNDS, create_plan, data_of, error_of
from tests.conftest import test_settings

pytestmark = pytest.mark.anyio

DECLINED = "4000000000000002"


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Any:
    return test_settings(
        db_url,
        tmp_path,
        server={"public_url": "http://pay.example.test"},
        payment_links={"max_declines": 3, "ip_attempts": 6},
    )


async def link(merchant: Any, **fields: Any) -> dict[str, Any]:
    body = {"amount": 1, "currency": "USD", "userId": "cardholder-1", **fields}
    result: dict[str, Any] = data_of(await merchant.post("/transactions", json=body), 201)
    return result


def path_of(trx: dict[str, Any]) -> str:
    return urlsplit(trx["URL"]).path


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def card_form(number: str = GOOD_CARD, **fields: str) -> dict[str, str]:
    return {
        "number": number,
        "expiry": "12/30",
        "cvv": "123",
        "holder_name": "Ada Lovelace",
        "email": "ada@example.com",
        **fields,
    }


async def submit(client: Any, trx: dict[str, Any], form: dict[str, str]) -> Any:
    page = await client.get(path_of(trx))
    assert page.status_code == 200, page.text
    return await client.post(path_of(trx), data={"_csrf_token": csrf_of(page.text), **form})


def text_of(response: Any) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces squeezed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def test_a_transaction_answers_its_payment_link(merchant: Any) -> None:
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"], returnUrl="https://shop.example.com/done?order=7")

    assert trx["URL"] == f"http://pay.example.test/pay/{trx['reference']}"
    assert (trx["planUid"], trx["returnUrl"]) == (plan["id"], "https://shop.example.com/done?order=7")
    assert trx["expiresAt"].startswith("2026-01-22T12:00:00")  # the test clock + 7 days


async def test_plan_and_return_url_are_checked(merchant: Any, merchant_factory: Any) -> None:
    other = await merchant_factory(name="Other")
    theirs = await create_plan(other)
    quetzales = await create_plan(merchant, currency="GTQ")

    error_of(await merchant.post("/transactions", json=_body(planUid=theirs["id"])), 404, "7040", "planUid")
    error_of(
        await merchant.post("/transactions", json=_body(planUid=quetzales["id"])), 400, "7000", "planUid"
    )
    for bad in (
        "ftp://shop.example.com/",
        "/relative",
        "https://user:pw@shop.example.com/",
        "javascript:alert(1)",
    ):
        error_of(await merchant.post("/transactions", json=_body(returnUrl=bad)), 400, "7800", "returnUrl")
    data_of(await merchant.post("/transactions", json=_body(returnUrl="http://localhost:3000/ok")), 201)
    live = await merchant_factory(name="Live", environment="production")
    error_of(await live.post("/transactions", json=_body(returnUrl="http://shop.example.com/")), 400, "7800")
    data_of(await live.post("/transactions", json=_body(returnUrl="https://shop.example.com/")), 201)


def _body(**fields: Any) -> dict[str, Any]:
    return {"amount": 1, "currency": "USD", "userId": "u", **fields}


async def test_the_page_shows_the_plan_in_the_cardholders_terms(merchant: Any, client: Any) -> None:
    plan = await create_plan(merchant, amount="1250.50", name="Gold", trialDays=14)
    trx = await link(merchant, planUid=plan["id"])

    response = await client.get(path_of(trx))

    assert response.status_code == 200
    text = text_of(response)
    assert "Suscríbase a Gold" in text  # the client's locale: Spanish by default
    assert "US$1,250.50 USD" in text
    assert "cada 30 días" in text
    # The trial's end and the first charge as the engine will set them, in Guatemala's calendar.
    assert "14 días, hasta el 30 de enero de 2026" in text
    assert "Primer cobro 30 de enero de 2026" in text
    assert "4242 4242 4242 4242" in text  # a sandbox client's cardholder gets the test cards
    for name, autocomplete in [
        ("number", "cc-number"),
        ("expiry", "cc-exp"),
        ("cvv", "cc-csc"),
        ("holder_name", "cc-name"),
        ("email", "email"),
    ]:
        assert re.search(rf'<label for="{name}">', response.text), name
        assert re.search(
            rf'<input id="{name}" name="{name}"[^>]*autocomplete="{autocomplete}"', response.text
        )
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "paylink_csrf=" in response.headers["set-cookie"]
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    assert not re.search(r'(src|href)="(https?:)?//', response.text)  # nothing from another host


async def test_english_clients_and_production_clients(merchant_factory: Any, client: Any) -> None:
    live = await merchant_factory(name="Live Shop", environment="production")
    data_of(await live.put("/v1/notifications/settings", json={"locale": "en"}))
    plan = await create_plan(live, type="anniversary", frequency={"frequency": 1}, amount=500, currency="JPY")
    trx = await link(live, planUid=plan["id"], currency="JPY")

    text = text_of(await client.get(path_of(trx)))

    assert "Subscribe to Pro" in text
    assert "¥500 JPY" in text
    assert "every month" in text
    assert "First charge today" in text
    assert "4242" not in text  # no test cards for a production client's cardholder


async def test_enrolling_through_the_link(merchant: Any, client: Any) -> None:
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"], returnUrl="https://shop.example.com/done?order=7")

    response = await submit(client, trx, card_form())

    assert response.status_code == 200, text_of(response)
    subscription_id = re.search(r"(sub_[0-9A-Z]+)", response.text)
    assert subscription_id, text_of(response)
    sub = data_of(await merchant.get(f"/v1/subscriptions/detail/{subscription_id.group(1)}"))
    assert (sub["status"], sub["userId"], sub["notificationEmail"]) == (
        "active",
        "cardholder-1",
        "ada@example.com",
    )
    assert "terminada en 4242" in text_of(response)
    returned = re.search(r'id="return" href="([^"]+)"', response.text)
    assert returned
    query = parse_qs(urlsplit(unescape(returned.group(1))).query)
    assert query["order"] == ["7"]
    assert query["status"] == ["approved"]
    assert query["subscriptionId"] == [subscription_id.group(1)]
    assert query["uid"] == [trx["uid"]]
    assert '<meta http-equiv="refresh" content="5;url=https://shop.example.com/done?' in response.text
    assert GOOD_CARD not in response.text

    again = await client.get(path_of(trx))
    assert again.status_code == 410
    assert "Este enlace ya fue usado" in text_of(again)


async def test_a_link_without_a_plan_saves_the_card(merchant: Any, client: Any) -> None:
    trx = await link(merchant)

    page = await client.get(path_of(trx))
    assert "Guarde su tarjeta" in text_of(page)
    assert 'id="email"' not in page.text
    response = await submit(client, trx, card_form(email=""))

    assert response.status_code == 200, text_of(response)
    assert "Su tarjeta fue guardada" in text_of(response)
    assert "sub_" not in response.text
    listed = data_of(
        await merchant.get("/v1/subscriptions", params={"userId": "cardholder-1", "clientId": merchant.id})
    )
    assert listed == []


async def test_a_declined_card_shows_the_form_again_and_keeps_nothing(
    merchant: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"])
    caplog.set_level(logging.DEBUG)

    response = await submit(client, trx, card_form(INSUFFICIENT_FUNDS, email="ada@example.com"))

    assert response.status_code == 402
    text = text_of(response)
    assert "La cuenta no tiene fondos suficientes." in text
    assert 'role="alert"' in response.text
    assert INSUFFICIENT_FUNDS not in response.text
    assert "Ada Lovelace" not in response.text
    assert 'value="ada@example.com"' in response.text  # only the e-mail is given back
    listed = data_of(
        await merchant.get("/v1/subscriptions", params={"userId": "cardholder-1", "clientId": merchant.id})
    )
    assert listed == []
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert INSUFFICIENT_FUNDS not in logged
    assert "Ada Lovelace" not in logged
    # The link still works: a good card enrols.
    assert (await submit(client, trx, card_form())).status_code == 200


async def test_typing_mistakes_are_shown_next_to_their_fields(merchant: Any, client: Any) -> None:
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"])

    response = await submit(
        client, trx, card_form("4242424242424241", expiry="13/30", cvv="12", holder_name="", email="nope")
    )

    assert response.status_code == 400
    for field in ("number", "expiry", "cvv", "holder_name", "email"):
        assert re.search(rf'<input id="{field}"[^>]*aria-invalid="true"', response.text), field
        assert re.search(rf'<p class="field-error" id="{field}-error"[^>]*>[^<]+</p>', response.text), field
    assert "El número de tarjeta no es válido" in text_of(response)
    past = await submit(client, trx, card_form(expiry="12/25"))
    assert "Esta tarjeta está vencida." in text_of(past)


async def test_declines_lock_the_link(merchant: Any, client: Any) -> None:
    """Card testing against one link stops: after max_declines (3 here) the link takes no card."""
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"])

    first = await submit(client, trx, card_form(DECLINED))
    second = await submit(client, trx, card_form(DECLINED))
    third = await submit(client, trx, card_form(DECLINED))

    assert (first.status_code, second.status_code) == (402, 402)
    assert third.status_code == 410
    assert "Este enlace está bloqueado" in text_of(third)
    page = await client.get(path_of(trx))
    assert page.status_code == 410
    assert "bloqueado" in text_of(page)


async def test_one_address_may_submit_only_so_many_cards(merchant: Any, client: Any) -> None:
    plan = await create_plan(merchant)
    links = [await link(merchant, planUid=plan["id"], userId=f"u{i}") for i in range(4)]
    answers = []
    for trx in links:  # 2 declines per link stays under the lock; 6 attempts per address
        answers.append((await submit(client, trx, card_form(DECLINED))).status_code)
        answers.append((await submit(client, trx, card_form(DECLINED))).status_code)

    assert answers == [402] * 6 + [429, 429]
    assert "Demasiados intentos" in text_of(await submit(client, links[3], card_form()))


async def test_a_post_without_the_csrf_token_is_refused(merchant: Any, client: Any) -> None:
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"])
    await client.get(path_of(trx))  # the cookie is there; the form's token is not sent

    response = await client.post(path_of(trx), data=card_form())

    assert response.status_code == 403
    assert "Vuelva a cargar la página" in text_of(response)
    forged = await client.post(path_of(trx), data={"_csrf_token": "0" * 128, **card_form()})
    assert forged.status_code == 403
    listed = data_of(
        await merchant.get("/v1/subscriptions", params={"userId": "cardholder-1", "clientId": merchant.id})
    )
    assert listed == []


async def test_expired_and_unknown_links(merchant: Any, client: Any, clock: Any) -> None:
    plan = await create_plan(merchant)
    trx = await link(merchant, planUid=plan["id"])
    clock.advance(timedelta(days=7))

    expired = await client.get(path_of(trx))
    unknown = await client.get("/pay/TRX-0000-0000")

    assert expired.status_code == 410
    assert "Este enlace venció" in text_of(expired)
    assert unknown.status_code == 404
    assert "no encontrado" in text_of(unknown)


async def test_assets_come_from_this_host(client: Any) -> None:
    css = await client.get("/pay/assets/page.css")
    script = await client.get("/pay/assets/page.js")

    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "fetch(" not in script.text
    assert "XMLHttpRequest" not in script.text  # the script makes no request of its own
    assert (await client.get("/pay/assets/other.js")).status_code == 404


async def test_pages_stay_out_of_the_openapi_document(client: Any) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    assert not [path for path in document["paths"] if path.startswith("/pay")]
    created = document["components"]["schemas"]["TransactionOut"]["properties"]
    assert {"planUid", "returnUrl", "expiresAt", "URL"} <= set(created)


def test_both_locales_have_every_text() -> None:
    from api.controllers.payment_pages import texts

    assert set(texts()) == {"es", "en"}
    assert set(texts()["es"]) == set(texts()["en"])


def test_the_docs_show_the_page() -> None:
    from tests.api.test_payment_pages_browser import png_width
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "payment-links.md").read_text()
    for name, width in (("payment-link.png", 1280), ("payment-link-360.png", 360)):
        assert f"img/{name}" in doc
        assert png_width(ROOT / "docs" / "img" / name) == width


async def test_the_csrf_cookie_is_secure_behind_https(db_url: str, tmp_path: Any, clock: Any) -> None:
    from litestar.testing import AsyncTestClient

    from api.app import create_app

    https = test_settings(db_url, tmp_path, server={"public_url": "https://pay.example.test"})
    async with AsyncTestClient(app=create_app(https, clock=clock)) as http:
        response = await http.get("/pay/TRX-0000-0000")

    assert response.status_code == 404
    cookie = response.headers["set-cookie"].lower()
    assert "paylink_csrf=" in cookie
    assert "secure" in cookie
    assert "path=/pay" in cookie
