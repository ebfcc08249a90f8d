"""Persistence: SQLAlchemy models, Alembic migrations and the `Store` API."""

from .migrate import acurrent, ais_behind, aupgrade, current, head, history, is_behind, upgrade
from .records import (
    EXECUTION_STATUSES,
    FINAL_STEP_STATUSES,
    FINISHED_EXECUTION_STATUSES,
    STEP_STATUSES,
    DeadLetterRecord,
    EventRecord,
    ExecutionRecord,
    StepRecord,
    WorkflowRecord,
)
from .store import Store
from .urls import checkpointer_conn_string, mask_url, normalize_url, sqlite_path

open_store = Store.open

__all__ = [
    "EXECUTION_STATUSES",
    "FINAL_STEP_STATUSES",
    "FINISHED_EXECUTION_STATUSES",
    "STEP_STATUSES",
    "DeadLetterRecord",
    "EventRecord",
    "ExecutionRecord",
    "StepRecord",
    "Store",
    "WorkflowRecord",
    "acurrent",
    "ais_behind",
    "aupgrade",
    "checkpointer_conn_string",
    "current",
    "head",
    "history",
    "is_behind",
    "mask_url",
    "normalize_url",
    "open_store",
    "sqlite_path",
    "upgrade",
]
