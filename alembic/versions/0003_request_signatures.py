"""Request signatures v2 and replay protection

`client.signature_scheme` says which signed message a client uses: v2 covers the method, path,
query string, Idempotency-Key and body; v1 (the body-only Migo form) stays for sandbox clients
that need it. Existing sandbox clients keep v1 so their integrations keep working; existing
production clients move to v2, which production requires.

`seen_signature` holds every accepted signed message until its timestamp leaves the tolerance
window, so the same signature is accepted once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'signature_scheme',
                sqlmodel.sql.sqltypes.AutoString(length=8),
                server_default='v2',
                nullable=False,
            )
        )
    op.execute("UPDATE client SET signature_scheme = 'v1' WHERE environment = 'sandbox'")
    op.create_table(
        'seen_signature',
        sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_seen_signature_client_id_client')),
        sa.PrimaryKeyConstraint('client_id', 'digest', name=op.f('pk_seen_signature')),
    )
    with op.batch_alter_table('seen_signature', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seen_signature_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('seen_signature', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seen_signature_expires_at'))
    op.drop_table('seen_signature')
    with op.batch_alter_table('client', schema=None) as batch_op:
        batch_op.drop_column('signature_scheme')
