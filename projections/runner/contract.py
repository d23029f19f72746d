"""What a projection is: a named, versioned fold of log events into tables of its own.

A projection's ``apply`` gets a batch of events in log order and the generation it writes
(every read-model row carries one; see revision 0003), inside the transaction that also moves
its checkpoint. So it need not be idempotent: the runner never hands it an event twice, and if
it raises, nothing of the batch is kept. It must write only its own tables, only rows of the
generation it is given, and read nothing but those rows and the events handed to it: a
rebuild replays the same events into a fresh generation and must end with the same rows.

``version`` is the projection's code version. When it differs from the version of the model
in the database, the daemon rebuilds the model into a new generation and swaps it in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg

from core.events import RecordedEvent

__all__ = ["Projection"]


class Projection(Protocol):
    @property
    def name(self) -> str:
        """Unique and fixed: the key of its checkpoints and of its lease."""
        ...

    @property
    def version(self) -> int: ...

    @property
    def categories(self) -> tuple[str, ...] | None:
        """The stream categories it reads (None: every event)."""
        ...

    @property
    def tables(self) -> tuple[str, ...]:
        """Its rows tables; a retired generation's rows are deleted from each."""
        ...

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        """Apply ``events`` (log order, never empty) to ``generation`` of its tables."""
        ...
