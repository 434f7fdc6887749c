"""Billing rules: `ended` renewal status, plans' minimum first period

plan.minimum_first_period_hours (nullable: half the plan's shortest period): the least time an
enrolment charge pays for before the first renewal.

An inactive, cancelled or expired subscription is retried no more: its renewal status becomes
`ended` and its grace retry time is cleared, so a merchant filtering on `in_grace` or on a
future retry no longer finds ended subscriptions. Downgrade restores the earlier values
(`in_grace` where an episode was recorded, else `current`); the cleared retry times are not
restored, since nothing retries an ended subscription.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:50:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('minimum_first_period_hours', sa.Float(), nullable=True))
    op.execute(
        "UPDATE subscription SET renewal_status = 'ended', grace_retry_at = NULL"
        " WHERE status IN ('inactive', 'cancelled', 'expired')"
    )


def downgrade() -> None:
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.drop_column('minimum_first_period_hours')
    op.execute(
        "UPDATE subscription SET renewal_status = CASE WHEN grace_started_at IS NULL"
        " THEN 'current' ELSE 'in_grace' END WHERE renewal_status = 'ended'"
    )
