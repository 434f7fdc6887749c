"""E-mail notifications: the outbox in the shape the notification pass uses, and per-client settings

No earlier version wrote `notification`, so it is recreated: each row names its event (one e-mail
per event), its subscription, when the event happened, and carries a lease like webhook deliveries.
`notification_setting` holds a client's choices (types turned off, locale, sender name, reply-to).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sqlmodel.sql.sqltypes.AutoString(length=40)
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime()
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _drop_notification() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_due')
    op.drop_table('notification')


def upgrade() -> None:
    _drop_notification()
    op.create_table(
        'notification',
        sa.Column('id', _ID, nullable=False),
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('event_id', _ID, nullable=False),
        sa.Column('subscription_id', _ID, nullable=True),
        sa.Column('template', _text(64), nullable=False),
        sa.Column('to_address', _text(320), nullable=False),
        sa.Column('context', _JSON, nullable=False),
        sa.Column('status', _text(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', _WHEN, nullable=True),
        sa.Column('last_attempt_at', _WHEN, nullable=True),
        sa.Column('last_error', _text(500), nullable=True),
        sa.Column('lease_owner', _text(200), nullable=True),
        sa.Column('lease_until', _WHEN, nullable=True),
        sa.Column('occurred_at', _WHEN, nullable=False),
        sa.Column('first_attempt_at', _WHEN, nullable=True),
        sa.Column('sent_at', _WHEN, nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_notification_client_id_client')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification')),
        sa.UniqueConstraint('client_id', 'event_id', name=op.f('uq_notification_client_id_event_id')),
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(
            'ix_notification_subscription', ['client_id', 'subscription_id', 'occurred_at'], unique=False
        )
    op.create_table(
        'notification_setting',
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('disabled', _JSON, nullable=False),
        sa.Column('locale', _text(8), nullable=False),
        sa.Column('each_attempt', sa.Boolean(), nullable=False),
        sa.Column('sender_name', _text(100), nullable=True),
        sa.Column('reply_to', _text(320), nullable=True),
        sa.Column('updated_at', _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ['client_id'], ['client.id'], name=op.f('fk_notification_setting_client_id_client')
        ),
        sa.PrimaryKeyConstraint('client_id', name=op.f('pk_notification_setting')),
    )


def downgrade() -> None:
    op.drop_table('notification_setting')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_subscription')
    _drop_notification()
    op.create_table(
        'notification',
        sa.Column('id', _ID, nullable=False),
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('event_id', _ID, nullable=True),
        sa.Column('template', _text(64), nullable=False),
        sa.Column('to_address', _text(320), nullable=False),
        sa.Column('context', _JSON, nullable=False),
        sa.Column('status', _text(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', _WHEN, nullable=True),
        sa.Column('last_error', _text(500), nullable=True),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('sent_at', _WHEN, nullable=True),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_notification_client_id_client')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification')),
        sa.UniqueConstraint('client_id', 'event_id', name=op.f('uq_notification_client_id_event_id')),
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_due', ['status', 'next_attempt_at'], unique=False)
