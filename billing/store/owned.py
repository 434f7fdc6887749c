"""Reading one row of a client by its id, with the client in the query.

`WHERE client_id = :client AND id = :id` (rather than fetching by id and comparing the client
afterwards) is what lets a database sharded by client send the query to one shard
(docs/scaling.md). Another client's row is None, exactly like a missing one.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlmodel import SQLModel, select

from billing.store.engine import Session

Row = TypeVar("Row", bound=SQLModel)


async def owned_row(session: Session, model: type[Row], client_id: str, row_id: str) -> Row | None:
    """The row of `model` with `row_id` if it belongs to `client_id`, else None."""
    columns: Any = model.__table__.c  # type: ignore[attr-defined]
    query = select(model).where(columns.client_id == client_id, columns.id == row_id)
    return (await session.exec(query)).first()
