"""Reading one row of a client by its id, with the client in the query.

`WHERE client_id = :client AND id = :id` (rather than fetching by id and comparing the client
afterwards) is what lets a database sharded by client send the query to one shard
(docs/scaling.md). Another client's row is None, exactly like a missing one.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import bindparam
from sqlmodel import SQLModel, select

from billing.store.engine import Session

Row = TypeVar("Row", bound=SQLModel)

# One statement per model, built on first use: building it (and its cache key) on every read cost
# more than the rest of the ORM's work for it.
_BY_ID: dict[type[Any], Any] = {}


def _by_id(model: type[Row]) -> Any:
    query = _BY_ID.get(model)
    if query is None:
        columns: Any = model.__table__.c  # type: ignore[attr-defined]
        query = _BY_ID[model] = select(model).where(
            columns.client_id == bindparam("owner"), columns.id == bindparam("row_id")
        )
    return query


async def owned_row(session: Session, model: type[Row], client_id: str, row_id: str) -> Row | None:
    """The row of `model` with `row_id` if it belongs to `client_id`, else None."""
    row: Row | None = (
        await session.exec(_by_id(model), params={"owner": client_id, "row_id": row_id})
    ).first()
    return row
