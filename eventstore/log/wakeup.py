"""Wake-ups for subscribers: local appends, PostgreSQL NOTIFY, and close.

A notification is only a hint that the log may have grown. Subscribers always re-read the
log itself, and wait at most ``poll_interval`` for a hint, so a lost notification or a dead
listener connection delays nothing for longer than one poll.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from eventstore.pg import close_connection, connect

__all__ = ["Listener", "Wakeup"]

CHANNEL = "chronicle_events"
log = structlog.get_logger(__name__)


class Wakeup:
    """A generation counter: waiters pass the generation they saw and return once it moves.

    Reading the generation before looking at the log and waiting with it afterwards closes the
    race where a hint arrives between the read and the wait.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seen: int, timeout: float) -> None:
        if self.generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class Listener:
    """One LISTEN connection per store, started by the first subscriber, re-opened after loss."""

    def __init__(self, database_url: str, wakeup: Wakeup) -> None:
        self._url = database_url
        self._wakeup = wakeup
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Make sure a listener is connected; on failure, subscribers keep polling."""
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                conn = await connect(self._url)
            except Exception as exc:  # polling covers for a missing listener
                log.warning("listener.unavailable", error=str(exc))
                return
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
            except BaseException as exc:  # failed or cancelled: nobody else holds it to close it
                conn.terminate()
                if not isinstance(exc, Exception):
                    raise
                log.warning("listener.unavailable", error=str(exc))
                return
            self._conn = conn

    def _on_notify(self, *_: object) -> None:
        self._wakeup.notify()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await close_connection(conn)
