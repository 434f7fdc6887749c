"""`billing clients ...`: merchants (API clients) and their Ed25519 signing keys, for operators."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError

from billing.cli.common import maybe_migrate, settings_or_exit
from billing.domain.clock import Clock, SystemClock
from billing.domain.errors import BillingError
from billing.services import auth
from billing.services.auth import ENVIRONMENTS, NewKey
from billing.settings import Settings
from billing.store.engine import Session, create_engine, session_factory
from billing.store.models import Client, SigningKey

T = TypeVar("T")


def _in_session(settings: Settings, work: Callable[[Session, Clock], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction; print catalog errors for the operator and exit 1."""

    async def go() -> T:
        engine = create_engine(settings.database.url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session, SystemClock())
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except BillingError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from exc
    except DBAPIError as exc:
        # The driver's own text can echo SQL; the class name is enough to point the operator.
        click.echo(
            f"error: the database refused the operation ({type(exc.orig).__name__}); "
            "is it migrated (`billing migrate`)?",
            err=True,
        )
        raise SystemExit(1) from exc


def _ready_settings() -> Settings:
    settings = settings_or_exit()
    maybe_migrate(settings)  # the embedded SQLite default migrates itself, as `billing serve` does
    return settings


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment is not None else None


def _read_public_key(path: Path | None) -> str | None:
    return path.read_text() if path is not None else None


@contextlib.contextmanager
def _reserved_key_file(path: Path | None) -> Iterator[None]:
    """Create the --private-key-out file (mode 600, never over an existing one) before anything is
    written to the database, so a bad path fails the command before a client or key exists whose
    private key would be lost; the file is removed again if the command then fails."""
    if path is None:
        yield
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError as exc:
        raise click.ClickException(f"{path} already exists; choose another --private-key-out") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot create {path}: {exc.strerror}") from exc
    done = False
    try:
        yield
        done = True
    finally:
        if not done or path.stat().st_size == 0:
            path.unlink(missing_ok=True)


def _write_private_key(path: Path, pem: str) -> None:
    """Write the PEM into the file `_reserved_key_file` created (readable by its owner only)."""
    with path.open("w") as handle:
        handle.write(pem)


def _key_view(key: SigningKey, now: datetime, private_key_pem: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "keyId": key.id,
        "publicKey": key.public_key,
        "status": auth.key_status(key, now),
        "createdAt": _iso(key.created_at),
        "expiresAt": _iso(key.expires_at),
        "revokedAt": _iso(key.revoked_at),
    }
    if private_key_pem is not None:
        view["privateKeyPem"] = private_key_pem
    return view


def _client_view(client: Client) -> dict[str, Any]:
    return {
        "clientId": client.id,
        "name": client.name,
        "environment": client.environment,
        "timezone": client.timezone,
        "signingRequired": client.signing_required,
        "signatureScheme": client.signature_scheme,
        "createdAt": _iso(client.created_at),
    }


def _show_new_key(new: NewKey, private_key_out: Path | None, as_json: bool, extra: dict[str, Any]) -> None:
    """Print a new key; a generated private key is printed (or written to a file) once and forgotten."""
    pem = new.private_key_pem
    if pem is not None and private_key_out is not None:
        _write_private_key(private_key_out, pem)
    shown_pem = pem if private_key_out is None else None
    key = _key_view(new.key, new.key.created_at, shown_pem)
    if as_json:
        click.echo(json.dumps({**extra, "key": key}, indent=2))
        return
    for label, value in extra.items():
        click.echo(f"{label + ':':<18}{value}")
    click.echo(f"{'key id:':<18}{key['keyId']}")
    click.echo(f"{'key expires at:':<18}{key['expiresAt']}")
    click.echo(f"{'public key:':<18}{key['publicKey']}  (base64 of the raw 32-byte Ed25519 key)")
    if pem is None:
        click.echo("private key:      yours (the engine only knows the public key)")
    elif private_key_out is not None:
        click.echo(f"private key:      written to {private_key_out} (mode 600); the engine keeps no copy")
    else:
        click.echo("")
        click.echo("Private key (shown once and never stored by the engine; save it now):")
        click.echo(pem.rstrip("\n"))


_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
_signature_scheme_option = click.option(
    "--signature-scheme",
    type=click.Choice(["v2", "v1"]),
    default="v2",
    show_default=True,
    help="Request signatures: v2 binds method, path, query and Idempotency-Key; v1 (sandbox only) is Migo's "
    "body-only form.",
)
_private_key_out_option = click.option(
    "--private-key-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the generated private key to this new file (mode 600) instead of printing it.",
)
_public_key_option = click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Register this Ed25519 public key (PEM, or base64 of the 32 raw bytes) instead of generating a pair.",
)


@click.group("clients")
def clients_group() -> None:
    """Merchants (API clients) and their signing keys."""


@clients_group.command("create")
@click.option("--name", required=True, help="The merchant's name.")
@click.option(
    "--timezone", default=None, help="IANA time zone of the merchant (default: settings.default_timezone)."
)
@click.option(
    "--environment",
    type=click.Choice(ENVIRONMENTS),
    default="sandbox",
    show_default=True,
    help="Client kind.",
)
@_public_key_option
@click.option("--no-signing", is_flag=True, help="Sandbox only: accept unsigned writes from this client.")
@_signature_scheme_option
@_private_key_out_option
@_json_option
def create(
    name: str,
    timezone: str | None,
    environment: str,
    public_key_file: Path | None,
    no_signing: bool,
    signature_scheme: str,
    private_key_out: Path | None,
    as_json: bool,
) -> None:
    """Create a merchant and its first signing key; print the client id and the key pair."""
    with _reserved_key_file(private_key_out):
        settings = _ready_settings()
        public_key = _read_public_key(public_key_file)

        async def work(session: Session, clock: Clock) -> tuple[Client, NewKey]:
            return await auth.create_client(
                session,
                clock,
                name=name,
                timezone=timezone or settings.default_timezone,
                environment=environment,
                settings=settings.auth,
                public_key=public_key,
                signing_required=not no_signing,
                signature_scheme=signature_scheme,
            )

        client, key = _in_session(settings, work)
        view = _client_view(client)
        if as_json:
            _show_new_key(key, private_key_out, True, view)
            return
        text = {
            "client id": client.id,
            "name": client.name,
            "environment": client.environment,
            "timezone": client.timezone,
            "signing": "required" if client.signing_required else "off (sandbox)",
            "signature scheme": client.signature_scheme,
        }
        _show_new_key(key, private_key_out, False, text)


@clients_group.command("update")
@click.option("--client", "client_id", required=True, help="The client id (cli_...).")
@click.option(
    "--signature-scheme",
    type=click.Choice(auth.SIGNATURE_SCHEMES),
    required=True,
    help="v2 (method, path, query, Idempotency-Key and body) or v1 (sandbox only, body only).",
)
@_json_option
def update(client_id: str, signature_scheme: str, as_json: bool) -> None:
    """Change a client's request-signature scheme (effective for the next request)."""
    settings = _ready_settings()

    async def work(session: Session, clock: Clock) -> Client:
        return await auth.set_signature_scheme(session, client_id, signature_scheme)

    client = _in_session(settings, work)
    if as_json:
        click.echo(json.dumps(_client_view(client), indent=2))
        return
    click.echo(f"{client.id}: signature scheme {client.signature_scheme}")


@clients_group.command("list")
@_json_option
def list_clients(as_json: bool) -> None:
    """List every merchant with its number of usable keys."""
    settings = _ready_settings()

    async def work(session: Session, clock: Clock) -> list[dict[str, Any]]:
        now = clock.now()
        rows = []
        for client in await auth.list_clients(session):
            keys = await auth.list_keys(session, client.id)
            view = _client_view(client)
            view["activeKeys"] = sum(1 for key in keys if auth.key_status(key, now) == "active")
            rows.append(view)
        return rows

    rows = _in_session(settings, work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no clients yet: create one with `billing clients create --name NAME`")
        return
    click.echo(f"{'CLIENT ID':<32}{'ENVIRONMENT':<13}{'TIMEZONE':<22}{'SIGNING':<10}{'KEYS':<6}NAME")
    for row in rows:
        signing = "required" if row["signingRequired"] else "off"
        click.echo(
            f"{row['clientId']:<32}{row['environment']:<13}{row['timezone']:<22}{signing:<10}"
            f"{row['activeKeys']:<6}{row['name']}"
        )


@clients_group.group("keys")
def keys_group() -> None:
    """Rotate signing keys: add the new key, switch the merchant to it, then revoke the old one."""


@keys_group.command("add")
@click.option("--client", "client_id", required=True, help="Client id (cli_...).")
@_public_key_option
@click.option(
    "--lifetime-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days until the key expires (default: settings.auth.key_lifetime_days).",
)
@_private_key_out_option
@_json_option
def add_key(
    client_id: str,
    public_key_file: Path | None,
    lifetime_days: int | None,
    private_key_out: Path | None,
    as_json: bool,
) -> None:
    """Add a signing key to a client (generated unless --public-key is given)."""
    with _reserved_key_file(private_key_out):
        settings = _ready_settings()
        public_key = _read_public_key(public_key_file)

        async def work(session: Session, clock: Clock) -> NewKey:
            return await auth.add_key(
                session,
                clock,
                client_id,
                settings=settings.auth,
                public_key=public_key,
                lifetime_days=lifetime_days,
            )

        new = _in_session(settings, work)
        _show_new_key(new, private_key_out, as_json, {"clientId" if as_json else "client id": client_id})


@keys_group.command("list")
@click.option("--client", "client_id", required=True, help="Client id (cli_...).")
@_json_option
def list_keys(client_id: str, as_json: bool) -> None:
    """List a client's keys with their status (active, expired, revoked) and expiry."""
    settings = _ready_settings()

    async def work(session: Session, clock: Clock) -> list[dict[str, Any]]:
        now = clock.now()
        return [_key_view(key, now) for key in await auth.list_keys(session, client_id)]

    rows = _in_session(settings, work)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'KEY ID':<32}{'STATUS':<9}{'EXPIRES AT':<22}PUBLIC KEY")
    for row in rows:
        click.echo(f"{row['keyId']:<32}{row['status']:<9}{row['expiresAt']:<22}{row['publicKey']}")


@keys_group.command("revoke")
@click.option("--client", "client_id", required=True, help="Client id (cli_...).")
@click.option("--key-id", required=True, help="Key id (key_...), from `billing clients keys list`.")
def revoke_key(client_id: str, key_id: str) -> None:
    """Revoke a key now: logins and requests signed with it answer 7604 INVALID_SIGNATURE."""
    settings = _ready_settings()

    async def work(session: Session, clock: Clock) -> tuple[SigningKey, int]:
        key = await auth.revoke_key(session, clock, client_id, key_id)
        now = clock.now()
        usable = sum(
            1 for k in await auth.list_keys(session, client_id) if auth.key_status(k, now) == "active"
        )
        return key, usable

    key, usable = _in_session(settings, work)
    click.echo(f"revoked {key.id} of {client_id} at {_iso(key.revoked_at)}")
    if usable == 0:
        click.echo(
            f"warning: {client_id} has no active key left and cannot log in or sign until one is added "
            f"(`billing clients keys add --client {client_id}`)",
            err=True,
        )
