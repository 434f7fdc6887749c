"""subscription.grace_retry_at: the grace episode's next scheduled retry

`next_attempt_at` is when the worker next looks at a subscription; in a grace episode that
is either a retry or the end of the grace window. When both fall on the same instant the
worker must still know whether a retry is owed, so the retry time gets its own column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 06:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grace_retry_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_column('grace_retry_at')
