"""Refunds and voids: the refund table and what refunds hold on each charge

`charge.refund_reserved_minor` is what pending, unknown and succeeded refunds hold on the charge;
a CHECK keeps it between 0 and the charge's amount, so no interleaving of refunds can give back
more than was captured.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sqlmodel.sql.sqltypes.AutoString(length=40)
_WHEN = sqlmodel.sql.sqltypes.UTCDateTime()


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table('charge', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_reserved_minor', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_check_constraint(
            'refund_within_amount', 'refund_reserved_minor >= 0 AND refund_reserved_minor <= amount_minor'
        )
    op.create_table(
        'refund',
        sa.Column('client_id', _ID, nullable=False),
        sa.Column('id', _ID, nullable=False),
        sa.Column('charge_id', _ID, nullable=False),
        sa.Column('subscription_id', _ID, nullable=True),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', _text(3), nullable=False),
        sa.Column('method', _text(8), nullable=False),
        sa.Column('state', _text(16), nullable=False),
        sa.Column('reason', _text(500), nullable=True),
        sa.Column('processor', _text(32), nullable=False),
        sa.Column('idempotency_key', _text(255), nullable=False),
        sa.Column('request_key', _text(255), nullable=True),
        sa.Column('processor_reference', _text(255), nullable=True),
        sa.Column('failure_code', _text(8), nullable=True),
        sa.Column('failure_message', _text(500), nullable=True),
        sa.Column('created_at', _WHEN, nullable=False),
        sa.Column('updated_at', _WHEN, nullable=False),
        sa.ForeignKeyConstraint(['charge_id'], ['charge.id'], name=op.f('fk_refund_charge_id_charge')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_refund_client_id_client')),
        sa.PrimaryKeyConstraint('client_id', 'id', name=op.f('pk_refund')),
        sa.UniqueConstraint('client_id', 'idempotency_key', name=op.f('uq_refund_client_id_idempotency_key')),
        sa.UniqueConstraint('client_id', 'request_key', name=op.f('uq_refund_client_id_request_key')),
    )
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.create_index('ix_refund_charge', ['charge_id', 'created_at'], unique=False)
        batch_op.create_index('ix_refund_state', ['state', 'updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.drop_index('ix_refund_state')
        batch_op.drop_index('ix_refund_charge')
    op.drop_table('refund')
    with op.batch_alter_table('charge', schema=None) as batch_op:
        batch_op.drop_constraint('refund_within_amount', type_='check')
        batch_op.drop_column('refund_reserved_minor')
