"""Worker heartbeats: one row per worker process, for `billing status` and /metrics

Each worker upserts its row (host, pid, version, when it started, when it was last seen, what its
last tick did, its counters and pass-duration histograms since it started) on every tick; any API
process's /metrics exports those counters. Rows not seen for a week are dropped by the workers.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 10:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_WHEN = sqlmodel.sql.sqltypes.UTCDateTime()
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        'worker_heartbeat',
        sa.Column('id', _text(200), nullable=False),
        sa.Column('host', _text(255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('version', _text(32), nullable=False),
        sa.Column('started_at', _WHEN, nullable=False),
        sa.Column('seen_at', _WHEN, nullable=False),
        sa.Column('last_pass', _JSON, nullable=True),
        sa.Column('last_pass_at', _WHEN, nullable=True),
        sa.Column('counters', _JSON, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_heartbeat')),
    )
    with op.batch_alter_table('worker_heartbeat', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_heartbeat_seen_at'), ['seen_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('worker_heartbeat', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_heartbeat_seen_at'))
    op.drop_table('worker_heartbeat')
