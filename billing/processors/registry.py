"""Building the configured processors by slug from plain config values.

Config arrives as plain mappings (from TOML or settings), e.g.
`{"sandbox": {}, "stripe": {"api_key": "sk_...", "base_url": "http://127.0.0.1:8420"}}`.
Every entry is checked before any processor is built, so a bad entry never leaves half-opened
HTTP clients behind. Error messages name the slug and option, never an option's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import SecretStr

from billing.domain.clock import Clock
from billing.processors.base import PaymentProcessor
from billing.processors.sandbox import SandboxProcessor
from billing.processors.stripe import DEFAULT_BASE_URL, StripeProcessor, checked_settings


def _reject_unknown(slug: str, options: Mapping[str, object], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"processor {slug!r}: unknown option(s) {', '.join(unknown)}")


def _sandbox(options: Mapping[str, object], clock: Clock | None) -> Callable[[], PaymentProcessor]:
    _reject_unknown("sandbox", options, set())
    return lambda: SandboxProcessor(clock=clock)


def _stripe(options: Mapping[str, object], clock: Clock | None) -> Callable[[], PaymentProcessor]:
    _reject_unknown(
        "stripe", options, {"api_key", "base_url", "localstripe", "api_version", "timeout_seconds"}
    )
    api_key = options.get("api_key")
    if not isinstance(api_key, str | SecretStr):
        raise ValueError("processor 'stripe': api_key is required and must be a string")
    base_url = options.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str):
        raise ValueError("processor 'stripe': base_url must be a string")
    localstripe = options.get("localstripe", False)
    if not isinstance(localstripe, bool):
        raise ValueError("processor 'stripe': localstripe must be true or false")
    api_version = options.get("api_version")
    if api_version is not None and not isinstance(api_version, str):
        raise ValueError("processor 'stripe': api_version must be a string")
    timeout_seconds = options.get("timeout_seconds", 10.0)
    if (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, int | float)
        or timeout_seconds <= 0
    ):
        raise ValueError("processor 'stripe': timeout_seconds must be a positive number")
    try:
        secret = checked_settings(api_key, base_url)
    except ValueError as exc:
        raise ValueError(f"processor 'stripe': {exc}") from None
    return lambda: StripeProcessor(
        secret,
        base_url=base_url,
        localstripe=localstripe,
        api_version=api_version,
        timeout_seconds=float(timeout_seconds),
        clock=clock,
    )


_BUILDERS: Mapping[str, Callable[[Mapping[str, object], Clock | None], Callable[[], PaymentProcessor]]] = {
    "sandbox": _sandbox,
    "stripe": _stripe,
}

KNOWN_SLUGS: tuple[str, ...] = tuple(_BUILDERS)


def build_processors(
    config: Mapping[str, Mapping[str, object]], *, clock: Clock | None = None
) -> dict[str, PaymentProcessor]:
    """One processor per configured slug; raises ValueError naming an unknown slug or bad option.

    `clock` is what processors check card expiry against (the system clock when not given).
    """
    factories: dict[str, Callable[[], PaymentProcessor]] = {}
    for slug, options in config.items():
        builder = _BUILDERS.get(slug)
        if builder is None:
            raise ValueError(f"unknown payment processor {slug!r} (known: {', '.join(KNOWN_SLUGS)})")
        if not isinstance(options, Mapping):
            raise ValueError(f"processor {slug!r}: options must be a table")
        factories[slug] = builder(options, clock)
    return {slug: factory() for slug, factory in factories.items()}
