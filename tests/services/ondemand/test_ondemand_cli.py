"""`billing charges upload`: the operator's way in, run as a real command against the test database."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from billing.processors.sandbox import SandboxScenario

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


async def billing_cli(db_url: str, cwd: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update(
        BILLING_CONFIG=str(ROOT / "config" / "billing.toml"),
        BILLING_DATABASE__URL=db_url,
        BILLING_DATA_DIR=str(cwd),
        BILLING_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing.cli",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_upload_charges_and_follows_to_the_end(
    merchant: Any, subscriptions: Any, db_url: str, tmp_path: Path
) -> None:
    good = await subscriptions.one(merchant.id)
    poor = await subscriptions.one(merchant.id, cards=[SandboxScenario.INSUFFICIENT_FUNDS])
    charges = tmp_path / "charges.csv"
    charges.write_text(
        "subscriptionId,amount,metadata\n"
        f'{good.id},12.00,"{{""note"": ""add-on""}}"\n'
        f"{poor.id},3.00,\n"
        "sub_nobody,1.00,\n"
        f"{good.id},1.50,\n"
    )
    results = tmp_path / "results.csv"
    code, out, err = await billing_cli(
        db_url,
        tmp_path,
        "charges",
        "upload",
        str(charges),
        "--client",
        merchant.id,
        "--results",
        str(results),
    )
    assert code == 0, err
    assert "4 rows, 3 accepted, 1 rejected" in out
    assert "line 4: 7041" in err
    assert "completed: 2 succeeded, 1 failed, 1 rejected, 0 in progress (of 4 rows)." in out
    rows = list(csv.DictReader(results.open()))
    assert [(r["line"], r["state"], r["code"]) for r in rows] == [
        ("2", "succeeded", ""),
        ("3", "failed", "7303"),
        ("4", "rejected", "7041"),
        ("5", "succeeded", ""),
    ]
    assert rows[0]["chargeId"].startswith("chg_")
    assert rows[0]["metadata"] == '{"note": "add-on"}'


async def test_upload_without_waiting_leaves_the_batch_to_the_workers(
    merchant: Any, subscriptions: Any, db_url: str, tmp_path: Path
) -> None:
    sub = await subscriptions.one(merchant.id)
    charges = tmp_path / "charges.csv"
    charges.write_text(f"subscriptionId,amount\n{sub.id},2.00\n")
    code, out, err = await billing_cli(
        db_url, tmp_path, "charges", "upload", str(charges), "--client", merchant.id, "--no-wait"
    )
    assert code == 0, err
    assert "queued: 0 succeeded, 0 failed, 0 rejected, 1 in progress" in out
    assert "upload-csv/" in out


@pytest.mark.parametrize(
    ("content", "client_id", "expected"),
    [
        ("subscriptionId,amount\nsub_x,1.00\n", "cli_nobody", "7046"),
        ("sub_x,1.00\n", None, "7018 line 1:"),
    ],
    ids=["unknown-client", "no-header"],
)
async def test_upload_refusals_exit_with_the_catalog_code(
    merchant: Any, db_url: str, tmp_path: Path, content: str, client_id: str | None, expected: str
) -> None:
    charges = tmp_path / "charges.csv"
    charges.write_text(content)
    code, _, err = await billing_cli(
        db_url, tmp_path, "charges", "upload", str(charges), "--client", client_id or merchant.id
    )
    assert code == 1
    assert f"error: {expected}" in err


async def test_upload_can_follow_a_running_worker_instead_of_charging(
    merchant: Any, subscriptions: Any, runtime: Any, db_url: str, tmp_path: Path
) -> None:
    """With --no-drain the command only watches; here the test plays the running worker."""
    from billing.services.ondemand import OnDemandPass

    subs = await subscriptions.make(merchant.id, count=3)
    charges = tmp_path / "charges.csv"
    charges.write_text("subscriptionId,amount\n" + "".join(f"{s.id},4.00\n" for s in subs))
    command = asyncio.create_task(
        billing_cli(
            db_url, tmp_path, "charges", "upload", str(charges), "--client", merchant.id, "--no-drain"
        )
    )
    claimed = 0
    for _ in range(600):
        claimed += (await OnDemandPass(runtime, "running-worker").run()).claimed
        if claimed == 3 or command.done():
            break
        await asyncio.sleep(0.05)
    code, out, err = await command
    assert code == 0, err
    assert claimed == 3  # every item was charged by the "running worker", none by the command
    assert "completed: 3 succeeded, 0 failed, 0 rejected, 0 in progress (of 3 rows)." in out
