"""A data subject: the one event recorded about it, that it was forgotten (``core.privacy``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.domain.contracts import DomainEvent, Upcaster

__all__ = ["SUBJECT_EVENTS", "SUBJECT_UPCASTERS", "SubjectForgotten"]


@dataclass(frozen=True, slots=True)
class SubjectForgotten(DomainEvent):
    """Every data key of ``subject`` (within the event's tenant) was destroyed: the personal
    fields sealed with them read as redaction markers from now on, and read models scrub what
    they copied of them when they apply this event."""

    TYPE: ClassVar[str] = "SubjectForgotten"
    SCHEMA_VERSION: ClassVar[int] = 1

    subject: str
    keys_destroyed: int
    reason: str
    at: datetime


SUBJECT_EVENTS: tuple[type[DomainEvent], ...] = (SubjectForgotten,)
SUBJECT_UPCASTERS: tuple[Upcaster, ...] = ()
