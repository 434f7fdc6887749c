"""Bulk charges from a CSV file: ``subscriptionId,amount,metadata`` with a header row, at most 10 MB.

A file that cannot be read as CSV (not UTF-8 text, binary, no header, no rows) is refused
whole with 7018 INVALID_FILE naming the line; a file with more rows than the operator allows
(``ondemand.csv_max_rows``, 50,000 by default) with 7022. Inside a readable file every row stands
alone: a bad row (a control character, a card number, a bad amount...) is stored as rejected with
its line number and the good rows are still charged. Items are keyed by their line number, so
reports and the results CSV point at the merchant's own file.

Parsing runs in a worker thread, so a large upload does not stall the event loop that answers
every other request. Cells written back in the results CSV are neutralised against spreadsheet
formula injection (OWASP): a cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a
leading ``'``.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anyio

from billing.domain.card_numbers import holds_card_number
from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.domain.json_depth import MAX_JSON_DEPTH, nests_deeper_than
from billing.domain.text import has_control_character
from billing.services.ondemand.intake import BatchReceipt, ItemInput, receive_items
from billing.services.ondemand.reports import ItemOutcome
from billing.store.engine import Session

CSV_MAX_BYTES = 10 * 1024 * 1024
CSV_MAX_ROWS = 50_000  # default of the ondemand.csv_max_rows setting
REFUSED_CELL = "(refused)"  # stands in for a cell that held a control character or a card number
# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("subscriptionId", "amount", "metadata")
REQUIRED_COLUMNS = ("subscriptionId", "amount")
_HEADER_HINT = "the first line must be the header subscriptionId,amount[,metadata]"
_TRACKING_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"
_TRACKING_LENGTH = 21


def new_tracking_id() -> str:
    """A 21-character URL-safe id, the shape Migo uses for upload tracking ids."""
    return "".join(secrets.choice(_TRACKING_ALPHABET) for _ in range(_TRACKING_LENGTH))


def _invalid(line: int, reason: str) -> BillingError:
    return BillingError("INVALID_FILE", message=f"line {line}: {reason}", field="file")


def _decode(content: bytes) -> str:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise _invalid(line, "the file is not UTF-8 text; upload a CSV file.") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise _invalid(text.count("\n", 0, nul) + 1, "the file contains binary data; upload a CSV file.")
    return text


def _header(row: list[str], line: int) -> list[str]:
    names: list[str] = []
    canonical = {name.lower(): name for name in COLUMNS}
    for cell in row:
        name = canonical.get(cell.strip().lower())
        if name is None:
            shown = cell.strip()[:40]
            raise _invalid(line, f"unknown column {shown!r}; {_HEADER_HINT}.")
        if name in names:
            raise _invalid(line, f"column {name} appears twice; {_HEADER_HINT}.")
        names.append(name)
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise _invalid(line, f"missing column {', '.join(missing)}; {_HEADER_HINT}.")
    return names


def _unsafe_cell(cells: dict[str, str]) -> BillingError | None:
    """A row whose cells hold a control character (7000) or a card number (7204) is rejected."""
    for name, value in cells.items():
        if has_control_character(value):
            return BillingError(
                "CHECK_PARAMETERS", message=f"{name} contains a control character.", field=name
            )
        if holds_card_number(value):
            return BillingError(
                "INVALID_CARD_DATA",
                message=f"{name} looks like a card number; card numbers are never accepted in a charges file.",
                field=name,
            )
    return None


def _row_item(names: list[str], row: list[str], line: int) -> ItemInput:
    raw: dict[str, Any] = dict(zip(names, row, strict=False))
    if len(row) > len(names):
        raw["extra"] = row[len(names) :]
    cells = {name: raw.get(name, "").strip() for name in names}
    problem = _unsafe_cell({**cells, "extra": ",".join(row[len(names) :])})
    if problem is not None:
        # The offending cell is not kept: the report shows the row without it.
        unsafe = problem.field or ""
        raw[unsafe] = REFUSED_CELL
        return ItemInput(index=line, subscription_id=None, amount=None, raw=raw, problem=problem)
    missing = [name for name in names[len(row) :] if name in REQUIRED_COLUMNS]
    if len(row) > len(names) or missing:
        problem = BillingError(
            "CHECK_PARAMETERS",
            message=(
                f"expected {len(names)} columns, found {len(row)} "
                "(quote values that contain commas, such as metadata JSON)."
            ),
        )
    metadata: object = None
    if problem is None and cells.get("metadata"):
        try:
            metadata = json.loads(cells["metadata"], parse_float=Decimal)
        except (ValueError, RecursionError):
            problem = BillingError(
                "CHECK_PARAMETERS", message="metadata is not valid JSON.", field="metadata"
            )
        if nests_deeper_than(metadata):
            metadata, problem = (
                None,
                BillingError(
                    "CHECK_PARAMETERS",
                    message=f"metadata nests deeper than {MAX_JSON_DEPTH} levels.",
                    field="metadata",
                ),
            )
    return ItemInput(
        index=line,
        subscription_id=cells.get("subscriptionId", ""),
        amount=cells.get("amount", ""),
        metadata=metadata,
        raw=raw,
        problem=problem,
    )


def parse_charges_csv(content: bytes, *, max_rows: int = CSV_MAX_ROWS) -> list[ItemInput]:
    """The rows of a charges CSV as items (index = line number); raises 7017, 7018 or 7022 for the file."""
    if len(content) > CSV_MAX_BYTES:
        raise BillingError(
            "PAYLOAD_TOO_LARGE",
            message=f"The file exceeds the {CSV_MAX_BYTES} byte (10 MB) limit.",
            field="file",
        )
    text = _decode(content)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    names: list[str] | None = None
    items: list[ItemInput] = []
    line = 1
    try:
        while True:
            line = reader.line_num + 1  # where the next record starts
            try:
                row = next(reader)
            except StopIteration:
                break
            if not any(cell.strip() for cell in row):
                continue  # blank lines (and spreadsheet ",,," rows) carry no charge
            if names is None:
                names = _header(row, line)
                continue
            if len(items) == max_rows:
                raise BillingError(
                    "CSV_TOO_MANY_ROWS",
                    message=f"The file has more than {max_rows} charge rows (line {line}); "
                    "split it into several uploads.",
                    field="file",
                )
            items.append(_row_item(names, row, line))
    except csv.Error as exc:
        raise _invalid(line, f"the file is not valid CSV ({exc}).") from None
    if names is None:
        raise _invalid(1, f"the file is empty; {_HEADER_HINT}.")
    if not items:
        raise _invalid(line, "the file has a header row but no charges.")
    return items


async def parse_off_loop(content: bytes, *, max_rows: int = CSV_MAX_ROWS) -> list[ItemInput]:
    """``parse_charges_csv`` in a worker thread: the event loop keeps answering other requests."""
    return await anyio.to_thread.run_sync(lambda: parse_charges_csv(content, max_rows=max_rows))


def _clean_filename(filename: str | None) -> str | None:
    """The uploaded file's name as kept in reports: printable characters only, at most 255."""
    kept = "".join(
        char for char in (filename or "") if not has_control_character(char, allow_whitespace=False)
    )
    return kept[:255] or None


async def receive_csv(
    session: Session,
    clock: Clock,
    *,
    client_id: str,
    content: bytes,
    filename: str | None,
    max_rows: int = CSV_MAX_ROWS,
) -> BatchReceipt:
    """Parse (off the event loop), validate and queue a charges CSV as one batch with a tracking id."""
    items = await parse_off_loop(content, max_rows=max_rows)
    return await receive_items(
        session,
        clock,
        client_id=client_id,
        items=items,
        source="csv",
        tracking_id=new_tracking_id(),
        filename=_clean_filename(filename),
    )


RESULT_COLUMNS = ("line", "subscriptionId", "amount", "metadata", "chargeId", "state", "code", "message")


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text: formula prefixes get a leading ``'`` (OWASP)."""
    return "'" + cell if cell.startswith(_FORMULA_PREFIXES) else cell


def _input_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    return neutralise(json.dumps(value, separators=(",", ":")))


def results_csv(outcomes: Sequence[ItemOutcome], *, header: bool) -> str:
    """Rows of the results CSV: the input columns as uploaded, then chargeId, state, code, message."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(RESULT_COLUMNS)
    for outcome in outcomes:
        raw = outcome.raw or {}
        writer.writerow(
            [
                outcome.index,
                _input_cell(raw.get("subscriptionId", outcome.subscription_id)),
                _input_cell(raw.get("amount")),
                _input_cell(raw.get("metadata")),
                outcome.charge_id or "",
                outcome.state,
                outcome.code or "",
                neutralise(outcome.message or ""),
            ]
        )
    return out.getvalue()
