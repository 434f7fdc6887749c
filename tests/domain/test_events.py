"""Event payload models: the documented contract matches them, and payloads keep their shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from billing.domain.events import EVENT_MODELS, BatchCompleted, ChargeFailed, events_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_docs_publish_every_event_model() -> None:
    doc = (ROOT / "docs" / "events.md").read_text()
    assert events_markdown() in doc
    assert len({model.type for model in EVENT_MODELS}) == len(EVENT_MODELS)


def test_optional_context_appears_only_when_set_and_instants_keep_their_offset() -> None:
    fields = dict(
        charge_id="charge_1",
        subscription_id=None,
        kind="enrolment",
        state="failed",
        amount="29.90",
        amount_minor=2990,
        currency="USD",
        payment_method_id="pm_1",
        processor="sandbox",
        attempt=1,
        period_start=datetime(2026, 1, 31, 5, 0, tzinfo=UTC),
        decline_code="7201",
        decline_message=None,
        processor_reference=None,
    )
    plain = ChargeFailed(**fields).to_json()
    assert plain["periodStart"] == "2026-01-31T05:00:00+00:00"
    assert plain["subscriptionId"] is None
    assert "trxUid" not in plain
    assert "batchId" not in plain
    enrolment = ChargeFailed(**fields, trx_uid="trx_1", user_id="u1").to_json()
    assert (enrolment["trxUid"], enrolment["userId"]) == ("trx_1", "u1")


def test_a_field_outside_the_contract_is_refused() -> None:
    completed = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-6)))
    payload = BatchCompleted(batch_id="b", tracking_id=None, source="json", totals={}, completed_at=completed)
    assert payload.to_json()["completedAt"] == "2026-01-01T00:00:00-06:00"
    with pytest.raises(ValidationError):
        BatchCompleted(
            batch_id="b", tracking_id=None, source="json", totals={}, completed_at=completed, extra=1
        )  # type: ignore[call-arg]
