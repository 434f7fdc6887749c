"""Tables. Money is integer minor units plus an ISO 4217 currency; every datetime is aware UTC.

These classes are storage only: API schemas live in ``api/schemas`` and never expose
lease columns, tokens or hashes. Unique keys here are what the engine's guarantees rest on:
one charge per (subscription, period, attempt, method), one idempotency record per
(client, key), one ``externalId`` per client, one delivery per (endpoint, event). Every primary
and unique key of a client-owned table includes ``client_id``, the column the tables would be
distributed by on Citus (docs/scaling.md), and so does every reference from one client-owned
table to another; the ORM still identifies a row by ``id`` alone (``identity_by_id``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONColumn = sa.JSON().with_variant(JSONB(), "postgresql")
ID = 40  # prefixed ULIDs are 30 characters; room for longer external ids


def identity_by_id() -> dict[str, Any]:
    """Mapper arguments of a table keyed by `(id, client_id)`: the ORM still knows a row by `id` alone,
    so `session.get(Model, id)` and every statement written against the id keep working."""
    return {"primary_key": ["id"]}


def same_client(column: str, parent: str) -> sa.ForeignKeyConstraint:
    """`(client_id, column) REFERENCES parent (client_id, id)`: a row refers only to its own client's
    rows, and the key holds inside one shard when the tables are distributed by client."""
    return sa.ForeignKeyConstraint(["client_id", column], [f"{parent}.client_id", f"{parent}.id"])


class Client(SQLModel, table=True):
    """A merchant (tenant). Everything else belongs to exactly one client."""

    __tablename__ = "client"

    id: str = Field(primary_key=True, max_length=ID)
    name: str = Field(max_length=200)
    timezone: str = Field(default="America/Guatemala", max_length=64)
    environment: str = Field(default="sandbox", max_length=16)  # sandbox | production
    signing_required: bool = Field(default=True)
    # Request signature scheme: v2 (method, path, query, Idempotency-Key and body) or, for sandbox
    # clients that need Migo compatibility, v1 (timestamp and body only).
    signature_scheme: str = Field(default="v2", max_length=8, sa_column_kwargs={"server_default": "v2"})
    # Sandbox clock: this client's "now" is the real time plus this offset (never negative).
    clock_offset_seconds: int = Field(default=0, sa_type=sa.BigInteger)
    created_at: datetime


class SigningKey(SQLModel, table=True):
    """An Ed25519 public key a client signs logins and requests with."""

    __tablename__ = "signing_key"
    __mapper_args__ = identity_by_id()

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    public_key: str = Field(max_length=64)  # base64 of the 32 raw bytes
    expires_at: datetime
    revoked_at: datetime | None = None
    created_at: datetime


class RefreshToken(SQLModel, table=True):
    """Opaque single-use refresh tokens, stored hashed; a family shares one login."""

    __tablename__ = "refresh_token"
    __mapper_args__ = identity_by_id()
    __table_args__ = (sa.UniqueConstraint("client_id", "token_hash"),)

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    family_id: str = Field(index=True, max_length=ID)
    token_hash: str = Field(max_length=64)
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime


class SeenSignature(SQLModel, table=True):
    """A signed message already accepted: the same signature is never accepted twice (replay).

    Kept until its timestamp leaves the tolerance window; after that the timestamp check refuses it.
    """

    __tablename__ = "seen_signature"

    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    digest: str = Field(primary_key=True, max_length=64)  # SHA-256 of the signed message
    expires_at: datetime = Field(index=True)


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a POST carrying an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_record"
    __mapper_args__ = identity_by_id()
    __table_args__ = (sa.UniqueConstraint("client_id", "key"),)

    id: int | None = Field(default=None, primary_key=True, sa_column_kwargs={"autoincrement": True})
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    key: str = Field(max_length=255)
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    response_body: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    response_content_type: str | None = Field(default=None, max_length=100)
    created_at: datetime
    expires_at: datetime = Field(index=True)


class Plan(SQLModel, table=True):
    """What a subscription charges and when."""

    __tablename__ = "plan"
    __mapper_args__ = identity_by_id()

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    name: str = Field(max_length=200)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    type: str = Field(max_length=16)  # interval | fixedDay | anniversary
    frequency: int | None = None  # days (interval) or months (anniversary)
    frequency_day: int | None = None  # day of month (fixedDay)
    short_description: str | None = Field(default=None, max_length=200)
    long_description: str | None = Field(default=None, max_length=2000)
    methods: list[str] = Field(default_factory=list, sa_type=JSONColumn)
    installments: list[int] = Field(default_factory=list, sa_type=JSONColumn)
    auto_renewal: bool = True
    cycles: int | None = None
    trial_days: int = 0
    daily_attempts: int | None = None
    interval_attempt_hours: float | None = None
    grace_days: int | None = None
    grace_policy: str | None = Field(default=None, max_length=100)
    days_notify_expiring_card: int | None = None
    # The least time the enrolment charge pays for; None = half the plan's shortest period.
    minimum_first_period_hours: float | None = None
    status: str = Field(default="active", max_length=16)
    created_at: datetime
    updated_at: datetime


class Transaction(SQLModel, table=True):
    """The originating transaction an enrolment is verified against, and its payment link.

    The link (`/pay/{reference}`) enrols in `plan_id` when set, else verifies and saves the card;
    it works until `link_expires_at` (None: created before links existed, never open) and locks
    once `link_declines` reaches the configured limit.
    """

    __tablename__ = "transaction"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        sa.UniqueConstraint("client_id", "external_id"),
        # The payment page finds its transaction by reference alone (the link carries no client).
        sa.Index("ix_transaction_reference", "reference"),
    )

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    user_id: str = Field(max_length=200)
    external_id: str | None = Field(default=None, max_length=200)
    reference: str = Field(max_length=64)
    channel: str | None = Field(default=None, max_length=32)
    status: str = Field(default="created", max_length=16)  # created | enrolling | used
    created_at: datetime
    plan_id: str | None = Field(default=None, max_length=ID)
    return_url: str | None = Field(default=None, max_length=2000)
    link_expires_at: datetime | None = None
    link_declines: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PaymentLinkAttempt(SQLModel, table=True):
    """One card submitted on a payment page, kept for the per-IP attempt limit.

    Engine-wide rather than per client: a card-testing run moves from one merchant's link to
    another's. `ip_key` is a keyed hash of the address, never the address itself. Rows older than
    the limit's window are deleted as new ones arrive.
    """

    __tablename__ = "payment_link_attempt"
    __table_args__ = (
        sa.Index("ix_payment_link_attempt_ip", "ip_key", "attempted_at"),
        sa.Index("ix_payment_link_attempt_at", "attempted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ip_key: str = Field(max_length=64)
    trx_id: str = Field(max_length=ID)
    attempted_at: datetime


class PaymentMethod(SQLModel, table=True):
    """A processor token for one cardholder of one client. Never a PAN or CVV."""

    __tablename__ = "payment_method"
    __mapper_args__ = identity_by_id()
    __table_args__ = (sa.Index("ix_payment_method_client_user", "client_id", "user_id"),)

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    user_id: str = Field(max_length=200)
    processor: str = Field(max_length=32)
    token: str = Field(max_length=255)
    brand: str | None = Field(default=None, max_length=32)
    last4: str | None = Field(default=None, max_length=4)
    exp_month: int | None = None
    exp_year: int | None = None
    alias: str | None = Field(default=None, max_length=100)
    priority: int = 0  # order of addition among a cardholder's cards; fallbacks are per subscription
    status: str = Field(default="active", max_length=16)  # active | removed
    expiry_notified_at: datetime | None = None
    created_at: datetime


class Subscription(SQLModel, table=True):
    """A cardholder on a plan. ``status`` is one of exactly four values."""

    __tablename__ = "subscription"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        same_client("plan_id", "plan"),
        same_client("trx_id", "transaction"),
        same_client("default_payment_method_id", "payment_method"),
        sa.Index("ix_subscription_due", "status", "next_attempt_at"),
        sa.Index("ix_subscription_client_user", "client_id", "user_id"),
    )

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    user_id: str = Field(max_length=200)
    plan_id: str = Field(index=True, max_length=ID)
    currency: str = Field(max_length=3)
    trx_id: str | None = Field(default=None, max_length=ID)
    notification_email: str | None = Field(default=None, max_length=320)
    default_payment_method_id: str | None = Field(default=None, max_length=ID)
    status: str = Field(default="active", max_length=16)  # active | cancelled | inactive | expired
    renewal_status: str = Field(default="current", max_length=16)  # current | in_grace | ended
    # Schedule, computed in the client's time zone from a fixed anchor (no drift).
    timezone: str = Field(max_length=64)
    anchor_date: date
    period_index: int = 0  # index of the period that is paid through current_period_end
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None  # = nextRenewalDate
    trial_ends_at: datetime | None = None
    cycles_paid: int = 0
    next_attempt_at: datetime | None = None  # when the worker should next act; NULL = nothing due
    # Grace episode.
    grace_started_at: datetime | None = None
    grace_attempts: int = 0
    grace_deadline: datetime | None = None  # end of the grace window (first failure + graceDays)
    grace_retry_at: datetime | None = None  # the episode's next scheduled retry; NULL = none scheduled
    grace_policy: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)
    # Worker lease.
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = None
    event_seq: int = 0
    cancelled_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class SubscriptionPaymentMethod(SQLModel, table=True):
    """A card that backs a subscription, in `position` order (lower first).

    The subscription's default is charged first whatever its position, then its other cards
    here by position: the fallbacks. Only these cards are ever charged for the subscription, not
    every card of the cardholder (docs/subscriptions.md, "Fallback cards").
    """

    __tablename__ = "subscription_payment_method"
    __table_args__ = (
        sa.Index("ix_subscription_payment_method_card", "client_id", "payment_method_id"),
        same_client("subscription_id", "subscription"),
        same_client("payment_method_id", "payment_method"),
    )

    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    subscription_id: str = Field(primary_key=True, max_length=ID)
    payment_method_id: str = Field(primary_key=True, max_length=ID)
    position: int


class Charge(SQLModel, table=True):
    """One billing event sent (or about to be sent) to a processor."""

    __tablename__ = "charge"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        same_client("subscription_id", "subscription"),
        same_client("payment_method_id", "payment_method"),
        same_client("batch_id", "batch"),
        sa.UniqueConstraint(
            "client_id",
            "subscription_id",
            "period_start",
            "attempt",
            "method_index",
            name="uq_charge_client_id_subscription_period_attempt_method",  # the convention's is too long
        ),
        sa.UniqueConstraint("client_id", "idempotency_key"),
        sa.Index("ix_charge_subscription_created", "subscription_id", "created_at"),
        sa.Index("ix_charge_state", "state", "updated_at"),
        sa.CheckConstraint(
            "refund_reserved_minor >= 0 AND refund_reserved_minor <= amount_minor",
            name="refund_within_amount",
        ),
    )

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    # NULL only for an enrolment charge whose subscription does not exist yet: the subscription
    # is created when (and only if) that first charge succeeds.
    subscription_id: str | None = Field(default=None, max_length=ID)
    kind: str = Field(max_length=16)  # enrolment | renewal | on_demand
    amount_minor: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    payment_method_id: str | None = Field(default=None, max_length=ID)
    processor: str = Field(max_length=32)
    period_start: datetime | None = None  # the period a renewal pays; NULL for on-demand
    period_index: int | None = None
    attempt: int = 1
    method_index: int = 0  # 0 = default method, 1.. = fallbacks in order
    state: str = Field(default="pending", max_length=16)  # pending|succeeded|failed|unknown|settled
    decline_code: str | None = Field(default=None, max_length=8)
    decline_message: str | None = Field(default=None, max_length=500)
    hard_decline: bool = False
    processor_reference: str | None = Field(default=None, max_length=255)
    idempotency_key: str = Field(max_length=255)
    batch_id: str | None = Field(default=None, max_length=ID)
    batch_index: int | None = None
    charge_metadata: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)
    expected_settlement_date: date | None = None
    settled_at: datetime | None = None
    # What refunds hold on this charge: pending, unknown and succeeded ones (a failed refund gives
    # its amount back). Raised only by a conditional UPDATE, never read-then-written (refunds.py).
    refund_reserved_minor: int = Field(
        default=0, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    created_at: datetime
    updated_at: datetime


class Refund(SQLModel, table=True):
    """Money given back on a charge: a refund, or a void of a charge not yet settled.

    `pending` is committed (and the amount reserved on the charge) before the processor is
    called; a lost answer leaves it `unknown` until the reconciliation pass looks its key up.
    """

    __tablename__ = "refund"
    __table_args__ = (
        same_client("charge_id", "charge"),
        sa.UniqueConstraint("client_id", "idempotency_key"),
        sa.UniqueConstraint("client_id", "request_key"),
        sa.Index("ix_refund_charge", "charge_id", "created_at"),
        sa.Index("ix_refund_state", "state", "updated_at"),
    )

    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    id: str = Field(primary_key=True, max_length=ID)
    charge_id: str = Field(max_length=ID)
    subscription_id: str | None = Field(default=None, max_length=ID)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    method: str = Field(max_length=8)  # refund | void (what the engine asks the processor for)
    state: str = Field(default="pending", max_length=16)  # pending | succeeded | failed | unknown
    reason: str | None = Field(default=None, max_length=500)
    processor: str = Field(max_length=32)
    idempotency_key: str = Field(max_length=255)  # sent to the processor
    request_key: str | None = Field(default=None, max_length=255)  # the merchant's Idempotency-Key
    processor_reference: str | None = Field(default=None, max_length=255)
    failure_code: str | None = Field(default=None, max_length=8)
    failure_message: str | None = Field(default=None, max_length=500)
    created_at: datetime
    updated_at: datetime


class Batch(SQLModel, table=True):
    """An on-demand batch, from JSON or a CSV upload."""

    __tablename__ = "batch"
    __mapper_args__ = identity_by_id()
    __table_args__ = (sa.UniqueConstraint("client_id", "tracking_id"),)

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    source: str = Field(max_length=8)  # json | csv
    tracking_id: str | None = Field(default=None, max_length=64)
    filename: str | None = Field(default=None, max_length=255)
    status: str = Field(default="queued", max_length=16)  # queued | processing | completed
    total: int = 0
    accepted: int = 0
    rejected: int = 0
    succeeded: int = 0
    failed: int = 0
    created_at: datetime
    completed_at: datetime | None = None


class BatchItem(SQLModel, table=True):
    """One row of a batch with its own outcome."""

    __tablename__ = "batch_item"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        same_client("batch_id", "batch"),
        sa.UniqueConstraint("client_id", "batch_id", "item_index"),
        sa.Index("ix_batch_item_due", "state", "batch_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_column_kwargs={"autoincrement": True})
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)  # the batch's client
    batch_id: str = Field(max_length=ID)
    item_index: int  # 0-based position in the JSON list, or the CSV line number
    subscription_id: str | None = Field(default=None, max_length=200)
    amount_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    currency: str | None = Field(default=None, max_length=3)
    item_metadata: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)
    raw: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)  # input as received, for reports
    state: str = Field(default="queued", max_length=16)  # queued|rejected|pending|succeeded|failed|unknown
    error_code: str | None = Field(default=None, max_length=8)
    error_message: str | None = Field(default=None, max_length=500)
    charge_id: str | None = Field(default=None, max_length=ID)
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = None


class Event(SQLModel, table=True):
    """Something that happened, written in the same transaction as the change (outbox)."""

    __tablename__ = "event"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        sa.Index("ix_event_client_id", "client_id", "id"),
        sa.UniqueConstraint("client_id", "subscription_id", "sequence"),
        sa.Index("ix_event_undispatched", "dispatched_at", "id"),
        sa.Index("ix_event_created", "client_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    type: str = Field(max_length=64)
    subscription_id: str | None = Field(default=None, max_length=ID)
    sequence: int | None = None  # per-subscription order
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    created_at: datetime
    dispatched_at: datetime | None = None  # deliveries created for the endpoints of its client


class WebhookEndpoint(SQLModel, table=True):
    """A merchant URL that receives signed event deliveries."""

    __tablename__ = "webhook_endpoint"
    __mapper_args__ = identity_by_id()

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", index=True, max_length=ID)
    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)  # still signs until the time below
    previous_secret_until: datetime | None = None
    event_types: list[str] = Field(default_factory=list, sa_type=JSONColumn)  # empty = all
    status: str = Field(default="enabled", max_length=16)  # enabled | disabled
    disabled_reason: str | None = Field(default=None, max_length=200)
    consecutive_failures: int = 0
    circuit_open_until: datetime | None = None  # left alone until then after repeated failures
    created_at: datetime
    updated_at: datetime | None = None
    disabled_at: datetime | None = None


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint, retried with backoff until delivered or abandoned."""

    __tablename__ = "webhook_delivery"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        same_client("endpoint_id", "webhook_endpoint"),
        same_client("event_id", "event"),
        sa.UniqueConstraint("client_id", "endpoint_id", "event_id"),
        # Only pending rows are ever claimed or hold back a later event: partial indexes stay as small
        # as the backlog however many delivered rows the table keeps, and serve the claim's ORDER BY.
        sa.Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            "id",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index(
            "ix_webhook_delivery_order",
            "endpoint_id",
            "subscription_id",
            "sequence",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_webhook_delivery_log", "endpoint_id", "id"),
    )

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)  # the endpoint's client
    endpoint_id: str = Field(max_length=ID)
    event_id: str = Field(max_length=ID)
    event_type: str = Field(max_length=64)
    subscription_id: str | None = Field(default=None, max_length=ID)  # with sequence: delivery order
    sequence: int | None = None
    status: str = Field(default="pending", max_length=16)  # pending | delivered | abandoned
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_latency_ms: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    last_response: str | None = Field(default=None, max_length=1100)  # the receiver's body, first 1 KB
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = None
    created_at: datetime
    queued_at: datetime  # when it was (re)queued: retries stop give_up_after_hours later
    delivered_at: datetime | None = None


class Notification(SQLModel, table=True):
    """An e-mail to a subscription's notificationEmail, written with the event that caused it and
    sent by the notification pass, retried with backoff until sent or abandoned."""

    __tablename__ = "notification"
    __mapper_args__ = identity_by_id()
    __table_args__ = (
        sa.Index("ix_notification_due", "status", "next_attempt_at"),
        sa.Index("ix_notification_subscription", "client_id", "subscription_id", "occurred_at"),
        sa.UniqueConstraint("client_id", "event_id"),
    )

    id: str = Field(primary_key=True, max_length=ID)
    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    event_id: str = Field(max_length=ID)  # the event that caused it: one e-mail per event
    subscription_id: str | None = Field(default=None, max_length=ID)
    template: str = Field(max_length=64)  # subPayProblem | subscriptionSuspended | cardExpiring ...
    to_address: str = Field(max_length=320)
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    status: str = Field(default="pending", max_length=16)  # pending | sent | abandoned
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = None
    occurred_at: datetime  # the event's time (the client's clock: sandbox clocks run ahead)
    first_attempt_at: datetime | None = None  # real time; retries stop 3 days later
    sent_at: datetime | None = None


class NotificationSetting(SQLModel, table=True):
    """A client's e-mail notification choices; no row means the defaults."""

    __tablename__ = "notification_setting"

    client_id: str = Field(primary_key=True, foreign_key="client.id", max_length=ID)
    disabled: list[str] = Field(default_factory=list, sa_type=JSONColumn)  # template names turned off
    locale: str = Field(default="es", max_length=8)  # es | en
    each_attempt: bool = False  # subPayProblem after every failed retry, not only the first failure
    sender_name: str | None = Field(default=None, max_length=100)
    reply_to: str | None = Field(default=None, max_length=320)
    updated_at: datetime


class InboundNotification(SQLModel, table=True):
    """Processor notifications and settlement reports as received (dedupe on their event id).

    `resolution` says what the engine did with it (applied, confirmed, deferred, disputed,
    mismatch, unmatched, recorded, settled); `detail` keeps the notice as parsed and, for a
    settlement report, the rows that were not applied (`billing settlements mismatches`).
    """

    __tablename__ = "inbound_notification"
    __table_args__ = (
        sa.UniqueConstraint("source", "event_id"),
        sa.Index("ix_inbound_notification_resolution", "resolution", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)  # volcan | stripe | settlements
    event_id: str = Field(max_length=255)
    received_at: datetime
    type: str | None = Field(default=None, max_length=64)
    charge_id: str | None = Field(default=None, max_length=ID)
    resolution: str | None = Field(default=None, max_length=24)
    detail: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)


class WorkerHeartbeat(SQLModel, table=True):
    """One row per worker process, written on every tick: `billing status` and /metrics read who
    ran lately (`seen_at`), what its last tick did (`last_pass`: counts per pass) and its counters."""

    __tablename__ = "worker_heartbeat"

    id: str = Field(primary_key=True, max_length=200)  # the worker's lease identity (host:pid)
    host: str = Field(max_length=255)
    pid: int
    version: str = Field(max_length=32)
    started_at: datetime
    seen_at: datetime = Field(index=True)
    last_pass: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)
    last_pass_at: datetime | None = None
    # The worker's counters and pass-duration histograms since it started (billing.services.metrics).
    counters: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn)


ALL_TABLES = [
    Client,
    SigningKey,
    RefreshToken,
    SeenSignature,
    IdempotencyRecord,
    Plan,
    Transaction,
    PaymentMethod,
    Subscription,
    SubscriptionPaymentMethod,
    Charge,
    Refund,
    Batch,
    BatchItem,
    Event,
    WebhookEndpoint,
    WebhookDelivery,
    Notification,
    NotificationSetting,
    InboundNotification,
    WorkerHeartbeat,
    PaymentLinkAttempt,
]
