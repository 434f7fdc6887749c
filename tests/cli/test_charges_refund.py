"""`billing charges refund`: the operator's refund, with the API's rules, against the test database.

The command runs in this process (in a thread, with its own event loop and engine) so that it
refunds through the test's sandbox, whose in-memory ledger knows the charge.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from click.testing import CliRunner

import billing.cli.charges as charges_cli
from billing.cli import cli
from billing.services.runtime import build_runtime
from tests.api.conftest import create_plan, data_of, enrol

pytestmark = pytest.mark.anyio


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch, db_url: str, runtime: Any) -> Any:
    """`await operator(*args)` runs `billing charges ...` and returns (exit code, output)."""
    monkeypatch.setenv("BILLING_DATABASE__URL", db_url)
    monkeypatch.setenv("BILLING_LOG_LEVEL", "WARNING")
    monkeypatch.setattr(
        charges_cli,
        "build_runtime",
        lambda settings, clock: build_runtime(settings, clock, processors=dict(runtime.processors)),
    )

    async def run(*args: str) -> tuple[int, str]:
        result = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(cli, ["charges", *args]))
        return result.exit_code, result.output

    return run


async def test_the_operator_refunds_part_then_the_rest_and_no_more(merchant: Any, operator: Any) -> None:
    plan = await create_plan(merchant, amount="29.90")
    charge_id = (await enrol(merchant, plan["id"]))["charge"]["id"]

    code, out = await operator("refund", charge_id, "--amount", "5.00", "--reason", "duplicate")
    assert code == 0, out
    assert "(refund) of 5.00 USD: succeeded." in out
    assert f"Charge {charge_id}: 5.00 refunded, 24.90 still refundable." in out

    code, out = await operator("refund", charge_id, "--amount", "24.91")
    assert code == 1
    assert "7061" in out
    code, out = await operator("refund", charge_id)
    assert code == 0, out
    assert f"Charge {charge_id}: 29.90 refunded, 0.00 still refundable." in out

    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert [(r["amount"], r["reason"]) for r in detail["refunds"]] == [(5.0, "duplicate"), (24.9, None)]


async def test_bad_input_and_unknown_charges_exit_1_with_the_catalog_code(operator: Any) -> None:
    code, out = await operator("refund", "chg_01JZZZZZZZZZZZZZZZZZZZZZZZ")
    assert (code, "7044" in out) == (1, True)
    code, out = await operator("refund", "chg_01JZZZZZZZZZZZZZZZZZZZZZZZ", "--amount", "ten")
    assert (code, "7002" in out) == (1, True)
