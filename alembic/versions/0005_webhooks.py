"""Webhook endpoints and deliveries as the delivery system uses them; events marked when dispatched

No earlier version wrote `webhook_endpoint` or `webhook_delivery`, so both are recreated in their
new shape. `event.dispatched_at` marks events whose deliveries exist; events written before this
revision are marked dispatched (no endpoint existed to receive them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sqlmodel.sql.sqltypes.AutoString(length=40)
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime()
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.drop_table('webhook_delivery')
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_endpoint_client_id'))
    op.drop_table('webhook_endpoint')
    op.create_table(
        'webhook_endpoint',
        sa.Column('id', _ID, nullable=False),
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('url', _text(2000), nullable=False),
        sa.Column('description', _text(500), nullable=True),
        sa.Column('secret', _text(100), nullable=False),
        sa.Column('previous_secret', _text(100), nullable=True),
        sa.Column('previous_secret_until', _WHEN, nullable=True),
        sa.Column('event_types', _JSON, nullable=False),
        sa.Column('status', _text(16), nullable=False),
        sa.Column('disabled_reason', _text(200), nullable=True),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('circuit_open_until', _WHEN, nullable=True),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('updated_at', _WHEN, nullable=True),
        sa.Column('disabled_at', _WHEN, nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_webhook_endpoint_client_id_client')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint')),
    )
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_endpoint_client_id'), ['client_id'], unique=False)
    op.create_table(
        'webhook_delivery',
        sa.Column('id', _ID, nullable=False),
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('endpoint_id', _ID, nullable=False),
        sa.Column('event_id', _ID, nullable=False),
        sa.Column('event_type', _text(64), nullable=False),
        sa.Column('subscription_id', _ID, nullable=True),
        sa.Column('sequence', sa.Integer(), nullable=True),
        sa.Column('status', _text(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', _WHEN, nullable=True),
        sa.Column('last_attempt_at', _WHEN, nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_latency_ms', sa.Integer(), nullable=True),
        sa.Column('last_error', _text(500), nullable=True),
        sa.Column('last_response', _text(1100), nullable=True),
        sa.Column('lease_owner', _text(200), nullable=True),
        sa.Column('lease_until', _WHEN, nullable=True),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('queued_at', _WHEN, nullable=False),
        sa.Column('delivered_at', _WHEN, nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_webhook_delivery_client_id_client')),
        sa.ForeignKeyConstraint(
            ['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint')
        ),
        sa.ForeignKeyConstraint(['event_id'], ['event.id'], name=op.f('fk_webhook_delivery_event_id_event')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
        sa.UniqueConstraint(
            'client_id', 'endpoint_id', 'event_id', name=op.f('uq_webhook_delivery_client_id_endpoint_id_event_id')
        ),
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(
            'ix_webhook_delivery_order', ['endpoint_id', 'subscription_id', 'sequence'], unique=False
        )
        batch_op.create_index('ix_webhook_delivery_log', ['endpoint_id', 'id'], unique=False)
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dispatched_at', _WHEN, nullable=True))
        batch_op.create_index('ix_event_undispatched', ['dispatched_at', 'id'], unique=False)
        batch_op.create_index('ix_event_created', ['client_id', 'created_at'], unique=False)
    op.execute("UPDATE event SET dispatched_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_created')
        batch_op.drop_index('ix_event_undispatched')
        batch_op.drop_column('dispatched_at')
    op.drop_table('webhook_delivery')
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_endpoint_client_id'))
    op.drop_table('webhook_endpoint')
    op.create_table(
        'webhook_endpoint',
        sa.Column('id', _ID, nullable=False),
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('url', _text(2000), nullable=False),
        sa.Column('secret', _text(100), nullable=False),
        sa.Column('event_types', _JSON, nullable=False),
        sa.Column('status', _text(16), nullable=False),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('disabled_at', _WHEN, nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_webhook_endpoint_client_id_client')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint')),
    )
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_endpoint_client_id'), ['client_id'], unique=False)
    op.create_table(
        'webhook_delivery',
        sa.Column('id', _ID, nullable=False),
        sa.Column('endpoint_id', _ID, nullable=False),
        sa.Column('event_id', _ID, nullable=False),
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('status', _text(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', _WHEN, nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', _text(500), nullable=True),
        sa.Column('lease_until', _WHEN, nullable=True),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('delivered_at', _WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint')
        ),
        sa.ForeignKeyConstraint(['event_id'], ['event.id'], name=op.f('fk_webhook_delivery_event_id_event')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_webhook_delivery_client_id_client')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
        sa.UniqueConstraint(
            'client_id', 'endpoint_id', 'event_id', name=op.f('uq_webhook_delivery_client_id_endpoint_id_event_id')
        ),
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_due', ['status', 'next_attempt_at'], unique=False)
