"""A subscription's cards are read by key, whatever the number of cards its client holds.

Every subscription read (detail, list, payment page) asks for the cards behind a subscription. The
statement once filtered "the default card or an attached one" over a join of the client's cards, so
PostgreSQL read every card of the client to keep one (4 ms a read at 10,000 cards). The plan is
checked by what it touched, not by time: ``EXPLAIN ANALYZE`` counts the card rows each scan read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
from sqlalchemy.dialects import postgresql

from billing.store.payment_methods import _CARDS_OF_SUBSCRIPTION
from tests.store.query_plans import add_client, libpq, rows_read

CARDS = 2_000


def test_the_cards_of_a_subscription_are_read_by_key(postgres_database: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(libpq(postgres_database)) as conn:
        client = add_client(conn, "cli_cards", now)
        with conn.cursor().copy(
            "COPY payment_method (id, client_id, user_id, processor, token, priority, status, created_at)"
            " FROM STDIN"
        ) as copy:
            for n in range(CARDS):
                copy.write_row(
                    (f"pm_{client}_{n:05d}", client, f"user-{n}", "sandbox", f"tok_{n}", 0, "active", now)
                )
        conn.commit()
        conn.execute("ANALYZE payment_method")
        default = f"pm_{client}_{CARDS // 2:05d}"
        statement = _CARDS_OF_SUBSCRIPTION.params(
            subscription_id="sub_none", client_id=client, default_id=default
        )
        sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        rows = conn.execute(sql).fetchall()
        explained = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchone()
        assert explained is not None
        document = explained[0] if isinstance(explained[0], list) else json.loads(explained[0])
        conn.execute("DELETE FROM payment_method WHERE client_id = %s", (client,))
        conn.execute("DELETE FROM client WHERE id = %s", (client,))
        conn.commit()
    assert [row[0] for row in rows] == [default]
    read = rows_read(document[0]["Plan"], "payment_method")
    assert read <= 2, (read, json.dumps(document, indent=1)[:3000])
