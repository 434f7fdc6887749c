"""Staleness on each client's own clock.

A merchant's request writes `updated_at` on its client's clock, which for a sandbox client may
run ahead of real time (`client.clock_offset_seconds`). A pass asking "was this row last touched
before real time T?" therefore asks, per client, "before T plus that client's offset": the
time that has passed for the client, whose clock only ever moves forward.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement


def touched_before(
    updated_at: Any, client_id: Any, before: datetime, offsets: Mapping[str, int]
) -> ColumnElement[bool]:
    """`updated_at < before`, judged on each client's clock (`offsets`: client id -> seconds ahead)."""
    if not offsets:
        return updated_at < before
    by_offset: dict[int, list[str]] = defaultdict(list)
    for client, offset in offsets.items():
        by_offset[offset].append(client)
    ahead = [client for clients in by_offset.values() for client in clients]
    return or_(
        and_(client_id.not_in(ahead), updated_at < before),
        *(
            and_(client_id.in_(clients), updated_at < before + timedelta(seconds=offset))
            for offset, clients in by_offset.items()
        ),
    )
