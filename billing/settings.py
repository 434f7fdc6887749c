"""Settings: environment variables (``BILLING_`` prefix, ``__`` for nesting) over a TOML file.

The file is the first of: ``billing --config FILE`` (which sets ``BILLING_CONFIG``), ``BILLING_CONFIG``,
``./config/billing.toml``, ``/etc/billing/billing.toml``; none is fine (defaults). A file that was
named explicitly but does not exist is an error (pydantic-settings would silently fall back to
defaults). Generated secrets and the default SQLite database live in the data directory
(``data_dir``; default ``$XDG_DATA_HOME/billing-engine``, else ``~/.local/share/billing-engine``),
so every command finds the same ones wherever it is run from.
Validation errors are turned into :class:`ConfigError`, whose message names each bad
key, the value found and the reason, so a bad deployment fails at start.
"""

from __future__ import annotations

import math
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from billing.domain.settlement import known_country

DEFAULT_CONFIG_PATH = Path("config/billing.toml")
SYSTEM_CONFIG_PATH = Path("/etc/billing/billing.toml")
DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./billing.db"  # replaced by DATA_DIR/billing.db unless set


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/billing-engine``, else ``~/.local/share/billing-engine``."""
    base = os.environ.get("XDG_DATA_HOME")
    return (Path(base) if base else Path.home() / ".local" / "share") / "billing-engine"


class ConfigError(Exception):
    """The configuration cannot be used; the message is meant for the operator."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    url: str = Field(
        DEFAULT_SQLITE_URL, description="SQLAlchemy URL: sqlite+aiosqlite:// or postgresql+psycopg://"
    )
    pool_size: int = Field(10, ge=1, le=200)
    echo: bool = False
    auto_migrate: bool | None = Field(
        None, description="Run migrations at `billing serve` start; default: only for SQLite."
    )

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # Plain postgresql:// means psycopg2 in SQLAlchemy; we ship psycopg 3.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if not (value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+psycopg://")):
            raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def sync_url(self) -> str:
        """The same database for synchronous tools (Alembic)."""
        if self.is_sqlite:
            return "sqlite://" + self.url.split("://", 1)[1]
        return self.url


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = Field(None, description="Base URL merchants use; defaults to http://host:port")
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024)


MIN_SECRET_BYTES = 32
MIN_SECRET_BITS = 128


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign access tokens, or None.

    At least 32 bytes, and at least 128 bits by a per-character entropy estimate, so that a
    word repeated or a short password padded to length is refused. `billing config init`
    generates 48 random bytes (base64url, about 380 bits).
    """
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        return f"must be at least {MIN_SECRET_BYTES} bytes (got {len(raw)}); generate one with `billing config init`"
    counts = [raw.count(byte) for byte in set(raw)]
    bits = -sum(n * math.log2(n / len(raw)) for n in counts)
    if bits < MIN_SECRET_BITS:
        return (
            f"is too predictable (about {int(bits)} bits of entropy, {MIN_SECRET_BITS} needed); "
            "generate one with `billing config init`"
        )
    return None


class AuthSettings(_Section):
    jwt_secret: SecretStr | None = Field(
        None, description="HMAC secret for access tokens; generated into the data directory when unset"
    )

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = secret_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    access_token_ttl_seconds: int = Field(30 * 60, ge=60)
    refresh_token_ttl_seconds: int = Field(7 * 24 * 3600, ge=300)
    signature_tolerance_seconds: int = Field(300, ge=1, le=3600)
    key_lifetime_days: int = Field(365, ge=1)
    idempotency_ttl_hours: int = Field(24, ge=1)


class RateLimitSettings(_Section):
    """Request budgets, counted in each API process's memory (docs/authentication.md#rate-limits)."""

    enabled: bool = Field(
        True, description="Answer 429 past a budget (turn off only behind a limiting proxy)"
    )
    period_seconds: float = Field(60.0, gt=0, le=3600, description="The window every budget below refers to")
    client_requests: int = Field(
        6000, ge=1, description="Requests per period of one client on its /v1 routes, per API process"
    )
    login_per_ip: int = Field(
        30, ge=1, description="POST /v1/auth/login (and, separately, /refresh) per period from one address"
    )
    login_per_client: int = Field(
        10, ge=1, description="POST /v1/auth/login (and, separately, /refresh) per period for one clientId"
    )
    max_tracked_keys: int = Field(
        100_000, ge=100, description="Clients and addresses remembered per budget; idle ones are forgotten"
    )


class WorkerSettings(_Section):
    enabled: bool = Field(True, description="Run the worker inside `billing serve`")
    interval_seconds: float = Field(5.0, gt=0, le=3600)
    batch_size: int = Field(200, ge=1, le=10_000)
    concurrency: int = Field(64, ge=1, le=2_000, description="Processor calls in flight per worker")
    lease_seconds: int = Field(120, ge=5)


class OndemandSettings(_Section):
    csv_max_rows: int = Field(
        50_000, ge=1, le=1_000_000, description="Charge rows one CSV upload may hold (7022 beyond)"
    )


class WebhookSettings(_Section):
    timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="A delivery succeeds on a 2xx within this time"
    )
    backoff_base_seconds: float = Field(30.0, gt=0, le=3600, description="Ceiling of the first retry's delay")
    backoff_max_seconds: float = Field(
        6 * 3600.0, gt=0, le=7 * 24 * 3600, description="Largest ceiling of one retry's delay"
    )
    give_up_after_hours: float = Field(
        7 * 24.0, gt=0, le=30 * 24, description="Retries stop this long after the event; then abandoned"
    )
    in_flight_per_endpoint: int = Field(8, ge=1, le=256, description="Deliveries in flight per endpoint")
    in_flight: int = Field(256, ge=1, le=4096, description="Deliveries in flight per worker")
    circuit_failures: int = Field(
        5, ge=1, le=1000, description="Consecutive failures after which an endpoint is backed off"
    )
    circuit_seconds: float = Field(60.0, gt=0, le=24 * 3600, description="First back-off of an open circuit")
    interval_seconds: float = Field(1.0, gt=0, le=60, description="How often the worker looks for deliveries")
    event_retention_days: int = Field(30, ge=1, le=3650, description="Events are kept at least this long")
    rotation_overlap_hours: float = Field(
        24.0, ge=0, le=24 * 30, description="An old secret keeps signing this long after a rotation"
    )
    max_endpoints: int = Field(16, ge=1, le=1000, description="Endpoints one client may register")


class GracePolicySettings(_Section):
    attempts: int = Field(4, ge=1, le=100, description="Charge attempts in an episode, the first included")
    interval_hours: float = Field(24.0, gt=0, le=24 * 31)
    grace_days: int | None = Field(7, ge=0, le=366)
    stop_on_hard_decline: bool = True


class GraceSettings(_Section):
    default: GracePolicySettings = GracePolicySettings()
    policies: dict[str, GracePolicySettings] = Field(default_factory=dict)
    catch_up: Literal["skip", "charge"] = Field(
        "skip",
        description="A late payment whose next period is already over: skip the overdue periods "
        "(resume at the next boundary ahead) or charge them one retry interval apart",
    )


class SandboxProcessorSettings(_Section):
    enabled: bool = True


class StripeProcessorSettings(_Section):
    enabled: bool = False
    api_key: SecretStr | None = None
    base_url: str = "https://api.stripe.com"
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    api_version: str | None = Field(None, description="Stripe-Version header; default: the account's version")
    localstripe: bool = Field(False, description="Talk to a localstripe test server (tests only)")


class ProcessorsSettings(_Section):
    sandbox: SandboxProcessorSettings = SandboxProcessorSettings()
    stripe: StripeProcessorSettings = StripeProcessorSettings()

    def enabled(self) -> dict[str, dict[str, Any]]:
        """Config of each enabled processor by slug (secrets unwrapped only here)."""
        out: dict[str, dict[str, Any]] = {}
        if self.sandbox.enabled:
            out["sandbox"] = {}
        if self.stripe.enabled:
            out["stripe"] = {
                "api_key": self.stripe.api_key.get_secret_value() if self.stripe.api_key else "",
                "base_url": self.stripe.base_url,
                "timeout_seconds": self.stripe.timeout_seconds,
                "api_version": self.stripe.api_version,
                "localstripe": self.stripe.localstripe,
            }
        return out


class SettlementSettings(_Section):
    country: str = Field(
        "GT", description="ISO 3166 country whose public holidays are not settlement business days"
    )

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if not known_country(value):
            raise ValueError("not a country the holidays calendar knows (ISO 3166 alpha-2, e.g. GT)")
        return value


class InboundSettings(_Section):
    volcan_secret: SecretStr | None = Field(
        None, description="HMAC secret of /webhooks/volcan (processor notifications); unset: refused"
    )
    settlements_secret: SecretStr | None = Field(
        None, description="HMAC secret of /webhooks/settlements (settlement reports); unset: refused"
    )
    stripe_endpoint_secret: SecretStr | None = Field(
        None, description="Stripe's endpoint signing secret (whsec_...) for /webhooks/stripe; unset: refused"
    )
    tolerance_seconds: int = Field(300, ge=1, le=3600, description="Signature timestamp tolerance")


class SmtpSettings(_Section):
    host: str | None = Field(None, description="SMTP server; unset: e-mails stay queued, nothing is sent")
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = Field(False, description="Upgrade a plain connection with STARTTLS (port 587)")
    tls: bool = Field(False, description="TLS from the first byte (port 465)")
    timeout_seconds: float = Field(30.0, gt=0, le=300, description="Bound of one connection and send")
    sender: str = "billing@localhost"
    sender_name: str | None = Field(None, description="Display name of the sender; a client's own wins")


class NotificationSettings(_Section):
    templates_dir: Path | None = Field(
        None, description="Operator templates ({locale}/{template}.txt|.html) that win over the built-in ones"
    )
    interval_seconds: float = Field(5.0, gt=0, le=3600, description="How often the worker sends e-mails")
    batch_size: int = Field(50, ge=1, le=1000, description="E-mails one round leases")
    concurrency: int = Field(4, ge=1, le=64, description="SMTP sessions in flight per worker")
    backoff_base_seconds: float = Field(60.0, gt=0, le=3600, description="Ceiling of the first retry's delay")
    backoff_max_seconds: float = Field(6 * 3600.0, gt=0, le=24 * 3600, description="Largest retry delay")
    give_up_after_hours: float = Field(72.0, gt=0, le=30 * 24, description="Then the e-mail is abandoned")


class MetricsSettings(_Section):
    enabled: bool = Field(True, description="Serve GET /metrics (Prometheus text format)")
    bearer_token: SecretStr | None = Field(
        None, description="When set, /metrics answers only `Authorization: Bearer <token>`; unset: open"
    )
    overdue_after_seconds: float | None = Field(
        None,
        gt=0,
        description="A subscription due longer than this counts as overdue (unset: one worker interval)",
    )


class PaymentLinkSettings(_Section):
    """The hosted enrolment page (`/pay/{reference}`, docs/payment-links.md).

    The link's address is `server.public_url` + `/pay/{reference}`.
    """

    expires_after_hours: float = Field(
        7 * 24.0, gt=0, le=366 * 24, description="A new link works this long (default 7 days)"
    )
    max_declines: int = Field(
        5, ge=1, le=100, description="Declined cards after which a link locks (card testing stops there)"
    )
    ip_attempts: int = Field(
        20, ge=1, le=10_000, description="Cards one IP address may submit, on any link, per window"
    )
    ip_window_minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="The per-IP limit's window")
    return_after_seconds: int = Field(
        5, ge=0, le=600, description="The receipt sends the cardholder to returnUrl after this long"
    )


class Settings(BaseSettings):
    """Every knob of the engine. See config/billing.toml for the commented defaults."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Generated secrets (jwt.secret) and the default SQLite database (billing.db)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON lines, or the console view when stderr is a terminal"
    )
    default_timezone: str = "America/Guatemala"
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    worker: WorkerSettings = WorkerSettings()
    ondemand: OndemandSettings = OndemandSettings()
    webhooks: WebhookSettings = WebhookSettings()
    grace: GraceSettings = GraceSettings()
    processors: ProcessorsSettings = ProcessorsSettings()
    smtp: SmtpSettings = SmtpSettings()
    settlement: SettlementSettings = SettlementSettings()
    inbound: InboundSettings = InboundSettings()
    notifications: NotificationSettings = NotificationSettings()
    metrics: MetricsSettings = MetricsSettings()
    payment_links: PaymentLinkSettings = PaymentLinkSettings()

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        if "url" not in self.database.model_fields_set:
            self.database.url = f"sqlite+aiosqlite:///{(self.data_dir / 'billing.db').absolute()}"
        return self

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not an IANA time zone name") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"

    @property
    def jwt_secret_path(self) -> Path:
        return self.data_dir / "jwt.secret"

    def jwt_secret(self) -> str:
        """The access-token secret; generated once into ``data_dir/jwt.secret`` when not configured.

        Raises :class:`ConfigError` when the file holds a weak secret.
        """
        if self.auth.jwt_secret is not None:
            return self.auth.jwt_secret.get_secret_value()
        path = self.jwt_secret_path
        try:
            seen = path.stat()
        except FileNotFoundError:
            write_new_secret(path)
            seen = path.stat()
        # Read again only when the file changed (every request asks; replacing the file rotates it).
        version = (seen.st_ino, seen.st_mtime_ns, seen.st_size)
        known = _SECRET_FILES.get(path)
        if known is not None and known[0] == version:
            return known[1]
        secret = path.read_text().strip()
        problem = secret_problem(secret)
        if problem is not None:
            raise ConfigError(f"{path}: the access-token secret {problem}")
        _SECRET_FILES[path] = (version, secret)
        return secret


# Access-token secrets read from files: the file's (inode, mtime, size) when read, and the secret.
_SECRET_FILES: dict[Path, tuple[tuple[int, int, int], str]] = {}


def new_secret() -> str:
    """48 random bytes, base64url: an access-token secret."""
    return secrets.token_urlsafe(48)


def write_new_secret(path: Path) -> None:
    """Create ``path`` (mode 0600) holding a new secret; never overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(new_secret())


def _config_path() -> Path | None:
    explicit = os.environ.get("BILLING_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"BILLING_CONFIG names {explicit!r}, which is not a readable file")
        return path
    for candidate in (DEFAULT_CONFIG_PATH, SYSTEM_CONFIG_PATH):
        if candidate.is_file():
            return candidate
    return None


def config_path() -> Path | None:
    """The configuration file in use (see the module docstring for the search order), if any."""
    return _config_path()


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        value = err.get("input")
        shown = "<hidden>" if any(w in key for w in ("secret", "password", "api_key")) else repr(value)
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key} = {shown}: unknown key (check the spelling against config/billing.toml)")
        else:
            lines.append(f"  {key} = {shown}: {err['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Load and validate the settings, raising :class:`ConfigError` with an operator-readable message."""
    path = _config_path()
    if path is not None:
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = f" ({path})" if path else ""
        raise ConfigError(
            _describe(exc).replace("invalid configuration", f"invalid configuration{where}")
        ) from exc
