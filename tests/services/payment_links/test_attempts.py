"""The per-IP limit: counted in the database, the address never stored, old rows forgotten."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.errors import BillingError
from billing.services.payment_links.attempts import address_key, admit_attempt
from billing.services.runtime import Runtime
from billing.store.models import PaymentLinkAttempt

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Any:
    from tests.conftest import test_settings

    return test_settings(db_url, tmp_path, payment_links={"ip_attempts": 2, "ip_window_minutes": 60})


async def rows(runtime: Runtime) -> list[PaymentLinkAttempt]:
    async with runtime.sessions() as session:
        return list((await session.exec(select(PaymentLinkAttempt))).all())


async def test_an_address_is_limited_per_window_and_never_stored(
    service_runtime: Runtime, clock: Any
) -> None:
    await admit_attempt(service_runtime, address="203.0.113.7", trx_id="trx_a")
    await admit_attempt(service_runtime, address="203.0.113.7", trx_id="trx_b")

    with pytest.raises(BillingError) as refused:
        await admit_attempt(service_runtime, address="203.0.113.7", trx_id="trx_c")
    await admit_attempt(service_runtime, address="198.51.100.1", trx_id="trx_c")  # another address

    assert refused.value.code == "7805"
    stored = await rows(service_runtime)
    assert len(stored) == 3
    assert all("203.0.113.7" not in row.ip_key and len(row.ip_key) == 64 for row in stored)
    assert stored[0].ip_key == address_key(service_runtime.settings.jwt_secret(), "203.0.113.7")

    clock.advance(timedelta(minutes=61))
    await admit_attempt(service_runtime, address="203.0.113.7", trx_id="trx_d")  # the window moved on
    assert [row.trx_id for row in await rows(service_runtime)] == ["trx_d"]  # older rows forgotten


def test_the_key_depends_on_the_secret() -> None:
    assert address_key("one secret", "203.0.113.7") != address_key("another secret", "203.0.113.7")
    assert address_key("one secret", "203.0.113.7") == address_key("one secret", "203.0.113.7")
