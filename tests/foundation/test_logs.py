"""billing/logs.py: one JSON object per line (console view on a terminal), context merged, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from billing.logs import REDACTED, configure_logging, redact_text, resolve_format


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.contextvars.clear_contextvars()


def _one_line(stream: io.StringIO) -> dict[str, Any]:
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    line: dict[str, Any] = json.loads(lines[0])
    return line


def test_a_line_is_json_with_context_and_extra_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream)  # not a terminal: JSON
    structlog.contextvars.bind_contextvars(request_id="req_abc")
    logging.getLogger("billing.test").info("charged %s", "twice", extra={"charge_id": "chg_1", "amount": 250})
    line = _one_line(stream)
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert (line["level"], line["logger"], line["msg"]) == ("INFO", "billing.test", "charged twice")
    assert (line["request_id"], line["charge_id"], line["amount"]) == ("req_abc", "chg_1", 250)


def test_structlog_loggers_render_through_the_same_chain(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    structlog.get_logger("litestar").warning("slow", path="/v1/plans", token="eyJhbGciOiJIUzI1NiJ9.e30.sig")
    line = _one_line(stream)
    assert (line["logger"], line["level"], line["msg"], line["path"]) == (
        "litestar",
        "WARNING",
        "slow",
        "/v1/plans",
    )
    assert line["token"] == REDACTED


def test_console_view_on_a_terminal(restore_logging: None) -> None:
    terminal = _Terminal()
    assert resolve_format("auto", terminal) == "console"
    assert resolve_format("json", terminal) == "json"
    assert resolve_format("auto", io.StringIO()) == "json"
    configure_logging("INFO", "auto", terminal)
    logging.getLogger("billing.test").info("hello", extra={"pass": "renewals"})
    text = terminal.getvalue()
    assert "hello" in text
    assert "pass=renewals" in text
    assert not text.lstrip().startswith("{")


def test_level_filters_lines(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "json", stream)
    logging.getLogger("billing.test").info("quiet")
    structlog.get_logger("billing.test").info("quiet too")
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("password", "hunter2-hunter2"),
        ("smtp_password", "x"),
        ("webhook_secret", "anything"),
        ("refreshToken", "opaque-token"),
        ("x_signature", "c2lnbmF0dXJl"),
        ("authorization", "Bearer abc"),
        ("cvv", "831-cvv"),  # not digits alone: a timestamp may hold any three digits
        ("card_number", "4000000000000002"),
        ("private_key", "pem-body"),
    ],
)
def test_secret_keys_lose_their_value(restore_logging: None, key: str, value: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("billing.test").info("event", extra={key: value})
    line = _one_line(stream)
    assert line[key] == REDACTED
    assert value not in stream.getvalue()


@pytest.mark.parametrize(
    "secret",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjbGkifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "sk_test_51Hxyzabcdef",
        "Bearer abc.def.ghi",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPx\n-----END PRIVATE KEY-----",
    ],
)
def test_secret_shaped_text_is_masked_in_messages_and_values(restore_logging: None, secret: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("billing.test").warning("got %s here", secret, extra={"note": f"({secret})"})
    line = _one_line(stream)
    assert secret not in stream.getvalue()
    assert line["msg"] == f"got {REDACTED} here"
    assert line["note"] == f"({REDACTED})"


def test_numbers_that_are_not_card_numbers_stay() -> None:
    # A millisecond timestamp (13 digits, not Luhn-valid), an amount, a short reference.
    for text in ("at 1767225600000", "amount 2990", "ref 123456789012", "4242424242424241"):
        assert redact_text(text) == text


def test_exceptions_are_rendered_with_database_messages_reduced(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        raise ValueError("card 4242424242424242 refused")
    except ValueError:
        logging.getLogger("billing.test").exception("failed")
    line = _one_line(stream)
    assert "Traceback" in line["exc"]
    assert "ValueError" in line["exc"]
    assert "4242424242424242" not in line["exc"]


def test_migrating_logs_the_upgrades_without_alembics_preamble(restore_logging: None, tmp_path: Any) -> None:
    from billing.store.migrations import upgrade

    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    upgrade(f"sqlite:///{tmp_path}/fresh.db", "0002")
    messages = [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]
    assert messages == [
        "Running upgrade  -> 0001, initial schema",
        "Running upgrade 0001 -> 0002, subscription.grace_retry_at: the grace episode's next scheduled retry",
    ]
