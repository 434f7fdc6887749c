"""Partial indexes on pending webhook deliveries

The delivery claim reads pending rows in (next_attempt_at, id) order and checks that no earlier
event of the same subscription is still pending for the endpoint. Both indexes now cover only
pending rows: they stay as small as the backlog while delivered rows accumulate, and the claim's
ORDER BY ... LIMIT reads the first rows of the index instead of sorting every pending row.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-02 11:10:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: Union[str, None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_due')
        batch_op.drop_index('ix_webhook_delivery_order')
        batch_op.create_index(
            'ix_webhook_delivery_due',
            ['next_attempt_at', 'id'],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )
        batch_op.create_index(
            'ix_webhook_delivery_order',
            ['endpoint_id', 'subscription_id', 'sequence'],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_order')
        batch_op.drop_index('ix_webhook_delivery_due')
        batch_op.create_index('ix_webhook_delivery_order', ['endpoint_id', 'subscription_id', 'sequence'], unique=False)
        batch_op.create_index('ix_webhook_delivery_due', ['status', 'next_attempt_at'], unique=False)
