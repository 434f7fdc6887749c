"""Payment methods over HTTP: add (token or card data), remove, set-default and the fallback cards."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.grace import GracePolicy
from billing.processors.base import CardInfo
from billing.services import payment_methods as payment_method_service
from billing.store import payment_methods as method_store
from billing.store.engine import transaction
from billing.store.ids import new_id
from billing.store.models import PaymentMethod, Subscription
from tests.api.conftest import card, create_plan, data_of, enrol, error_of

pytestmark = pytest.mark.anyio

PATH = "/v1/subscriptions/payment-methods"


@pytest.fixture
async def enrolled(merchant: Any) -> dict[str, Any]:
    """An active subscription of user-1 with its one card."""
    plan = await create_plan(merchant)
    subscription: dict[str, Any] = (await enrol(merchant, plan["id"]))["subscription"]
    return subscription


async def _add(merchant: Any, user: str = "user-1", **tokenize: Any) -> dict[str, Any]:
    body = {"tokenizeData": {"userId": user, "clientId": merchant.id, "processorId": "sandbox", **tokenize}}
    method: dict[str, Any] = data_of(await merchant.post(PATH, json=body), 201)
    return method


async def _detail(merchant: Any, subscription_id: str) -> dict[str, Any]:
    found: dict[str, Any] = data_of(await merchant.get(f"/v1/subscriptions/detail/{subscription_id}"))
    return found


async def test_a_card_added_backs_no_subscription_unless_fallback_for_names_it(
    merchant: Any, enrolled: dict[str, Any]
) -> None:
    added = await _add(merchant, cardInfo=card("5555555555554444"), alias="spare")

    assert (added["brand"], added["last4"], added["alias"], added["status"]) == (
        "mastercard",
        "4444",
        "spare",
        "active",
    )
    detail = await _detail(merchant, enrolled["id"])
    assert detail["paymentMethodIds"] == [enrolled["defaultPaymentMethodId"]]
    assert detail["fallbackCards"] == []

    backup = await _add(
        merchant, cardInfo=card("4000056655665556"), alias="backup", fallbackFor=[enrolled["id"]]
    )
    detail = await _detail(merchant, enrolled["id"])
    assert detail["paymentMethodIds"] == [enrolled["defaultPaymentMethodId"], backup["id"]]
    assert detail["fallbackCards"] == [backup]
    assert (backup["last4"], backup["alias"]) == ("5556", "backup")


async def test_fallback_for_names_active_subscriptions_of_the_same_cardholder(
    merchant: Any, merchant_factory: Any, enrolled: dict[str, Any], runtime: Any
) -> None:
    other = await merchant_factory(name="Other")
    body = {"userId": "user-1", "clientId": merchant.id, "processorId": "sandbox", "cardInfo": card()}

    field = "tokenizeData.fallbackFor"
    response = await merchant.post(PATH, json={"tokenizeData": {**body, "fallbackFor": ["sub_missing"]}})
    error_of(response, 404, "7041", field)
    response = await merchant.post(
        PATH, json={"tokenizeData": {**body, "userId": "user-2", "fallbackFor": [enrolled["id"]]}}
    )
    error_of(response, 400, "7000", field)
    other_body = {**body, "clientId": other.id, "fallbackFor": [enrolled["id"]]}
    response = await other.post(PATH, json={"tokenizeData": other_body})
    error_of(response, 404, "7041", field)
    data_of(await merchant.delete(f"/v1/subscriptions/{enrolled['id']}"))
    response = await merchant.post(PATH, json={"tokenizeData": {**body, "fallbackFor": [enrolled["id"]]}})
    error_of(response, 409, "7050", field)
    async with runtime.sessions() as session:
        cards = (await session.exec(select(PaymentMethod))).all()
    assert [c.id for c in cards] == [enrolled["defaultPaymentMethodId"]]  # nothing else was saved


async def test_a_card_added_with_a_processor_token(merchant: Any, runtime: Any) -> None:
    token = await runtime.processors["sandbox"].tokenize(
        CardInfo("4242424242424242", 12, 2030, "123", "Ada"), customer_ref="x"
    )

    added = await _add(merchant, cardId=token.token)

    async with runtime.sessions() as session:
        row = await session.get(PaymentMethod, added["id"])
    assert row is not None
    assert row.token == token.token
    assert "token" not in added
    assert "cardId" not in added


@pytest.mark.parametrize(
    ("tokenize", "status", "code", "field"),
    [
        ({}, 400, "7000", "tokenizeData.cardId"),
        ({"cardId": "tok_x", "cardInfo": card()}, 400, "7000", "tokenizeData.cardId"),
        ({"cardId": "4242424242424242"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "4242 4242 4242 4242"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "tok_x", "processorId": "fac-2"}, 404, "7005", "tokenizeData.processorId"),
        ({"cardId": "tok_x", "processorId": None}, 400, "7000", "tokenizeData.processorId"),
        ({"cardId": "tok_x", "userId": None}, 400, "7000", "tokenizeData.userId"),
        ({"cardId": "tok_x", "clientId": "cli_other"}, 403, "7605", "tokenizeData.clientId"),
        ({"cardInfo": {**card(), "expYear": 2020}}, 402, "7202", "tokenizeData.cardInfo.expYear"),
        ({"cardInfo": {**card(), "cvv": 123}}, 400, "7000", "tokenizeData.cardInfo.cvv"),
        # Not the processor's token shape, or a card number however it is spelled: never stored.
        ({"cardId": "tok_x"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "cus_A1:pm_B2"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "4242.4242.4242.4242"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "4242424242424242/123"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "pan=4242424242424242"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "tok_sbx_approve_4242424242424242"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "tok_sbx_approve_4242.4242.4242.4242"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardId": "42424242424\u00b2"}, 400, "7204", "tokenizeData.cardId"),
        ({"cardInfo": card("424242424242424\u00b2")}, 400, "7204", "tokenizeData.cardInfo.number"),
        ({"cardInfo": {**card(), "expYear": 2**40}}, 400, "7000", "tokenizeData.cardInfo.expYear"),
        ({"cardInfo": {**card(), "expMonth": 13}}, 400, "7000", "tokenizeData.cardInfo.expMonth"),
    ],
)
async def test_bad_additions(
    merchant: Any, runtime: Any, tokenize: dict[str, Any], status: int, code: str, field: str
) -> None:
    data = {"userId": "user-1", "clientId": merchant.id, "processorId": "sandbox", **tokenize}
    data = {k: v for k, v in data.items() if v is not None}

    error_of(await merchant.post(PATH, json={"tokenizeData": data}), status, code, field)
    answer = (await merchant.post(PATH, json={"tokenizeData": data})).text
    assert "42424242" not in answer.replace(" ", "").replace(".", "")
    async with runtime.sessions() as session:
        assert (await session.exec(select(PaymentMethod))).all() == []


async def test_the_store_never_writes_a_token_that_may_hold_a_card_number(
    merchant: Any, runtime: Any
) -> None:
    """The last line behind the 7204 checks: whatever path a token comes by."""
    method = PaymentMethod(
        id=new_id("payment_method"),
        client_id=merchant.id,
        user_id="user-1",
        processor="sandbox",
        token="tok_sbx_approve_4242-4242-4242-4242",
        created_at=runtime.clock.now(),
    )
    with pytest.raises(ValueError, match="card number"):
        async with transaction(runtime.sessions) as session:
            await method_store.add_payment_method(session, method)
    async with runtime.sessions() as session:
        assert (await session.exec(select(PaymentMethod))).all() == []


async def test_set_default_drops_the_replaced_card_unless_kept_as_fallback(
    merchant: Any, enrolled: dict[str, Any]
) -> None:
    first = enrolled["defaultPaymentMethodId"]
    second = await _add(merchant, cardInfo=card("5555555555554444"), fallbackFor=[enrolled["id"]])
    third = await _add(merchant, cardInfo=card("4000056655665556"))
    fourth = await _add(merchant, cardInfo=card("2223003122003222"))
    url = f"{PATH}/set-default"

    kept = data_of(
        await merchant.put(
            url,
            json={"subscriptionId": enrolled["id"], "paymentMethodId": third["id"], "keepAsFallback": True},
        )
    )
    assert kept["defaultPaymentMethodId"] == third["id"]
    assert kept["paymentMethodIds"] == [third["id"], first, second["id"]]
    assert [c["id"] for c in kept["fallbackCards"]] == [first, second["id"]]

    dropped = data_of(
        await merchant.put(url, json={"subscriptionId": enrolled["id"], "paymentMethodId": fourth["id"]})
    )
    assert dropped["paymentMethodIds"] == [fourth["id"], first, second["id"]]

    promoted = data_of(
        await merchant.put(url, json={"subscriptionId": enrolled["id"], "paymentMethodId": second["id"]})
    )
    assert promoted["paymentMethodIds"] == [second["id"], first]


async def test_set_default_during_grace_asks_for_a_retry_now(
    merchant: Any, enrolled: dict[str, Any], runtime: Any
) -> None:
    now = runtime.clock.now()
    await _in_grace(runtime, enrolled["id"])
    new_card = await _add(merchant, cardInfo=card("5555555555554444"))

    data_of(
        await merchant.put(
            f"{PATH}/set-default", json={"subscriptionId": enrolled["id"], "paymentMethodId": new_card["id"]}
        )
    )

    async with runtime.sessions() as session:
        row = await session.get(Subscription, enrolled["id"])
    assert row is not None
    assert row.next_attempt_at == row.grace_retry_at == now
    assert row.default_payment_method_id == new_card["id"]


async def _in_grace(runtime: Any, subscription_id: str) -> Subscription:
    """Put the subscription in a grace episode whose next retry is due in 23 hours."""
    now = runtime.clock.now()
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Subscription, subscription_id)
        assert row is not None
        row.renewal_status = "in_grace"
        row.grace_started_at = now - timedelta(hours=1)
        row.grace_attempts = 1
        row.grace_policy = GracePolicy(attempts=3, interval_hours=24).to_snapshot()
        row.grace_retry_at = row.next_attempt_at = now + timedelta(hours=23)
    return row


@pytest.mark.parametrize("meanwhile", ["the retry succeeded", "a new episode began"])
async def test_set_default_does_not_make_a_subscription_due_that_left_the_episode_it_read(
    merchant: Any,
    enrolled: dict[str, Any],
    runtime: Any,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: str,
) -> None:
    """Between set-default reading the subscription and writing to it, the worker commits a
    change of episode. "Due now" would then charge the next period at once."""
    read = await _in_grace(runtime, enrolled["id"])
    new_card = await _add(merchant, cardInfo=card("5555555555554444"))
    now = runtime.clock.now()
    next_period_due = now + timedelta(days=30)
    real_load_client = payment_method_service.load_client

    async def worker_commits_meanwhile(session: Any, client_id: str) -> Any:
        async with runtime.sessions() as other, other.begin():
            row = await other.get(Subscription, enrolled["id"])
            assert row is not None
            if meanwhile == "the retry succeeded":
                row.renewal_status, row.grace_started_at, row.grace_retry_at = "current", None, None
                row.period_index += 1
                row.next_attempt_at = next_period_due
            else:
                assert read.grace_started_at is not None
                row.grace_started_at = read.grace_started_at + timedelta(minutes=5)
                row.grace_retry_at = row.next_attempt_at = next_period_due
        return await real_load_client(session, client_id)

    monkeypatch.setattr(payment_method_service, "load_client", worker_commits_meanwhile)
    data_of(
        await merchant.put(
            f"{PATH}/set-default", json={"subscriptionId": enrolled["id"], "paymentMethodId": new_card["id"]}
        )
    )

    async with runtime.sessions() as session:
        row = await session.get(Subscription, enrolled["id"])
    assert row is not None
    assert row.default_payment_method_id == new_card["id"]
    assert row.next_attempt_at == next_period_due


async def test_bad_set_default_calls(merchant: Any, merchant_factory: Any, enrolled: dict[str, Any]) -> None:
    someone_elses = await _add(merchant, user="user-2", cardInfo=card())
    mine = enrolled["defaultPaymentMethodId"]
    url = f"{PATH}/set-default"

    error_of(
        await merchant.put(url, json={"subscriptionId": "sub_missing", "paymentMethodId": mine}), 404, "7041"
    )
    response = await merchant.put(
        url, json={"subscriptionId": enrolled["id"], "paymentMethodId": "pm_missing"}
    )
    error_of(response, 404, "7200", "paymentMethodId")
    response = await merchant.put(
        url, json={"subscriptionId": enrolled["id"], "paymentMethodId": someone_elses["id"]}
    )
    error_of(response, 404, "7200", "paymentMethodId")
    error_of(await merchant.put(url, json={"subscriptionId": enrolled["id"]}), 400, "7000", "paymentMethodId")
    other = await merchant_factory(name="Other")
    response = await other.put(url, json={"subscriptionId": enrolled["id"], "paymentMethodId": mine})
    error_of(response, 404, "7041")
    data_of(await merchant.delete(f"/v1/subscriptions/{enrolled['id']}"))
    response = await merchant.put(url, json={"subscriptionId": enrolled["id"], "paymentMethodId": mine})
    error_of(response, 409, "7050")


async def test_the_only_card_of_an_active_subscription_cannot_be_removed(
    merchant: Any, enrolled: dict[str, Any]
) -> None:
    only = enrolled["defaultPaymentMethodId"]

    error_of(await merchant.delete(PATH, json={"paymentMethodId": only}), 409, "7051", "paymentMethodId")
    data_of(await merchant.delete(f"/v1/subscriptions/{enrolled['id']}"))
    removed = data_of(
        await merchant.delete(PATH, json={"paymentMethodId": only})
    )  # nothing active depends on it
    assert removed["status"] == "removed"


async def test_removing_the_default_moves_the_subscription_to_its_first_fallback(
    merchant: Any, enrolled: dict[str, Any]
) -> None:
    old_default = enrolled["defaultPaymentMethodId"]
    unattached = await _add(merchant, cardInfo=card("4000056655665556"))
    backup = await _add(merchant, cardInfo=card("5555555555554444"), fallbackFor=[enrolled["id"]])

    data_of(await merchant.delete(PATH, json={"paymentMethodId": old_default, "userId": "user-1"}))

    detail = await _detail(merchant, enrolled["id"])
    assert (detail["defaultPaymentMethodId"], detail["paymentMethodIds"]) == (backup["id"], [backup["id"]])
    error_of(await merchant.delete(PATH, json={"paymentMethodId": old_default}), 404, "7200")
    # The cardholder's other card does not back the subscription, so its last card cannot go.
    response = await merchant.delete(PATH, json={"paymentMethodId": backup["id"]})
    error_of(response, 409, "7051", "paymentMethodId")
    data_of(await merchant.delete(PATH, json={"paymentMethodId": unattached["id"]}))


async def test_bad_removals(merchant: Any, merchant_factory: Any, enrolled: dict[str, Any]) -> None:
    card_id = enrolled["defaultPaymentMethodId"]
    other = await merchant_factory(name="Other")

    error_of(await merchant.delete(PATH, json={"paymentMethodId": "pm_missing"}), 404, "7200")
    error_of(await merchant.delete(PATH, json={}), 400, "7000", "paymentMethodId")
    error_of(await merchant.delete(PATH, json={"paymentMethodId": card_id, "userId": "user-2"}), 404, "7200")
    error_of(await merchant.delete(PATH, json={"paymentMethodId": card_id, "clientId": "cli_x"}), 403, "7605")
    error_of(await other.delete(PATH, json={"paymentMethodId": card_id}), 404, "7200")


async def test_concurrent_set_defaults_leave_one_consistent_list(
    merchant: Any, enrolled: dict[str, Any], runtime: Any
) -> None:
    """Two set-defaults on one subscription at once: one goes after the other (the cardholder's
    lock), never a mix of both lists or a duplicate key."""
    first = enrolled["defaultPaymentMethodId"]
    x = (await _add(merchant, cardInfo=card("5555555555554444")))["id"]
    y = (await _add(merchant, cardInfo=card("4000056655665556")))["id"]

    async def set_default(method_id: str) -> None:
        async with transaction(runtime.sessions) as session:
            await payment_method_service.set_default_payment_method(
                session,
                runtime.clock,
                client_id=merchant.id,
                subscription_id=enrolled["id"],
                method_id=method_id,
                keep_as_fallback=True,
            )

    await asyncio.gather(set_default(x), set_default(y))

    detail = await _detail(merchant, enrolled["id"])
    assert detail["paymentMethodIds"] in ([y, x, first], [x, y, first])
    assert detail["defaultPaymentMethodId"] == detail["paymentMethodIds"][0]
