"""Callbacks: each attempt to tell a task's submitter that it ended, recorded as an event in
``callback-<task id>`` (``api.callbacks`` makes the attempts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.domain.contracts import DomainEvent, Upcaster

__all__ = ["CALLBACK_EVENTS", "CALLBACK_UPCASTERS", "CallbackAttempted", "callback_stream_id"]


def callback_stream_id(task_id: str) -> str:
    return f"callback-{task_id}"


@dataclass(frozen=True, slots=True)
class CallbackAttempted(DomainEvent):
    """Attempt ``attempt`` to deliver the end of ``task_id`` (its event ``event_id``) to
    ``target``: delivered, or failed with the status or error it got."""

    TYPE: ClassVar[str] = "CallbackAttempted"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    event_id: str
    attempt: int
    target: str
    delivered: bool
    status_code: int | None
    error: str | None
    at: datetime


CALLBACK_EVENTS: tuple[type[DomainEvent], ...] = (CallbackAttempted,)
CALLBACK_UPCASTERS: tuple[Upcaster, ...] = ()
