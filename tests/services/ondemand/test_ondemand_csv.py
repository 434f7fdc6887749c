"""CSV uploads through HTTP: the file is refused whole only when it is not a charges CSV at all."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from billing.services.ondemand.csv import CSV_MAX_BYTES

pytestmark = pytest.mark.anyio

UPLOAD = "/v1/subscriptions/charges/upload-csv"


async def upload(
    merchant: Any, content: bytes, *, client_id: str | None = "self", in_query: bool = False
) -> Any:
    form: dict[str, str] = {}
    params: dict[str, str] = {}
    if client_id is not None:
        value = merchant.id if client_id == "self" else client_id
        (params if in_query else form)["clientId"] = value
    return await merchant.post(
        UPLOAD, files={"file": ("charges.csv", content, "text/csv")}, data=form or None, params=params or None
    )


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["errors"][0]["code"], body["errors"][0]["message"]


async def test_upload_is_received_with_a_top_level_tracking_id(merchant: Any, subscriptions: Any) -> None:
    """Migo's shape: 202 {success, message, trackingId}; good and bad rows are told apart by line."""
    good, other_good = await subscriptions.make(merchant.id, count=2)
    content = (
        "subscriptionId,amount,metadata\n"
        f"{good.id},15.00,\n"  # line 2
        f'{other_good.id},49.99,"{{""note"": ""Metered usage""}}"\n'  # line 3
        "sub_unknown,1.00,\n"  # line 4: 7041
        f"{good.id},1.001,\n"  # line 5: 7002
        f"{good.id},abc,\n"  # line 6: 7002
        f"{good.id},2.00,not json\n"  # line 7: 7000
        f"{good.id},2.00,[1]\n"  # line 8: 7000 (not an object)
        f"{good.id},2.00,{{}},extra\n"  # line 9: 7000 (too many columns)
        "\n"  # line 10: blank, ignored
        f"{good.id},0,\n"  # line 11: 7001
        f"{good.id}\n"  # line 12: 7000 (amount missing)
    ).encode()
    response = await upload(merchant, content)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "File received"
    tracking_id = body["trackingId"]
    assert isinstance(tracking_id, str)
    assert len(tracking_id) == 21
    assert body["data"]["totals"]["received"] == 10
    assert body["data"]["totals"]["accepted"] == 2
    sample = {entry["line"]: entry["code"] for entry in body["data"]["errorsSample"]}
    assert sample == {
        4: "7041",
        5: "7002",
        6: "7002",
        7: "7000",
        8: "7000",
        9: "7000",
        11: "7001",
        12: "7000",
    }

    status = await merchant.get(f"{UPLOAD}/{tracking_id}")
    assert status.status_code == 200, status.text
    data = status.json()["data"]
    assert data["trackingId"] == tracking_id
    assert data["source"] == "csv"
    assert data["filename"] == "charges.csv"
    rows = {item["line"]: item for item in data["items"]}
    assert sorted(rows) == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    assert rows[2]["state"] == "queued"
    assert rows[3]["metadata"] == {"note": "Metered usage"}
    assert rows[4]["state"] == "rejected"
    assert rows[4]["code"] == "7041"
    assert rows[9]["input"]["extra"] == ["extra"]
    assert "columns" in rows[9]["message"]


async def test_client_id_may_come_in_the_query(merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    response = await upload(merchant, f"subscriptionId,amount\n{sub.id},3.00\n".encode(), in_query=True)
    assert response.status_code == 202, response.text
    assert response.json()["data"]["totals"]["accepted"] == 1


async def test_client_id_is_required(merchant: Any) -> None:
    response = await upload(merchant, b"subscriptionId,amount\nsub_x,1\n", client_id=None)
    status, code, message = error_of(response)
    assert (status, code) == (400, "7000")
    assert "clientId" in message


@pytest.mark.parametrize("in_query", [False, True], ids=["form", "query"])
async def test_another_client_id_is_forbidden(merchant: Any, merchant_factory: Any, in_query: bool) -> None:
    other = await merchant_factory(name="Other")
    response = await upload(
        merchant, b"subscriptionId,amount\nsub_x,1\n", client_id=other.id, in_query=in_query
    )
    assert error_of(response)[:2] == (403, "7605")


async def test_missing_file_field_is_a_400(merchant: Any) -> None:
    response = await merchant.post(UPLOAD, data={"clientId": merchant.id})
    assert error_of(response)[:2] == (400, "7000")


def padded(size: int, head: str) -> bytes:
    """A charges CSV of exactly ``size`` bytes: ``head`` then blank lines (which carry no charge)."""
    body = head.encode()
    return body + b"\n" * (size - len(body))


async def test_a_file_of_exactly_10_mb_is_accepted(merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    response = await upload(merchant, padded(CSV_MAX_BYTES, f"subscriptionId,amount\n{sub.id},1.00\n"))
    assert response.status_code == 202, response.text
    assert response.json()["data"]["totals"]["accepted"] == 1


@pytest.mark.parametrize("extra", [1, 2 * 1024 * 1024], ids=["one-byte-over", "two-mb-over"])
async def test_a_file_over_10_mb_is_413(merchant: Any, extra: int) -> None:
    """Just over the limit is caught on the file's real size; far over, while reading the body."""
    response = await upload(merchant, padded(CSV_MAX_BYTES + extra, "subscriptionId,amount\nsub_x,1.00\n"))
    status, code, _ = error_of(response)
    assert (status, code) == (413, "7017")


async def test_content_length_is_not_trusted(merchant: Any) -> None:
    """A body that claims to be small but is not is refused on the bytes actually received (7017)."""
    content = padded(CSV_MAX_BYTES + 200_000, "subscriptionId,amount\nsub_x,1.00\n")
    response = await merchant.post(
        UPLOAD,
        files={"file": ("c.csv", content, "text/csv")},
        data={"clientId": merchant.id},
        headers={"Content-Length": "1000"},
    )
    assert error_of(response)[:2] == (413, "7017")


@pytest.mark.parametrize(
    ("content", "line", "hint"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", 1, "UTF-8"),
        (b"subscriptionId,amount\nsub_a,1.00\n\x00\x01binary", 3, "binary"),
        (b"subscriptionId,amount\nsub_a,1.00\nsub_b,\xff\xfe\n", 3, "UTF-8"),
        (b"sub_a,1.00\nsub_b,2.00\n", 1, "header"),
        (b"\n\nsubscriptionId,amount,colour\nsub_a,1.00,red\n", 3, "colour"),
        (b"amount,metadata\n1.00,\n", 1, "subscriptionId"),
        (b"subscriptionId,amount,amount\nsub_a,1,2\n", 1, "twice"),
        (b"", 1, "empty"),
        (b"subscriptionId,amount,metadata\n", 2, "no charges"),
        (b'subscriptionId,amount\nsub_a,1.00\nsub_b,"2.00\n', 3, "CSV"),
        (b'{"subscriptionId": "sub_a", "amount": 1}\n', 1, "header"),
    ],
    ids=[
        "png",
        "nul-bytes",
        "bad-utf8",
        "no-header",
        "unknown-column",
        "missing-column",
        "duplicate-column",
        "empty",
        "header-only",
        "unclosed-quote",
        "json",
    ],
)
async def test_unreadable_files_are_refused_with_the_line(
    merchant: Any, content: bytes, line: int, hint: str
) -> None:
    status, code, message = error_of(await upload(merchant, content))
    assert (status, code) == (400, "7018")
    assert message.startswith(f"line {line}:"), message
    assert hint in message


async def test_header_is_case_and_space_tolerant_and_metadata_optional(
    merchant: Any, subscriptions: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    content = f"\ufeff SubscriptionID , AMOUNT \r\n{sub.id}, 7.50 \r\n".encode()
    response = await upload(merchant, content)
    assert response.status_code == 202, response.text
    assert response.json()["data"]["totals"]["accepted"] == 1


async def test_results_download_as_csv(merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    content = f'subscriptionId,amount,metadata\n{sub.id},5.00,"{{""a"":1}}"\nsub_gone,1.00,\n'.encode()
    tracking_id = (await upload(merchant, content)).json()["trackingId"]
    response = await merchant.get(f"{UPLOAD}/{tracking_id}", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv"), response.text
    assert tracking_id in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "line",
        "subscriptionId",
        "amount",
        "metadata",
        "chargeId",
        "state",
        "code",
        "message",
    ]
    assert rows[0]["line"] == "2"
    assert rows[0]["subscriptionId"] == sub.id
    assert rows[0]["amount"] == "5.00"
    assert rows[0]["metadata"] == '{"a":1}'
    assert rows[0]["state"] == "queued"
    assert rows[1] == {
        "line": "3",
        "subscriptionId": "sub_gone",
        "amount": "1.00",
        "metadata": "",
        "chargeId": "",
        "state": "rejected",
        "code": "7041",
        "message": "Subscription sub_gone not found.",
    }
    bad_format = await merchant.get(f"{UPLOAD}/{tracking_id}", params={"format": "xml"})
    assert error_of(bad_format)[:2] == (400, "7000")


async def test_another_clients_upload_is_not_found(
    merchant: Any, merchant_factory: Any, subscriptions: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    tracking_id = (await upload(merchant, f"subscriptionId,amount\n{sub.id},1\n".encode())).json()[
        "trackingId"
    ]
    other = await merchant_factory(name="Other")
    for who, path in ((other, f"{UPLOAD}/{tracking_id}"), (merchant, f"{UPLOAD}/nosuchtracking")):
        for params in (None, {"format": "csv"}):
            assert error_of(await who.get(path, params=params))[:2] == (404, "7043")
