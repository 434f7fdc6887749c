"""Structured logs through structlog: one JSON object per line, or a console view on a terminal.

Every logger of the engine, ours (the standard library's ``logging.getLogger``) and structlog's
(Litestar's own), goes through one processor chain:

- the context bound in contextvars (``request_id`` for every line a request causes, the pass name,
  pass id and the subscription, batch or charge of a worker pass) is merged into the line;
- a database error's message is reduced to its class, operation and table, because drivers quote
  key values in their messages;
- values that look like secrets are redacted (``redact``), whatever the key or the message;
- the line is rendered as JSON, or for a person when the log stream is a terminal.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import traceback
from collections.abc import Mapping
from typing import IO, Any, Literal

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from billing.domain.card_numbers import CARD_DIGITS, luhn_valid

LogFormat = Literal["auto", "json", "console"]

REDACTED = "[redacted]"

# Keys whose value is never written, whatever it looks like (lower-cased substrings of the key).
_SECRET_KEYS = (
    "password",
    "secret",
    "token",
    "signature",
    "authorization",
    "cvv",
    "cvc",
    "card_number",
    "cardnumber",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
)
# Shapes of secrets in any text: JWTs, PEM blocks, Standard Webhooks secrets, Stripe keys, Bearer
# credentials, and digit runs that may be card numbers (masked when Luhn-valid, 13 to 19 digits).
_SECRET_TEXT = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?P<pem>-----BEGIN [A-Z ]+-----.*?(?:-----END [A-Z ]+-----|$))"
    r"|(?P<whsec>whsec_[A-Za-z0-9+/=_-]+)"
    r"|(?P<stripe>\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+)"
    r"|(?P<bearer>(?i:bearer)\s+[A-Za-z0-9._~+/=-]+)"
    r"|(?P<digits>(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9]))",
    re.DOTALL,
)


def _mask(match: re.Match[str]) -> str:
    if match.lastgroup == "digits":
        digits = match.group().replace(" ", "").replace("-", "")
        if len(digits) not in CARD_DIGITS or not luhn_valid(digits):
            return match.group()
    return REDACTED


def redact_text(text: str) -> str:
    """``text`` with every secret-shaped part replaced by ``[redacted]``."""
    if len(text) < _SHORTEST_SECRET or not _may_hold_secret(text):
        return text
    return _SECRET_TEXT.sub(_mask, text)


_SHORTEST_SECRET = 10  # "Bearer " and a credential; card numbers have 13 digits, JWTs far more
_MARKERS = ("eyJ", "-----BEGIN", "whsec_", "_live_", "_test_", "earer", "EARER")
_THIRTEEN_DIGITS = re.compile(r"[0-9](?:[ -]?[0-9]){12}")


def _may_hold_secret(text: str) -> bool:
    """The cheap test most text fails: no marker of a secret shape and no run of 13 digits."""
    return any(marker in text for marker in _MARKERS) or _THIRTEEN_DIGITS.search(text) is not None


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEYS)


def _redact_value(key: str, value: Any, depth: int = 0) -> Any:
    if _secret_key(key) and value not in (None, "", True, False):
        return REDACTED
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if depth < 3 and isinstance(value, Mapping):
        return {str(k): _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 3 and isinstance(value, list | tuple):
        return [_redact_value("", v, depth + 1) for v in value]
    return redact_text(str(value))


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: secret keys lose their value, secret-shaped text is masked everywhere else.

    The line starts with when, how bad, where from and what (``ts``, ``level``, ``logger``, the
    message), then the context and the fields in the order they were bound.
    """
    first = {key: event_dict[key] for key in _FIRST_KEYS if key in event_dict}
    ordered = {**first, **event_dict}
    return {key: value if key in _OWN_KEYS else _redact_value(key, value) for key, value in ordered.items()}


_FIRST_KEYS = ("ts", "level", "logger", "msg")
_OWN_KEYS = frozenset({"ts", "level", "logger"})  # written by the chain itself, never by a caller


def add_exception(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: ``exc_info`` becomes ``exc``, the traceback with database messages reduced."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("exception", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
    if error is not None:
        event_dict["exc"] = format_exception_safely(error)
    return event_dict


def _uppercase_level(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    if isinstance(level := event_dict.get("level"), str):
        event_dict["level"] = level.upper()
    return event_dict


def _console_exception(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # The console renderer prints a string under "exception" as the traceback it is.
    if "exc" in event_dict:
        event_dict["exception"] = event_dict.pop("exc")
    return event_dict


def _shared_processors() -> list[Processor]:
    """What every line gets first, from structlog's loggers and the standard library's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        _uppercase_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]


def structlog_processors() -> list[Processor]:
    """The processors of structlog's own loggers; they end in the standard library's handler."""
    return [
        structlog.stdlib.filter_by_level,
        *_shared_processors(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


def structlog_settings() -> dict[str, Any]:
    """Keyword arguments for ``structlog.configure`` (and Litestar's ``StructLoggingConfig``)."""
    return {
        "processors": structlog_processors(),
        "logger_factory": structlog.stdlib.LoggerFactory(),
        "wrapper_class": structlog.stdlib.BoundLogger,
        "cache_logger_on_first_use": True,
    }


def log_formatter(fmt: Literal["json", "console"] = "json") -> logging.Formatter:
    """The formatter of the engine's log handler: JSON lines, or the console view."""
    renderer: Processor
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        add_exception,
        structlog.processors.EventRenamer("msg"),
        redact,
    ]
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False, event_key="msg", timestamp_key="ts")
        final.append(_console_exception)
    else:
        renderer = structlog.processors.JSONRenderer()
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[*final, renderer],
    )


def resolve_format(fmt: LogFormat, stream: IO[str]) -> Literal["json", "console"]:
    """``auto`` is JSON, or the console view when a person reads the stream (a terminal)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


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


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", stream: IO[str] | None = None) -> None:
    """Send every logger, structlog's and the standard library's, to ``stream`` (stderr) at ``level``."""
    stream = stream or sys.stderr
    structlog.configure(**structlog_settings())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(resolve_format(fmt, stream)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic announces its plugins on every start of a migrating command; its upgrade lines stay.
    for noisy in (
        "uvicorn.access",
        "apscheduler.executors.default",
        "apscheduler.scheduler",
        "alembic.runtime.plugins",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Alembic's migration context introduces itself before every migrating command, with nothing to
    # migrate too; the "Running upgrade" lines are what an operator reads.
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _AlembicPreamble) for f in migration.filters):
        migration.addFilter(_AlembicPreamble())
    # The SQLite driver's DEBUG lines repeat every statement with its parameters (a webhook
    # secret, a client's e-mail) from its own thread, outside any request: never wanted.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    logging.getLogger("uvicorn.error").handlers[:] = []
    logging.getLogger("uvicorn.error").propagate = True


class _AlembicPreamble(logging.Filter):
    """Drops alembic's "Context impl ..." and "Will assume ... DDL" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("Context impl") or message.startswith("Will assume"))
