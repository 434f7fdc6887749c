"""A real SMTP server on loopback (aiosmtpd) that records what it receives, and can refuse, hang or be down.

`smtp_server.mode` decides how the next messages are answered: "accept", "refuse-temporary" (451),
"refuse-permanent" (550) or "hang" (no answer to DATA until the client gives up). `stop()` takes the
server down (connections are refused) and `start()` brings it back on the same port.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def html(self) -> str:
        body = self.message.get_body(preferencelist=("html",))
        assert body is not None
        return str(body.get_content())


@dataclass
class RecordingHandler:
    mode: str = "accept"
    received: list[Received] = field(default_factory=list)
    refused: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "refuse-temporary":
            self.refused += 1
            return "451 4.3.0 Try again later"
        if self.mode == "refuse-permanent":
            self.refused += 1
            return "550 5.1.1 Mailbox unavailable"
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(list(envelope.rcpt_tos), parsed))
        return "250 OK"


class SmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def mode(self) -> str:
        return self.handler.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.handler.mode = value

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def templates_dir() -> Path | None:
    """No operator templates unless a test says otherwise."""
    return None


@pytest.fixture
def settings(db_url: str, tmp_path: Path, smtp_server: SmtpServer, templates_dir: Path | None) -> Any:
    from billing.settings import load_settings

    return load_settings(
        database={"url": db_url, "pool_size": 5},
        data_dir=tmp_path,
        auth={"jwt_secret": "test-only-" + secrets.token_hex(16)},
        worker={"enabled": False, "interval_seconds": 0.2, "lease_seconds": 30},
        smtp={
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "timeout_seconds": 3.0,  # a loaded test machine must not time out a live server
            "sender": "billing@shop.example",
            "username": None,
        },
        notifications={"templates_dir": templates_dir},
    )
