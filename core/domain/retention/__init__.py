"""Retention: the record of streams moved out of the hot log into the archive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.domain.contracts import DomainEvent, Upcaster

__all__ = ["RETENTION_EVENTS", "RETENTION_UPCASTERS", "TERMINAL_TASK_EVENTS", "StreamsArchived"]

# The task events after which nothing more happens to a task unless someone requeues it.
TERMINAL_TASK_EVENTS = ("TaskCompleted", "TaskFailed", "TaskCancelled", "TaskDeadLettered")


@dataclass(frozen=True, slots=True)
class StreamsArchived(DomainEvent):
    """``streams`` of ``category`` (``events`` events in all) left the hot table for the
    archive under the category's policy, as it stood then; every one is still readable, and
    provable, on request."""

    TYPE: ClassVar[str] = "StreamsArchived"
    SCHEMA_VERSION: ClassVar[int] = 1

    category: str
    keep_days: int
    after_terminal: bool
    cutoff: datetime
    streams: tuple[str, ...]
    events: int


RETENTION_EVENTS: tuple[type[DomainEvent], ...] = (StreamsArchived,)
RETENTION_UPCASTERS: tuple[Upcaster, ...] = ()
