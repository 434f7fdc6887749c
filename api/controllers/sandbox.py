"""`GET/POST /v1/sandbox/clock`: a sandbox client reads or moves its own clock (ours, beyond Migo)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.schemas.sandbox import AdvanceClockIn, ClockOut, clock_out
from api.schemas.wire import render, responses
from billing.services import sandbox_clock
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime


class SandboxClockController(Controller):
    path = "/v1/sandbox/clock"
    tags = ["sandbox"]

    @get("/", operation_id="GetSandboxClock", responses=responses(200, ClockOut, "The client's clock", 403))
    async def read(
        self, runtime: NamedDependency[Runtime], merchant: NamedDependency[AuthenticatedClient]
    ) -> dict[str, Any]:
        """This client's now: real time plus how far its sandbox clock was advanced.

        Errors: 7020 (403) for production clients.
        """
        clock = await sandbox_clock.read_clock(runtime, merchant.id)
        return render(clock_out(clock), "Sandbox clock")

    @post(
        "/",
        operation_id="AdvanceSandboxClock",
        status_code=200,
        responses=responses(200, ClockOut, "Clock advanced", 403, 503),
    )
    async def advance(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[AdvanceClockIn],
    ) -> dict[str, Any]:
        """Move this client's clock forward to `to`, or by `advanceSeconds`.

        Every renewal, grace retry, grace deadline and fixed-term expiry of this client that
        falls inside the jump runs before the call answers, in order, each at the instant it
        was due (charges, events and webhooks carry those instants). Other clients are not
        affected. The clock never moves back.
        Errors: 7000 naming `to` or `advanceSeconds` (both or neither, not ISO-8601, no offset,
        in the past, longer than 3660 days), 7020 (403) production client, 7019 (503) the
        processor stopped answering (what ran stays done; the clock did not move).
        """
        clock = await sandbox_clock.advance_clock(
            runtime, merchant.id, to=data.target(), advance_seconds=data.seconds()
        )
        return render(clock_out(clock), "Sandbox clock advanced")
