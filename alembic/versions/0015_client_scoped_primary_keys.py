"""Client-scoped primary and foreign keys: every key of a client-owned table includes client_id

Sharding by client (Citus) requires the distribution column in every primary key of a distributed
table and in every foreign key between two distributed tables. Migration 0004 scoped the unique
keys; this one does the rest:

- the primary key of each client-owned table keyed by the bare `id` becomes `(id, client_id)`:
  `id` first, so every lookup by id still reads the primary key's index;
- each foreign key between client-owned tables becomes `(client_id, x_id) REFERENCES parent
  (client_id, id)`, which also makes the database refuse a row pointing at another client's parent.

On SQLite, `idempotency_record` and `batch_item` keep their single-column `INTEGER PRIMARY KEY`:
only that form takes its value from the rowid there, and nothing references either table.

The upgrade refuses to run (changing nothing) if a row already references a parent row of another
client; the downgrade restores the 0014 keys exactly.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 09:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: Union[str, None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Client-owned tables whose primary key was the bare id, parents before children.
_KEYED_BY_ID = [
    'signing_key',
    'refresh_token',
    'idempotency_record',
    'plan',
    'transaction',
    'payment_method',
    'subscription',
    'batch',
    'charge',
    'batch_item',
    'event',
    'webhook_endpoint',
    'webhook_delivery',
    'notification',
]

# Only a single-column INTEGER PRIMARY KEY is the rowid on SQLite (and takes its values from it).
_SQLITE_ROWID_KEYS = {'idempotency_record', 'batch_item'}

# child table -> [(column naming the parent row, parent table)]
_REFERENCES: dict[str, list[tuple[str, str]]] = {
    'subscription': [
        ('plan_id', 'plan'),
        ('trx_id', 'transaction'),
        ('default_payment_method_id', 'payment_method'),
    ],
    'subscription_payment_method': [
        ('subscription_id', 'subscription'),
        ('payment_method_id', 'payment_method'),
    ],
    'charge': [
        ('subscription_id', 'subscription'),
        ('payment_method_id', 'payment_method'),
        ('batch_id', 'batch'),
    ],
    'refund': [('charge_id', 'charge')],
    'batch_item': [('batch_id', 'batch')],
    'webhook_delivery': [('endpoint_id', 'webhook_endpoint'), ('event_id', 'event')],
}

# Every table this migration changes, parents before children.
_TABLES = _KEYED_BY_ID + [t for t in _REFERENCES if t not in _KEYED_BY_ID]


def _global_fk(table: str, column: str, parent: str) -> str:
    return f'fk_{table}_{column}_{parent}'


def _client_fk(table: str, parent: str) -> str:
    return f'fk_{table}_client_id_{parent}'


def _drop_foreign_keys(batch_op, table: str, *, upgrading: bool) -> None:
    for column, parent in _REFERENCES.get(table, []):
        name = _global_fk(table, column, parent) if upgrading else _client_fk(table, parent)
        batch_op.drop_constraint(name, type_='foreignkey')


def _create_foreign_keys(batch_op, table: str, *, upgrading: bool) -> None:
    for column, parent in _REFERENCES.get(table, []):
        if upgrading:
            batch_op.create_foreign_key(
                _client_fk(table, parent), parent, ['client_id', column], ['client_id', 'id']
            )
        else:
            batch_op.create_foreign_key(_global_fk(table, column, parent), parent, [column], ['id'])


def _swap_primary_key(batch_op, table: str, *, upgrading: bool, sqlite: bool) -> None:
    if table not in _KEYED_BY_ID or (sqlite and table in _SQLITE_ROWID_KEYS):
        return
    batch_op.drop_constraint(f'pk_{table}', type_='primary')
    batch_op.create_primary_key(f'pk_{table}', ['id', 'client_id'] if upgrading else ['id'])


def _refuse_references_across_clients(bind) -> None:
    """Stop before changing anything if a row points at a parent row of another client."""
    crossing = []
    for table, references in _REFERENCES.items():
        for column, parent in references:
            count = bind.execute(
                sa.text(
                    f'SELECT count(*) FROM "{table}" AS c JOIN "{parent}" AS p ON p.id = c.{column}'  # noqa: S608
                    ' WHERE p.client_id <> c.client_id'
                )
            ).scalar_one()
            if count:
                crossing.append(f'{table}.{column}: {count} row(s) reference a {parent} of another client')
    if crossing:
        raise RuntimeError(
            'Migration 0015 stopped before changing anything: every reference between client-owned rows '
            'must stay within one client. Fix these rows first:\n  ' + '\n  '.join(crossing)
        )


def _check_sqlite_foreign_keys(bind, when: str) -> None:
    broken = bind.execute(sa.text('PRAGMA foreign_key_check')).all()
    if broken:
        rows = ', '.join(f'{row[0]} rowid {row[1]} -> {row[2]}' for row in broken[:20])
        raise RuntimeError(f'Migration 0015: foreign key violations {when}: {rows}')


def _migrate(*, upgrading: bool) -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    if upgrading:
        _refuse_references_across_clients(bind)
    if sqlite:
        # One rebuild per table. Foreign keys are not enforced while alembic migrates SQLite, so
        # the whole database is checked before and after.
        _check_sqlite_foreign_keys(bind, 'before the migration')
        for table in _TABLES if upgrading else reversed(_TABLES):
            with op.batch_alter_table(table, schema=None) as batch_op:
                _drop_foreign_keys(batch_op, table, upgrading=upgrading)
                _swap_primary_key(batch_op, table, upgrading=upgrading, sqlite=True)
                _create_foreign_keys(batch_op, table, upgrading=upgrading)
        _check_sqlite_foreign_keys(bind, 'after the migration')
        return
    # PostgreSQL: a primary key can only be replaced once no foreign key depends on it.
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            _drop_foreign_keys(batch_op, table, upgrading=upgrading)
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            _swap_primary_key(batch_op, table, upgrading=upgrading, sqlite=False)
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            _create_foreign_keys(batch_op, table, upgrading=upgrading)


def upgrade() -> None:
    _migrate(upgrading=True)


def downgrade() -> None:
    _migrate(upgrading=False)
