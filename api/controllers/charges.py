"""On-demand charges: JSON batches, CSV uploads, and their progress reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.serialization import encode_json

from api.auth import clock_of, ensure_same_client
from api.envelope import ErrorEnvelope
from api.idempotency import claim_of_request
from api.schemas.charges import (
    BatchReceived,
    BatchStatus,
    ChargeBatchIn,
    CsvReceived,
    batch_received,
    batch_status,
)
from api.schemas.wire import render, responses
from billing.domain.errors import BillingError
from billing.services import idempotency, ondemand
from billing.services.auth import AuthenticatedClient
from billing.services.idempotency import Claim
from billing.services.runtime import Runtime
from billing.store.engine import Session
from billing.store.models import Batch

# Room for the multipart envelope around a file of exactly the limit; anything bigger is
# refused by Litestar while reading (413, 7017) and the file's own size is checked below.
_UPLOAD_BODY_LIMIT = ondemand.CSV_MAX_BYTES + 64 * 1024
_READ_CHUNK = 1024 * 1024

# Indexes are positions in a batch or CSV line numbers: far below 2**31, and a bound keeps
# absurd values (2**63 and up) away from the database's integer columns.
MAX_AFTER = 2**31 - 1
After = Annotated[
    int | None,
    QueryParameter(
        name="after",
        ge=0,
        le=MAX_AFTER,
        description="Return items after this index (the previous nextAfter).",
        schema_extra={"minimum": 0},
    ),
]
Limit = Annotated[
    int, QueryParameter(name="limit", ge=1, le=ondemand.MAX_BATCH_ITEMS, description="Items per page.")
]
StateFilter = Annotated[
    str | None,
    QueryParameter(
        name="state",
        description="Only items in this state.",
        schema_extra={"enum": ["queued", "rejected", "pending", "succeeded", "failed", "unknown"]},
    ),
]


@dataclass
class CsvUploadForm:
    """``multipart/form-data``: the CSV in ``file``; ``clientId`` here or in the query string."""

    file: UploadFile
    clientId: str | None = None


async def _read_capped(upload: UploadFile, cap: int) -> bytes:
    """The uploaded file, read in chunks and abandoned as soon as it passes ``cap`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > cap:
            raise BillingError(
                "PAYLOAD_TOO_LARGE", message=f"The file exceeds the {cap} byte (10 MB) limit.", field="file"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _keep_answer(session: Session, claim: Claim | None, answer: bytes) -> None:
    """Store the 202 for the request's Idempotency-Key in the transaction that queues the batch.

    Once the batch is committed its key can no longer be released, so a retry after any later
    failure (lost commit acknowledgement, error while answering, killed process) replays this
    answer instead of queueing the batch again.
    """
    if claim is not None:
        await idempotency.record_response(
            session, claim, status_code=202, body=answer, content_type=MediaType.JSON.value
        )


def _accepted(answer: bytes) -> Response[bytes]:
    """The 202 with exactly the bytes stored for replay."""
    return Response(answer, status_code=202, media_type=MediaType.JSON)


class ChargesController(Controller):
    path = "/v1/subscriptions/charges"
    tags = ["charges"]

    @post(
        "/",
        operation_id="CreateChargeBatch",
        status_code=202,
        responses=responses(202, BatchReceived, "Batch received", 403),
    )
    async def create_batch(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[ChargeBatchIn],
    ) -> Response[bytes]:
        """Queue 1..5000 on-demand charges; answered at once (202).

        Items that fail validation are rejected one by one (counted in ``totals``, the first 20
        in ``errorsSample``); the others are charged by the worker. Follow progress with
        ``GET /v1/subscriptions/charges/batches/{batchId}``.
        """
        ensure_same_client(merchant, data.client, field="client")
        claim = claim_of_request(request)
        async with runtime.sessions() as session, session.begin():
            receipt = await ondemand.receive_json_batch(
                session, clock_of(runtime, merchant), client_id=merchant.id, data=data.data
            )
            answer = encode_json(render(batch_received(receipt), "Batch received"))
            await _keep_answer(session, claim, answer)
        return _accepted(answer)

    @get(
        "/batches/{batch_id:str}",
        operation_id="GetChargeBatch",
        responses=responses(200, BatchStatus, "Batch found", 404),
    )
    async def get_batch(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        batch_id: FromPath[str],
        after: After = None,
        limit: Limit = ondemand.MAX_BATCH_ITEMS,
        item_state: StateFilter = None,
    ) -> dict[str, Any]:
        """A batch's status, totals and per-item outcomes (charge id, state, code, message), paged."""
        async with runtime.sessions() as session:
            batch = await ondemand.find_batch(session, merchant.id, batch_id)
            report = await ondemand.batch_report(session, batch, after=after, limit=limit, state=item_state)
        return render(batch_status(report), "Batch found")

    @post(
        "/upload-csv",
        operation_id="UploadChargesCsv",
        status_code=202,
        request_max_body_size=_UPLOAD_BODY_LIMIT,
        responses={
            **responses(202, BatchReceived, "File received", 403),
            202: ResponseSpec(data_container=CsvReceived, description="File received"),
            413: ResponseSpec(data_container=ErrorEnvelope, description="The file is over 10 MB (7017)."),
        },
    )
    async def upload_csv(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: Annotated[CsvUploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        query_client_id: Annotated[str | None, QueryParameter(name="clientId")] = None,
    ) -> Response[bytes]:
        """Queue the charges of a CSV file (``subscriptionId,amount,metadata``, header row, at most 10 MB).

        Answered at once (202) with a ``trackingId``; bad rows are reported per line by
        ``GET /v1/subscriptions/charges/upload-csv/{trackingId}`` and the good rows are charged.
        """
        if data.clientId is None and query_client_id is None:
            raise BillingError(
                "CHECK_PARAMETERS",
                message="clientId is required, as a form field or a query parameter.",
                field="clientId",
            )
        ensure_same_client(merchant, data.clientId, field="clientId")
        ensure_same_client(merchant, query_client_id, field="clientId")
        try:
            content = await _read_capped(data.file, ondemand.CSV_MAX_BYTES)
        finally:
            await data.file.close()  # the spooled copy may be a temporary file on disk
        claim = claim_of_request(request)
        async with runtime.sessions() as session, session.begin():
            receipt = await ondemand.receive_csv(
                session,
                clock_of(runtime, merchant),
                client_id=merchant.id,
                content=content,
                filename=data.file.filename,
                max_rows=runtime.settings.ondemand.csv_max_rows,
            )
            body = render(batch_received(receipt), "File received", trackingId=receipt.batch.tracking_id)
            # Migo keeps trackingId at the top level of this answer; data adds the batch summary.
            answer = encode_json(body)
            await _keep_answer(session, claim, answer)
        return _accepted(answer)

    @get(
        "/upload-csv/{tracking_id:str}",
        operation_id="GetChargesCsvUpload",
        # Litestar lets a route's media type override a returned Stream's own, so the route
        # declares the CSV type and the JSON answer is a Response that carries its own.
        media_type="text/csv; charset=utf-8",
        responses=responses(200, BatchStatus, "Upload found (or its results as text/csv)", 404),
        opt={"csv_download": True},  # the contract publishes the text/csv answer of ?format=csv
    )
    async def get_upload(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        tracking_id: FromPath[str],
        output: Annotated[
            str,
            QueryParameter(
                name="format",
                pattern="^(json|csv)$",
                schema_extra={"enum": ["json", "csv"]},
                description="json (default) or csv",
            ),
        ] = "json",
        after: After = None,
        limit: Limit = ondemand.MAX_BATCH_ITEMS,
        item_state: StateFilter = None,
    ) -> Response[dict[str, Any]] | Stream:
        """An upload's progress and per-row results; ``?format=csv`` downloads every row as CSV.

        The CSV has the input columns (line, subscriptionId, amount, metadata) followed by
        chargeId, state, code and message.
        """
        async with runtime.sessions() as session:
            batch = await ondemand.find_upload(session, merchant.id, tracking_id)
            if output == "json":
                report = await ondemand.batch_report(
                    session, batch, after=after, limit=limit, state=item_state
                )
                return Response(render(batch_status(report), "Upload found"), media_type=MediaType.JSON)

        return _results_csv(runtime, batch, tracking_id)

    @get(
        "/upload-csv/{tracking_id:str}/results.csv",
        operation_id="DownloadChargesCsvResults",
        media_type="text/csv; charset=utf-8",
        responses=responses(200, None, "Every row's outcome as CSV", 404),
        opt={"csv_download": True},
    )
    async def download_results(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        tracking_id: FromPath[str],
    ) -> Stream:
        """An upload's per-row results as CSV: the same file as ``?format=csv`` on the upload's status."""
        async with runtime.sessions() as session:
            batch = await ondemand.find_upload(session, merchant.id, tracking_id)
        return _results_csv(runtime, batch, tracking_id)


def _results_csv(runtime: Runtime, batch: Batch, tracking_id: str) -> Stream:
    """Every row of an upload with its outcome, streamed as CSV."""

    async def rows() -> AsyncIterator[str]:
        # The download outlives the handler: it reads pages in a session of its own.
        async with runtime.sessions() as stream_session:
            first = True
            async for page in ondemand.outcome_pages(stream_session, batch):
                yield ondemand.results_csv(page, header=first)
                first = False
            if first:
                yield ondemand.results_csv([], header=True)

    return Stream(
        rows(),
        headers={"Content-Disposition": f'attachment; filename="{tracking_id}-results.csv"'},
    )
