"""Persistence: SQLAlchemy models, Alembic migrations and the `Store` API."""

from .records import (
    EXECUTION_STATUSES,
    FINAL_STEP_STATUSES,
    FINISHED_EXECUTION_STATUSES,
    DeadLetterRecord,
    EventRecord,
    ExecutionRecord,
    StepRecord,
    WorkflowRecord,
)
from .store import Store

__all__ = [
    "EXECUTION_STATUSES",
    "FINAL_STEP_STATUSES",
    "FINISHED_EXECUTION_STATUSES",
    "DeadLetterRecord",
    "EventRecord",
    "ExecutionRecord",
    "StepRecord",
    "Store",
    "WorkflowRecord",
]
