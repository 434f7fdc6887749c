"""Payment links: the hosted enrolment page's transaction fields and its per-IP attempt log

transaction.plan_id (the plan the link enrols in; null: the link verifies and saves the card),
return_url (where the cardholder goes after enrolling), link_expires_at (null for transactions
created before links existed: their link never opens) and link_declines (the link locks at the
configured limit); an index on transaction.reference, by which the page finds its transaction.
payment_link_attempt: one row per card submitted on a payment page (keyed hash of the address),
for the per-IP limit across processes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_WHEN = sqlmodel.sql.sqltypes.UTCDateTime()


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table('transaction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_id', _text(40), nullable=True))
        batch_op.add_column(sa.Column('return_url', _text(2000), nullable=True))
        batch_op.add_column(sa.Column('link_expires_at', _WHEN, nullable=True))
        batch_op.add_column(sa.Column('link_declines', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_transaction_reference', ['reference'], unique=False)
    op.create_table(
        'payment_link_attempt',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ip_key', _text(64), nullable=False),
        sa.Column('trx_id', _text(40), nullable=False),
        sa.Column('attempted_at', _WHEN, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_link_attempt')),
    )
    with op.batch_alter_table('payment_link_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_payment_link_attempt_ip', ['ip_key', 'attempted_at'], unique=False)
        batch_op.create_index('ix_payment_link_attempt_at', ['attempted_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payment_link_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_link_attempt_at')
        batch_op.drop_index('ix_payment_link_attempt_ip')
    op.drop_table('payment_link_attempt')
    with op.batch_alter_table('transaction', schema=None) as batch_op:
        batch_op.drop_index('ix_transaction_reference')
        batch_op.drop_column('link_declines')
        batch_op.drop_column('link_expires_at')
        batch_op.drop_column('return_url')
        batch_op.drop_column('plan_id')
