"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record and its ``extra`` fields as a single JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)

    def formatException(self, ei: Any) -> str:
        """The traceback, with database errors reduced to their class, operation and table."""
        _, exc, _ = ei
        if exc is None:
            return super().formatException(ei)
        return format_exception_safely(exc)


# Exceptions from these packages carry SQL and its parameters (or the server's DETAIL line, which
# quotes key values) in their message; logs show only the class, the operation and the table.
_DATABASE_PACKAGES = frozenset({"sqlalchemy", "psycopg", "sqlite3", "aiosqlite", "asyncpg"})
_STATEMENT = re.compile(
    r"^\s*(?:WITH\b.*?\)\s*)?(?P<op>INSERT\s+INTO|UPDATE|DELETE\s+FROM|SELECT|INSERT|DELETE)\b"
    r"(?:.*?\bFROM\b)?\s*\(?\s*\"?(?P<table>[A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE | re.DOTALL,
)


def _is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] in _DATABASE_PACKAGES


def statement_summary(statement: str | None) -> str:
    """``"INSERT charge"``, ``"SELECT subscription"``: what a statement did, without its text."""
    if not statement:
        return "a statement"
    match = _STATEMENT.match(statement)
    if match is None:
        return statement.split(None, 1)[0].upper() if statement.split() else "a statement"
    operation = match.group("op").split()[0].upper()
    return f"{operation} {match.group('table')}"


def format_exception_safely(exc: BaseException) -> str:
    """Like the interpreter's traceback, but a database error's message is replaced by its summary."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = (
                current.__cause__,
                "The above exception was the direct cause of the following exception:",
            )
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = (
                current.__context__,
                "During handling of the above exception, another exception occurred:",
            )
        else:
            current = None
    statement = next((getattr(e, "statement", None) for e, _ in chain if getattr(e, "statement", None)), None)
    parts: list[str] = []
    for error, link in reversed(chain):
        lines = ["Traceback (most recent call last):\n", *traceback.format_tb(error.__traceback__)]
        if _is_database_error(error):
            message = f"database error during {statement_summary(statement)} (details hidden)"
        else:
            message = str(error)
        lines.append(f"{type(error).__module__}.{type(error).__qualname__}: {message}\n")
        parts.append("".join(lines))
        if link is not None:
            parts.append(f"\n{link}\n\n")
    return "".join(parts).rstrip("\n")


def configure_logging(level: str = "INFO") -> None:
    """Send every logger through the JSON formatter at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "apscheduler.executors.default", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").handlers[:] = []
    logging.getLogger("uvicorn.error").propagate = True
