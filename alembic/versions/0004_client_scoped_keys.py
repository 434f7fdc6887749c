"""Client-scoped unique keys: every unique key of a client-owned table includes client_id

Sharding by client (Citus) requires every unique constraint of a distributed table to contain
the distribution column, so the keys that were global become per client:

- charge: (client_id, idempotency_key), (client_id, subscription_id, period_start, attempt, method_index)
- event: (client_id, subscription_id, sequence)
- batch: (client_id, tracking_id)
- batch_item: (client_id, batch_id, item_index), with a new client_id column (the batch's client)
- webhook_delivery: (client_id, endpoint_id, event_id), with a new client_id column (the endpoint's)
- notification: (client_id, event_id)
- refresh_token: (client_id, token_hash)

The new columns are filled from the parent row before they become NOT NULL. The downgrade puts the
global keys back; it fails if two clients have meanwhile used the same key (it would have to drop
one of them to succeed).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:45:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# table -> (old unique columns, new unique columns)
_KEYS: dict[str, list[tuple[list[str], list[str]]]] = {
    'charge': [
        (['idempotency_key'], ['client_id', 'idempotency_key']),
        (
            ['subscription_id', 'period_start', 'attempt', 'method_index'],
            ['client_id', 'subscription_id', 'period_start', 'attempt', 'method_index'],
        ),
    ],
    'event': [(['subscription_id', 'sequence'], ['client_id', 'subscription_id', 'sequence'])],
    'batch': [(['tracking_id'], ['client_id', 'tracking_id'])],
    'batch_item': [(['batch_id', 'item_index'], ['client_id', 'batch_id', 'item_index'])],
    'webhook_delivery': [(['endpoint_id', 'event_id'], ['client_id', 'endpoint_id', 'event_id'])],
    'notification': [(['event_id'], ['client_id', 'event_id'])],
    'refresh_token': [(['token_hash'], ['client_id', 'token_hash'])],
}

# table -> (parent table, the column naming the parent row)
_NEW_CLIENT_COLUMNS: dict[str, tuple[str, str]] = {
    'batch_item': ('batch', 'batch_id'),
    'webhook_delivery': ('webhook_endpoint', 'endpoint_id'),
}


# Named explicitly where the naming convention's name would pass PostgreSQL's 63 characters.
_LONG_NAMES = {
    ('charge', 'client_id', 'subscription_id', 'period_start', 'attempt', 'method_index'): (
        'uq_charge_client_id_subscription_period_attempt_method'
    ),
}


def _uq(table: str, columns: list[str]) -> str:
    return _LONG_NAMES.get((table, *columns), f"uq_{table}_{'_'.join(columns)}")


def _swap_keys(table: str, batch_op, *, upgrading: bool) -> None:
    for old, new in _KEYS[table]:
        dropped, created = (old, new) if upgrading else (new, old)
        batch_op.drop_constraint(_uq(table, dropped), type_='unique')
        batch_op.create_unique_constraint(_uq(table, created), created)


def upgrade() -> None:
    for table, (parent, parent_column) in _NEW_CLIENT_COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        op.execute(
            f'UPDATE {table} SET client_id = '
            f'(SELECT {parent}.client_id FROM {parent} WHERE {parent}.id = {table}.{parent_column})'
        )
    for table in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table in _NEW_CLIENT_COLUMNS:
                batch_op.alter_column(
                    'client_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
                )
                batch_op.create_foreign_key(
                    batch_op.f(f'fk_{table}_client_id_client'), 'client', ['client_id'], ['id']
                )
            _swap_keys(table, batch_op, upgrading=True)


def downgrade() -> None:
    for table in _KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            _swap_keys(table, batch_op, upgrading=False)
            if table in _NEW_CLIENT_COLUMNS:
                batch_op.drop_constraint(batch_op.f(f'fk_{table}_client_id_client'), type_='foreignkey')
                batch_op.drop_column('client_id')
