"""CSV uploads that cannot hurt: a row cap, rows with control characters or card numbers rejected
(and not kept), results that a spreadsheet cannot run as formulas."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from billing.services.ondemand.csv import REFUSED_CELL
from tests.services.ondemand.test_ondemand_csv import UPLOAD, error_of, upload

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Any) -> Any:
    """Four rows per upload, so the cap is reached with a small file."""
    from billing.settings import OndemandSettings

    return settings.model_copy(update={"ondemand": OndemandSettings(csv_max_rows=4)})


async def test_a_file_over_the_row_cap_is_7022(merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    rows = "".join(f"{sub.id},1.00,\n" for _ in range(5))
    response = await upload(merchant, f"subscriptionId,amount,metadata\n{rows}".encode())
    status, code, message = error_of(response)
    assert (status, code) == (413, "7022")
    assert "more than 4 charge rows" in message
    assert "line 6" in message
    at_cap = await upload(
        merchant, f"subscriptionId,amount,metadata\n{rows[: rows.index(chr(10)) + 1] * 4}".encode()
    )
    assert at_cap.status_code == 202, at_cap.text


async def test_rows_with_control_characters_or_card_numbers_are_rejected_and_not_kept(
    merchant: Any, subscriptions: Any, runtime: Any
) -> None:
    from sqlmodel import select

    from billing.store.models import BatchItem

    sub = await subscriptions.one(merchant.id)
    content = (
        "subscriptionId,amount,metadata\n"
        f'{sub.id},1.00,"{{""note"": ""card 4242 4242 4242 4242""}}"\n'  # line 2: 7204
        f"{sub.id}\x01,1.00,\n"  # line 3: 7000
        f"{sub.id},2.00,\n"  # line 4: fine
    ).encode()
    response = await upload(merchant, content)
    assert response.status_code == 202, response.text
    tracking = response.json()["trackingId"]
    report = (await merchant.get(f"{UPLOAD}/{tracking}")).json()["data"]["items"]
    by_line = {item["index"] if "index" in item else item["line"]: item for item in report}
    assert by_line[2]["code"] == "7204"
    assert by_line[3]["code"] == "7000"
    assert by_line[4]["state"] == "queued"
    async with runtime.sessions() as session:
        kept = [item.raw for item in (await session.exec(select(BatchItem))).all()]
    text = repr(kept)
    assert "4242" not in text
    assert "\x01" not in text
    assert REFUSED_CELL in text


async def test_results_csv_neutralises_formulas(merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    content = (
        "subscriptionId,amount,metadata\n"
        "=cmd|' /C calc'!A0,1.00,\n"
        "@SUM(1+1),1.00,\n"
        f"{sub.id},-1.00,\n"
        f'{sub.id},+1,"{{""a"": 1}}"\n'
    ).encode()
    response = await upload(merchant, content)
    assert response.status_code == 202, response.text
    tracking = response.json()["trackingId"]
    download = await merchant.get(f"{UPLOAD}/{tracking}", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [row["subscriptionId"] for row in rows[:2]] == ["'=cmd|' /C calc'!A0", "'@SUM(1+1)"]
    assert [row["amount"] for row in rows[2:]] == ["'-1.00", "'+1"]
    assert rows[3]["metadata"] == '{"a": 1}'  # as uploaded
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row


async def test_a_filename_with_control_characters_is_kept_clean(merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    body = (
        b"--B\r\n"
        b'Content-Disposition: form-data; name="clientId"\r\n\r\n' + merchant.id.encode() + b"\r\n"
        b"--B\r\n"
        b'Content-Disposition: form-data; name="file"; filename="evil\x1bname\x07.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n"
        b"subscriptionId,amount\n" + sub.id.encode() + b",1.00\n\r\n"
        b"--B--\r\n"
    )
    response = await merchant.post(
        UPLOAD, content=body, headers={"Content-Type": "multipart/form-data; boundary=B"}
    )
    assert response.status_code == 202, response.text
    tracking = response.json()["trackingId"]
    report = (await merchant.get(f"{UPLOAD}/{tracking}")).json()["data"]
    assert report["filename"] == "evilname.csv"


async def test_parsing_yields_the_event_loop() -> None:
    """The parser runs in a worker thread: the loop keeps ticking while a large file is parsed."""
    import anyio

    from billing.services.ondemand.csv import parse_off_loop

    content = b"subscriptionId,amount,metadata\n" + b"sub_x,1.00,\n" * 50_000
    ticks = 0
    done = anyio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        items = await parse_off_loop(content, max_rows=50_000)
        done.set()
    assert len(items) == 50_000
    assert ticks > 1
