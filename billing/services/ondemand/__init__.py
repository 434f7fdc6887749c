"""On-demand charges: JSON intake (`intake.py`), CSV intake (`csv.py`), the drain pass that charges
queued items (`drain.py`) and batch reports (`reports.py`)."""

from billing.services.ondemand.csv import CSV_MAX_BYTES, receive_csv, results_csv
from billing.services.ondemand.drain import OnDemandPass, run_ondemand
from billing.services.ondemand.intake import (
    MAX_BATCH_ITEMS,
    BatchReceipt,
    ItemRejection,
    receive_json_batch,
    totals_of,
)
from billing.services.ondemand.reports import (
    BatchReport,
    ItemOutcome,
    batch_report,
    find_batch,
    find_upload,
    outcome_pages,
)

__all__ = [
    "CSV_MAX_BYTES",
    "MAX_BATCH_ITEMS",
    "BatchReceipt",
    "BatchReport",
    "ItemOutcome",
    "ItemRejection",
    "OnDemandPass",
    "batch_report",
    "find_batch",
    "find_upload",
    "outcome_pages",
    "receive_csv",
    "receive_json_batch",
    "results_csv",
    "run_ondemand",
    "totals_of",
]
