"""Fallback cards per subscription: `subscription_payment_method`

Until now every active card of a cardholder backed each of their subscriptions: the default
first, then the cardholder's other cards by `priority`, then age. From now on a subscription is
backed only by the cards attached to it (`position` order, the default charged first).

The upgrade attaches to every existing subscription exactly the cards that back it today: its
default (when active) at position 0, then the cardholder's other active cards in the old
fallback order, so no existing subscription charges a different card after the migration.
Downgrade drops the table: the cardholder-wide order (`priority`) was never changed by it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sqlmodel.sql.sqltypes.AutoString(length=40)

# Window functions: PostgreSQL, and SQLite since 3.25.
_BACKFILL = """
INSERT INTO subscription_payment_method (client_id, subscription_id, payment_method_id, position)
SELECT s.client_id, s.id, pm.id,
       ROW_NUMBER() OVER (
           PARTITION BY s.id
           ORDER BY CASE WHEN pm.id = s.default_payment_method_id THEN 0 ELSE 1 END,
                    pm.priority, pm.created_at, pm.id
       ) - 1
FROM subscription s
JOIN payment_method pm
  ON pm.client_id = s.client_id AND pm.user_id = s.user_id AND pm.status = 'active'
"""


def upgrade() -> None:
    op.create_table(
        'subscription_payment_method',
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('subscription_id', _ID, nullable=False),
        sa.Column('payment_method_id', _ID, nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['client_id'], ['client.id'], name=op.f('fk_subscription_payment_method_client_id_client')
        ),
        sa.ForeignKeyConstraint(
            ['payment_method_id'],
            ['payment_method.id'],
            name=op.f('fk_subscription_payment_method_payment_method_id_payment_method'),
        ),
        sa.ForeignKeyConstraint(
            ['subscription_id'],
            ['subscription.id'],
            name=op.f('fk_subscription_payment_method_subscription_id_subscription'),
        ),
        sa.PrimaryKeyConstraint(
            'client_id', 'subscription_id', 'payment_method_id', name=op.f('pk_subscription_payment_method')
        ),
    )
    with op.batch_alter_table('subscription_payment_method', schema=None) as batch_op:
        batch_op.create_index(
            'ix_subscription_payment_method_card', ['client_id', 'payment_method_id'], unique=False
        )
    op.execute(_BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table('subscription_payment_method', schema=None) as batch_op:
        batch_op.drop_index('ix_subscription_payment_method_card')
    op.drop_table('subscription_payment_method')
