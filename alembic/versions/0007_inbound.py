"""Inbound notifications keep what they said and what the engine did with them

`inbound_notification` (deduplicated on source and event id since 0001) gains the notice's type,
the charge it concerns, its resolution and its parsed detail (for settlement reports, the rows
that were not applied).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('inbound_notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('charge_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True))
        batch_op.add_column(sa.Column('detail', _JSON, nullable=True))
        batch_op.create_index('ix_inbound_notification_resolution', ['resolution', 'received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_notification', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_notification_resolution')
        batch_op.drop_column('detail')
        batch_op.drop_column('resolution')
        batch_op.drop_column('charge_id')
        batch_op.drop_column('type')
