"""`billing sign`: the headers (or login body) a merchant sends, computed from a private key file.

It needs no configuration and no database: it is the merchant's side of the protocol, for curl users
and for checking a client library against a known-good signature.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import BinaryIO

import click

from billing.domain.errors import BillingError
from billing.domain.signatures import canonical_request
from billing.domain.signatures import sign as ed25519_sign


def _load_private_key(path: Path) -> str:
    text = path.read_text()
    if "PRIVATE KEY" not in text:
        raise click.ClickException(f"{path} is not a PEM private key")
    return text


def _signature(pem: str, message: bytes) -> str:
    try:
        return ed25519_sign(pem, message)
    except BillingError as exc:
        raise click.ClickException(exc.detail) from exc
    except (ValueError, TypeError) as exc:  # unreadable or passphrase-protected PEM
        raise click.ClickException(f"the private key cannot be used: {exc}") from exc


@click.command("sign")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The Ed25519 private key (PEM) printed by `billing clients create`.",
)
@click.option(
    "--body",
    type=click.File("rb"),
    default=None,
    help="The exact request body to sign ('-' for stdin; /dev/null for a request without a body).",
)
@click.option(
    "--method",
    type=click.Choice(["POST", "PUT", "PATCH", "DELETE"], case_sensitive=False),
    default="POST",
    show_default=True,
    help="With --body: the HTTP method of the request.",
)
@click.option(
    "--path",
    "target",
    default=None,
    help="With --body: the request path exactly as sent, with its query string (e.g. /v1/plans).",
)
@click.option(
    "--idempotency-key", default=None, help="With --body: the Idempotency-Key header the request carries."
)
@click.option(
    "--scheme",
    type=click.Choice(["v2", "v1"]),
    default="v2",
    show_default=True,
    help="Signature scheme: v2 binds method, path and Idempotency-Key; v1 (sandbox, Migo's form) the body only.",
)
@click.option("--login", "login_client", default=None, help="Print a signed login body for this client id.")
@click.option(
    "--timestamp",
    type=int,
    default=None,
    help="Unix seconds to sign with (default: now). The server accepts 5 minutes either way.",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["curl", "headers", "json"]),
    default="curl",
    show_default=True,
    help="With --body: curl -H arguments, header lines, or a JSON object.",
)
def sign(
    key_file: Path,
    body: BinaryIO | None,
    method: str,
    target: str | None,
    idempotency_key: str | None,
    scheme: str,
    login_client: str | None,
    timestamp: int | None,
    output: str,
) -> None:
    """Sign a request (X-Timestamp / X-Signature / X-Signature-Version headers) or a login.

    Each signature is accepted once: sign every request anew, never reuse the printed headers.

    \b
    Signed write:  curl -X POST URL/v1/plans $(billing sign --key key.pem --body body.json --path /v1/plans) \\
                     --data-binary @body.json ...
    Login:         curl -X POST URL/v1/auth/login --data-binary "$(billing sign --key key.pem --login cli_...)" ...
    """
    if (body is None) == (login_client is None):
        raise click.UsageError("give exactly one of --body FILE or --login CLIENT_ID")
    if body is not None and scheme == "v2" and not target:
        raise click.UsageError("--path is required with --body: v2 signatures cover the request path")
    pem = _load_private_key(key_file)
    ts = str(timestamp if timestamp is not None else int(time.time()))
    if login_client is not None:
        signature = _signature(pem, f"{login_client}.{ts}".encode())
        click.echo(json.dumps({"clientId": login_client, "timestamp": int(ts), "signature": signature}))
        return
    assert body is not None
    message = canonical_request(
        scheme,
        timestamp=ts,
        method=method.upper(),
        target=target or "",
        idempotency_key=idempotency_key,
        body=body.read(),
    )
    headers = {"X-Timestamp": ts, "X-Signature": _signature(pem, message)}
    if scheme == "v2":
        headers["X-Signature-Version"] = "2"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if output == "headers":
        click.echo("\n".join(f"{name}: {value}" for name, value in headers.items()))
    elif output == "json":
        click.echo(json.dumps(headers))
    else:
        # No spaces and no quotes, so the line works both pasted and as unquoted $(billing sign ...).
        click.echo(" ".join(f"-H {name}:{value}" for name, value in headers.items()))
